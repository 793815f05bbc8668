"""A program that does little but make the garbage collector run: bench/runtime_cost.ts traces it
with and without --gc. It prints how many collections ran, how long its loop took and its thread's
CPU time."""
import gc
import time

start = time.perf_counter()
cpu = time.thread_time()
for _ in range(30):
    data = [[i] for i in range(100_000)]
del data
elapsed = time.perf_counter() - start
cpu = time.thread_time() - cpu
print("collections %d" % sum(s["collections"] for s in gc.get_stats()))
print("elapsed %.6f" % elapsed)
print("cpu %.6f" % cpu)
