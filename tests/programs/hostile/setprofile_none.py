"""The program switches the profiler off in the middle of its run."""
import sys


def before():
    return 1


def switch_off():
    sys.setprofile(None)


def after():
    return 2


def main():
    before()
    switch_off()
    after()
    print("done")


main()
