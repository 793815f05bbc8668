"""os._exit called wrongly: the TypeError is the program's to catch, its
message and traceback are Python's own, and the program goes on running."""
import os
import traceback


def no_status():
    os._exit()


def bad_status():
    os._exit("now")


def after():
    return "still running"


for misuse in (no_status, bad_status):
    try:
        misuse()
    except TypeError:
        traceback.print_exc()
print(after())
