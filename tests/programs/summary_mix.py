"""Many functions, generators, coroutines and async generators, and a few C calls, for
the summary's end-to-end test, which checks its call counts against python -m cProfile's.
Everything it does is deterministic: the same calls on every run."""
import asyncio
import math
import zlib


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


class Shape:
    def __init__(self, sides):
        self.sides = sides

    def area(self):
        return self.sides * 2

    @staticmethod
    def unit():
        return Shape(1)

    @classmethod
    def make(cls, n):
        return cls(n)

    @property
    def double(self):
        return self.sides * 2


def outer(n):
    def inner(x):
        return x + n

    return [inner(i) for i in range(n)]


def raises(n):
    if n % 3 == 0:
        raise ValueError(n)
    return n


def catches(n):
    try:
        return raises(n)
    except ValueError:
        return -1


def count(n):
    for i in range(n):
        yield i


def delegate(n):
    yield from count(n)
    yield -1


def accumulate():
    total = 0
    while True:
        value = yield total
        if value is None:
            return total
        total += value


def thrown():
    try:
        yield 1
        yield 2
    except KeyError:
        yield 3


async def leaf(i):
    await asyncio.sleep(0)
    return math.gcd(i, 12)


async def branch(n):
    total = 0
    for i in range(n):
        total += await leaf(i)
    return total


async def ticks(n):
    for i in range(n):
        await asyncio.sleep(0)
        yield i


async def consume(n):
    seen = []
    async for tick in ticks(n):
        seen.append(tick)
    return seen


async def main():
    return await asyncio.gather(branch(5), branch(3), consume(4))


def run():
    print(fib(12))
    shapes = [Shape.make(n) for n in range(4)] + [Shape.unit()]
    print(sum(shape.area() + shape.double for shape in shapes))
    print(outer(5))
    print([catches(n) for n in range(7)])
    print(list(count(4)), list(delegate(3)))
    totals = accumulate()
    next(totals)
    totals.send(2)
    totals.send(3)
    try:
        totals.send(None)
    except StopIteration as stop:
        print(stop.value)
    three = thrown()
    next(three)
    print(three.throw(KeyError))
    three.close()
    print(asyncio.run(main()))
    print(zlib.crc32(b"panopticon"))


run()
