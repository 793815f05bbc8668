"""A segmentation fault (status 139). Enough calls come first for the
collector to send a batch, and a pause for it to hand the batch over (on a
busy machine its writer may not run before the crash otherwise), so the
trace has frames open when it crashed."""
import ctypes
import sys
import time


def tick(i):
    return i + 1


def crash():
    print("crashing")
    sys.stdout.flush()
    ctypes.string_at(0)


def main():
    total = 0
    for i in range(60000):
        total = tick(total)
    time.sleep(0.3)
    crash()


main()
