"""Async generators that asyncio.run finalises: one left suspended after a
break out of `async for`, one never iterated to its end."""
import asyncio


async def ticker(name, n):
    try:
        for i in range(n):
            await asyncio.sleep(0)
            yield i
    finally:
        print("ticker", name, "finalised")


async def main():
    async for i in ticker("broken", 10):
        if i == 2:
            break
    partial = ticker("partial", 10)
    print("first", await partial.__anext__())
    return "main done"


print(asyncio.run(main()))
