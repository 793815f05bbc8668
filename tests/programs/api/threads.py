"""trace() blocks on several threads: each thread records inside its own."""
import threading

import panopticon


def work(name):
    return name.upper()


def worker(name):
    work("outside " + name)
    with panopticon.trace("threads.json"):
        work(name)


def bystander():
    work("never inside a block")


with panopticon.trace("threads.json"):
    threads = [threading.Thread(target=worker, args=(n,), name=n) for n in ("t1", "t2")]
    threads.append(threading.Thread(target=bystander, name="bystander"))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
print("joined", len(threads))
