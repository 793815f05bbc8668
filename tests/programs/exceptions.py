"""Exceptions of every kind, for tests/e2e_exceptions_test.ts."""

import signal
import sys


def inner():
    raise ValueError("bad value")


def propagated():
    inner()


def caught():
    try:
        inner()
    except ValueError:
        return "recovered"


def swallowed():
    try:
        {}["missing"]
    except KeyError:
        pass


def reraised():
    try:
        inner()
    except ValueError:
        raise


def chained():
    try:
        inner()
    except ValueError as error:
        raise RuntimeError("wrapped") from error


def numbers():
    yield 1
    yield 2


class Countdown:
    def __init__(self, n):
        self.n = n

    def __iter__(self):
        return self

    def __next__(self):
        if self.n == 0:
            raise StopIteration
        self.n -= 1
        return self.n


def interrupted():
    try:
        signal.raise_signal(signal.SIGINT)
    except KeyboardInterrupt:
        pass


def main():
    caught()
    swallowed()
    for _ in range(3):
        swallowed()
    try:
        reraised()
    except ValueError:
        pass
    try:
        chained()
    except RuntimeError:
        pass
    for _ in range(100):
        list(numbers())
        list(Countdown(5))
    propagated()


if sys.argv[1:] == ["interrupt"]:
    interrupted()
else:
    main()
