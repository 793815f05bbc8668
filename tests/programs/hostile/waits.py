"""Waits to be interrupted or killed: the test sends a signal once "ready"
is on stdout. Enough calls come first for the collector to send a batch, so
that a trace cut short still holds the frames open at that point."""
import sys
import time


def tick(i):
    return i + 1


def wait():
    time.sleep(20)


def main():
    total = 0
    for i in range(60000):
        total = tick(total)
    print("ready")
    sys.stdout.flush()
    wait()


main()
