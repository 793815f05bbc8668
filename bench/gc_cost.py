"""A program that does little but make the garbage collector run: bench/runtime_cost.ts traces it
with and without --gc. It prints how many collections ran and how long its loop took."""
import gc
import time

start = time.perf_counter()
for _ in range(30):
    data = [[i] for i in range(100_000)]
del data
elapsed = time.perf_counter() - start
print("collections %d" % sum(s["collections"] for s in gc.get_stats()))
print("elapsed %.6f" % elapsed)
