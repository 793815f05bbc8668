"""Many calls, on two threads: far more events than the --max-events of the
test, so that recording stops early while the program runs to its end."""
import threading


def leaf(i):
    return i * 2


def work(n):
    total = 0
    for i in range(n):
        total += leaf(i)
    return total


worker = threading.Thread(target=work, args=(50_000,), name="worker")
worker.start()
print("main", work(100_000))
worker.join()
print("done")
