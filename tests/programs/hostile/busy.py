"""Busy calling functions (Python and C) until interrupted: a Ctrl-C lands
wherever the interpreter is, under a profiler often inside its callback.
Stops by itself after 20 s if no signal comes."""
import sys
import time


def tick(i):
    return i + len("x")


def spin():
    total = 0
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        total = tick(total)


print("ready")
sys.stdout.flush()
spin()
