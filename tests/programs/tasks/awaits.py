"""Tasks awaiting tasks and futures (tests/e2e_await_test.ts).

`waiter` awaits task `child`; `getter` awaits a future that task `setter`
completes; `gatherer` awaits a gather of `leaf-0` and `leaf-1`.
"""
import asyncio


async def child():
    await asyncio.sleep(0.01)
    return 1


async def waiter(task):
    return await task


async def getter(future):
    return await future


async def setter(future):
    await asyncio.sleep(0.01)
    future.set_result(2)


async def leaf(n):
    await asyncio.sleep(0.01 * (n + 1))
    return n


async def gatherer():
    return await asyncio.gather(
        asyncio.create_task(leaf(0), name="leaf-0"),
        asyncio.create_task(leaf(1), name="leaf-1"),
    )


async def main():
    task = asyncio.create_task(child(), name="child")
    first = asyncio.create_task(waiter(task), name="waiter")
    future = asyncio.get_running_loop().create_future()
    second = asyncio.create_task(getter(future), name="getter")
    third = asyncio.create_task(setter(future), name="setter")
    print(await first, await second, await third, await gatherer())


asyncio.run(main())
