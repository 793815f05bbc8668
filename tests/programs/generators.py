"""Generators that finish, are closed, are thrown into and are abandoned."""


def count(n):
    for i in range(n):
        yield i


def delegate():
    yield from count(2)
    yield "done"


finished = list(count(3))

closed = count(10)
next(closed)
closed.close()

thrown = count(10)
next(thrown)
try:
    thrown.throw(KeyError("stop"))
except KeyError:
    pass

abandoned = count(10)
next(abandoned)
del abandoned

delegated = list(delegate())
print(finished, delegated)
