"""A daemon thread still running (inside a function, in a loop) when the
program exits: Python stops it wherever it is."""
import threading
import time

started = threading.Event()


def step():
    time.sleep(0.005)


def spin():
    started.set()
    while True:
        step()


threading.Thread(target=spin, name="spinner", daemon=True).start()
started.wait()
time.sleep(0.05)
print("main exits with the daemon running")
