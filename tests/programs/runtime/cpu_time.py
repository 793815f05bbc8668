"""Two threads for --cpu-time: one spins, one sleeps, and a generator spins on the main thread.

The spinner spins for 20 ms of its own CPU time a step (time.thread_time, not
the wall clock), so that its slices hold that much thread time however busy
the machine is.
"""
import threading
import time

STEPS = 4
SPIN_S = 0.02
SLEEP_S = 0.03


def spin_step():
    end = time.thread_time() + SPIN_S
    while time.thread_time() < end:
        pass


def spinner():
    for _ in range(STEPS):
        spin_step()


def sleep_step():
    time.sleep(SLEEP_S)


def sleeper():
    for _ in range(STEPS):
        sleep_step()


def spinning_numbers():
    for i in range(3):
        spin_step()
        yield i


threads = [threading.Thread(target=spinner, name="spinner"),
           threading.Thread(target=sleeper, name="sleeper")]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(sum(spinning_numbers()))
