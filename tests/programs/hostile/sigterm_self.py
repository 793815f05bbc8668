"""The program sends SIGTERM to itself: the default action ends it at once
(status 143), with no atexit handler. Enough calls come first for the
collector to send a batch, so the trace has frames open when it stopped."""
import os
import signal
import sys


def tick(i):
    return i + 1


def kill_self():
    print("terminating")
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGTERM)
    print("never printed")


def main():
    total = 0
    for i in range(60000):
        total = tick(total)
    kill_self()


main()
