"""Nested trace() blocks, and an exception leaving a block."""
import panopticon


class Boom(Exception):
    pass


def outer():
    return 2


def inner():
    return 1


def fails():
    raise Boom("from inside the block")


def after():
    return 3


with panopticon.trace("nested.json"):
    outer()
    with panopticon.trace("nested.json"):
        inner()
    outer()
after()
caught = None
try:
    with panopticon.trace("raised.json"):
        fails()
except Boom as error:
    caught = error
print("caught", type(caught).__name__, caught, caught.__traceback__.tb_next.tb_frame.f_code.co_name)
with panopticon.trace("raised.json"):
    fails()
