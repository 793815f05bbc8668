"""The test program of --args and --returns (tests/e2e_values_test.ts).

Each function takes its parameters in one of Python's ways; the last line
prints whether the object passed to `keep` outlived the program's own
reference (it must not: the trace keeps no value alive).
"""
import gc
import weakref


def positional(a, b, c=3):
    return a + b + c


def keyword_only(a, *, key, flag=False):
    return (a, key, flag)


def star(first, *args, **kwargs):
    return len(args) + len(kwargs)


class Point:
    def __init__(self, x, y):
        self.x = x
        self.y = y

    def moved(self, dx):
        return Point(self.x + dx, self.y)


def numbers(n):
    for i in range(n):
        yield i * 10
    return "done"


class Hostile:
    def __repr__(self):
        raise RuntimeError("no repr for you")


def hostile(value):
    return value


def huge(text):
    return len(text)


class Payload:
    pass


def keep(payload):
    return None


def captured(value):
    # A closure's cell holds `value` (3.8-3.10 move it there; 3.11+ wrap it in its slot).
    return lambda: value


def located(file, line=1):
    # Named as a slice's own args are: the trace renames these, not the slice's place.
    return line


def unselected(a, b):
    return a * b


def main():
    positional(1, 2)
    keyword_only("x", key=[1, 2], flag=True)
    star(0, 1, 2, name="n", other={"k": None})
    Point(1, 2).moved(5)
    print(list(numbers(3)))
    hostile(Hostile())
    huge("z" * 100000)
    payload = Payload()
    ref = weakref.ref(payload)
    keep(payload)
    del payload
    gc.collect()
    print("alive" if ref() is not None else "gone")
    print(captured("in a cell")())
    located("notes.txt")
    located("notes.txt", line=7)
    print(unselected(6, 7))


main()
