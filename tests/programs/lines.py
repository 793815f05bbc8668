# tests/e2e_lines_test.ts traces this with --lines function:loop and
# --lines function:numbers: the line numbers below are the test's.
import sys


def loop():
    total = 0
    for i in range(3):
        total += i
        total *= 2
    return total


def unselected():
    a = 1
    b = a + 1
    return b


def numbers():
    yield 1
    x = 2
    yield x


def main():
    print(loop())
    print(unselected())
    print(list(numbers()))
    # On 3.12+ lines come from sys.monitoring: the program's trace hook is its own.
    if sys.version_info >= (3, 12):
        print("gettrace", sys.gettrace())


main()
