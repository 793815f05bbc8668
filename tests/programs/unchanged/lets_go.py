"""Objects the program lets go of must die at once, as under python: the
locals, generators, coroutines and arguments of traced calls; functions and
code objects made by exec and compile in a loop; lambdas made in a loop; and
classes made in a loop whose C methods the program calls. The collector is
off, so that only reference counting frees them (classes, which are cycles,
are collected at the end). Prints how many of them are still alive, and
which kinds: nothing."""
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


refs = []  # (kind, weak reference)
refs.extend(("call", ref) for ref in keep(Thing()))
g = gen(Thing())
refs.append(("generator", next(g)))
del g
c = coro(Thing())
try:
    c.send(None)
except StopIteration as done:
    refs.append(("coroutine", done.value))
del c
for i in range(200):
    namespace = {}
    exec("def made(): return %d\nmade()" % i, namespace)
    refs.append(("exec function", weakref.ref(namespace["made"])))
    refs.append(("exec code", weakref.ref(namespace["made"].__code__)))
    namespace.clear()  # the function and its globals hold each other
for i in range(100):
    code = compile("def made(): yield %d\nfor x in made(): pass" % i, "<made>", "exec")
    exec(code, {})
    refs.append(("compiled code", weakref.ref(code)))
    del code
for i in range(100):
    function = lambda: i  # noqa: E731
    function()
    refs.append(("lambda", weakref.ref(function)))
    del function
alive = [kind for kind, ref in refs if ref() is not None]
classes = []
for i in range(100):
    # A C method bound to the class: made afresh for each call.
    made = type("Made%d" % i, (dict,), {})
    made.fromkeys("ab")
    classes.append(weakref.ref(made))
    del made
gc.collect()
alive += ["class" for ref in classes if ref() is not None]
print("alive:", len(alive), "of", len(refs) + len(classes), sorted(set(alive)))
