"""asyncio tasks: named ones gathered, one created inside another, one that
raises, one cancelled, a TaskGroup (3.11+) and a gather of coroutines."""
import asyncio
import sys


async def leaf(n):
    await asyncio.sleep(0.001)
    return n


async def parent():
    # A task created from inside a task.
    child = asyncio.create_task(leaf(10), name="child")
    return await child


async def fails():
    await asyncio.sleep(0.001)
    raise ValueError("boom")


async def forever():
    await asyncio.sleep(60)


async def main():
    named = [asyncio.create_task(leaf(i), name="leaf-%d" % i) for i in range(3)]
    named.append(asyncio.create_task(parent(), name="parent"))
    print("gathered", await asyncio.gather(*named))
    failing = asyncio.create_task(fails(), name="fails")
    try:
        await failing
    except ValueError as error:
        print("failed", error)
    sleeper = asyncio.create_task(forever(), name="sleeper")
    await asyncio.sleep(0.002)
    sleeper.cancel()
    try:
        await sleeper
    except asyncio.CancelledError:
        print("cancelled", sleeper.cancelled())
    if sys.version_info >= (3, 11):
        async with asyncio.TaskGroup() as group:
            grouped = group.create_task(leaf(20), name="grouped")
        print("grouped", grouped.result())
    print("coroutines", await asyncio.gather(leaf(30), leaf(31)))
    print("names", asyncio.current_task().get_name())


asyncio.run(main())
