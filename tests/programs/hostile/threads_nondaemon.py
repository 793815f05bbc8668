"""A non-daemon thread still running when the main module ends: Python joins
it at shutdown, before the atexit handlers run."""
import threading
import time


def slow_worker():
    time.sleep(0.2)
    print("worker done")


threading.Thread(target=slow_worker, name="slow").start()
print("main module done")
