"""The workload of bench/cpu_time_cost.ts: 200,000 calls of a small function.

Prints the loop's own time in ns, so that start-up and the converter's
finishing stay out of the figure. Each call is two events (call, return).
"""
import time

CALLS = 200_000


def leaf(x):
    return x + 1


def main():
    start = time.perf_counter_ns()
    total = 0
    for i in range(CALLS):
        total = leaf(total)
    print(time.perf_counter_ns() - start)


main()
