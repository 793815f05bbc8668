"""Forks 200 times, with more or fewer calls before each fork: one of them
finds the collector's batch nearly full, and the child's first events (its
at-fork functions') would fill it. Each child makes 10 calls of `step`."""
import os


def step(i):
    return i + 1


def work(n):
    total = 0
    for i in range(n):
        total += step(i)
    return total


for k in range(200):
    work(37 * k % 997)
    pid = os.fork()
    if pid == 0:
        work(10)
        os._exit(0)
    os.waitpid(pid, 0)
print("forked 200 children")
