"""The program switches off the events of sys.monitoring tool 4 (the one
Panopticon records with on 3.12+) without ever claiming it."""
import sys


def work():
    return 1


def main():
    work()
    try:
        sys.monitoring.set_events(4, 0)
    except ValueError:
        pass  # without Panopticon, nobody uses tool 4
    work()
    print("done")


main()
