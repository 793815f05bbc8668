"""Writes far more than `head -1` reads: once head exits, a write fails
with EPIPE (Python ignores SIGPIPE) and Python reports BrokenPipeError."""
import sys


def emit(i):
    sys.stdout.write("line %d %s\n" % (i, "x" * 100))


for i in range(20000):
    emit(i)
