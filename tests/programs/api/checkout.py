"""The example of docs/python-api.md: a block, a traced coroutine, markers."""
import asyncio

import panopticon


def load_cart():
    return [3, 5, 8]


def handle_request():
    cart = load_cart()
    panopticon.instant("cache miss", key="cart:42")
    panopticon.counter("queue depth", len(cart))
    with panopticon.span("phase 2", items=len(cart)):
        return sum(cart)


def background():
    return "not recorded under --manual"


@panopticon.traced("retry.json")
async def retry():
    for attempt in range(3):
        await asyncio.sleep(0)
    return attempt


background()
with panopticon.trace("checkout.json"):  # only this block is recorded
    total = handle_request()
print("total", total, "attempts", asyncio.run(retry()))
