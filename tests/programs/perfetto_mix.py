"""Everything a trace shows, recorded in a plain python process for one
stream to convert to both formats: generators, coroutines, an async
generator, a second thread, instants, counters and spans with arguments."""
import asyncio
import threading

import panopticon


def numbers(n):
    for i in range(n):
        yield i * i


async def ticker(n):
    for i in range(n):
        await asyncio.sleep(0)
        yield i


async def work(name, steps):
    total = 0
    for step in range(steps):
        await asyncio.sleep(0)
        total += len(name) + step
    return total


async def amain():
    results = await asyncio.gather(work("a", 3), work("bb", 2))
    async for tick in ticker(3):
        panopticon.counter("ticks", seen=tick, load=tick / 4)
    return results


def worker():
    with panopticon.trace("mix.json"):
        with panopticon.span("worker", nested={"depth": 2, "tags": ["x", "y"]}):
            sorted(numbers(4), key=lambda v: -v)


with panopticon.trace("mix.json"):
    panopticon.instant("start", phase=1, label="go")
    with panopticon.span("phase 1", items=3, ratio=0.5, ok=True):
        total = sum(numbers(5))
    thread = threading.Thread(target=worker, name="worker")
    thread.start()
    thread.join()
    print(total, asyncio.run(amain()))
