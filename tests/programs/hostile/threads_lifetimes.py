"""Threads that end before the main module does, and threads that end after
it, one of them started by another thread that has already ended."""
import threading
import time


def short():
    return sum(range(10))


def late():
    time.sleep(0.1)
    print("late done")


def starter():
    threading.Thread(target=late, name="late").start()


early = threading.Thread(target=short, name="early")
early.start()
early.join()
threading.Thread(target=starter, name="starter").start()
print("main module done")
