"""Many short asyncio tasks (1,000 at a time, each awaiting a coroutine 10 times): bench/runtime_cost.ts
traces it with and without --no-tasks. It prints how long its loop took, and the CPU time its
thread spent (which leaves out the time it waited for the converter, on a busy machine)."""
import asyncio
import time


async def step(i):
    await asyncio.sleep(0)
    return i


async def worker(i):
    total = 0
    for j in range(10):
        total += await step(j)
    return total


async def main():
    for _ in range(4):
        await asyncio.gather(*(worker(i) for i in range(1000)))


start = time.perf_counter()
cpu = time.thread_time()
asyncio.run(main())
print("elapsed %.6f" % (time.perf_counter() - start))
print("cpu %.6f" % (time.thread_time() - cpu))
