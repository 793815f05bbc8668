"""Piped into `python -` (and `panopticon -o t.json -`) as the program itself."""
import sys


def from_stdin():
    return sys.argv[1:]


print("argv", from_stdin(), "file", __file__ if "__file__" in globals() else None)
