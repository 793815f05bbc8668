"""A stack 10,000 frames deep, under a raised recursion limit."""
import sys

sys.setrecursionlimit(12000)


def down(n):
    if n == 0:
        return 0
    return down(n - 1) + 1


print("depth", down(10000))
