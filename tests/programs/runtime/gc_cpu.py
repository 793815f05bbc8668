"""Garbage collection and CPU time: a forced collection, a thread that spins, one that sleeps."""
import gc
import sys
import threading
import time


def make_cycles(count):
    cycles = []
    for _ in range(count):
        cycle = []
        cycle.append(cycle)
        cycles.append(cycle)
    return cycles


def collect_now():
    return gc.collect()


def spin(seconds):
    # Bytecode only, between rare clock reads: CPU time, few events.
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        for _ in range(20000):
            n += 1
    return n


def nap(seconds):
    time.sleep(seconds)


def main():
    # Automatic collections off meanwhile: the Python collector allocates
    # as it records, and an automatic collection between the `del` and
    # gc.collect() would take some of the cycles first.
    gc.disable()
    cycles = make_cycles(1000)
    del cycles
    found = collect_now()
    gc.enable()
    print("collected at least 1000:", found >= 1000)
    if "--callbacks" in sys.argv:
        print("gc.callbacks:", len(gc.callbacks))
    spinner = threading.Thread(target=spin, args=(0.4,), name="spinner")
    sleeper = threading.Thread(target=nap, args=(0.4,), name="sleeper")
    spinner.start()
    sleeper.start()
    spinner.join()
    sleeper.join()
    print("done")


main()
