"""A small loop for bench/lines_cost.ts: `work` runs 3 lines an iteration (its `for` line and
two body lines), `other` the same loop unselected. It prints how many lines `work` ran and how
long the two loops took."""
import os
import time

N = int(os.environ.get("BENCH_N", "200000"))


def work(n):
    total = 0
    for i in range(n):
        total += i
        total ^= 1
    return total


def other(n):
    total = 0
    for i in range(n):
        total += i
        total ^= 1
    return total


start = time.perf_counter()
work(N)
other(N)
elapsed = time.perf_counter() - start
print("lines %d" % (3 * N + 3))
print("elapsed %.6f" % elapsed)
