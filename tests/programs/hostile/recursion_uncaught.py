"""Recursion past the limit, uncaught: Python's traceback (with its
"[Previous line repeated N more times]") and exit status 1."""


def down(n):
    return down(n + 1)


print("before")
down(0)
