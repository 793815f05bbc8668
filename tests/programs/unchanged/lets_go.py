"""Objects the program lets go of must die at once, as under python: the
locals, generators, coroutines and arguments of traced calls, and code made
by exec in a loop. The collector is off, so that only reference counting
frees them. Prints what is still alive: nothing."""
import gc
import sys
import weakref

gc.disable()


class Thing:
    pass


def keep(argument):
    local = Thing()
    return weakref.ref(local), weakref.ref(argument)


def gen(argument):
    local = Thing()
    yield weakref.ref(local)


async def coro(argument):
    local = Thing()
    return weakref.ref(local)


refs = []
refs.extend(keep(Thing()))
g = gen(Thing())
refs.append(next(g))
del g
c = coro(Thing())
try:
    c.send(None)
except StopIteration as done:
    refs.append(done.value)
del c
for i in range(200):
    namespace = {}
    exec("def made(): return %d\nmade()" % i, namespace)
    refs.append(weakref.ref(namespace["made"]))
    namespace.clear()  # the function and its globals hold each other
alive = [r for r in refs if r() is not None]
print("alive:", len(alive), "of", len(refs))
