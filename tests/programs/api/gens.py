"""traced on a generator, a coroutine and an async generator: every
resumption recorded, none of what happens between them."""
import asyncio

import panopticon


@panopticon.traced("gens.json")
def numbers(n):
    for i in range(n):
        yield i


@panopticon.traced("gens.json")
async def fetch(n):
    await asyncio.sleep(0)
    return n


@panopticon.traced("gens.json")
async def ticks(n):
    for i in range(n):
        await asyncio.sleep(0)
        yield i


@panopticon.traced
def total(values):
    return sum(values)


def consume():
    return sum(numbers(3))


async def amain():
    first = await fetch(1)
    rest = [tick async for tick in ticks(2)]
    return first, rest


print(consume(), asyncio.run(amain()), total([1, 2]))
