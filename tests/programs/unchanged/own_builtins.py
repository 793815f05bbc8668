"""A program that replaces builtins with spies, and checks that the
collector (Panopticon's sitecustomize) never calls them: its callbacks must
use builtins of their own (test_functools makes `builtins.len` an
lru_cache). Prints the spies the collector called: none."""
import builtins
import sys
import threading

NAMES = ["len", "isinstance", "getattr", "hasattr", "vars", "repr", "id", "max", "min", "sum",
         "iter", "next", "sorted", "any", "all", "tuple", "list", "dict", "set", "frozenset"]
originals = {name: getattr(builtins, name) for name in NAMES}
strangers = set()


def spy(name, original):
    def call(*args, **kwargs):
        caller = sys._getframe(1).f_code.co_filename
        if caller.endswith("sitecustomize.py"):
            strangers.add("%s from %s" % (name, caller))
        return original(*args, **kwargs)
    return call


def gen(n):
    for i in range(n):
        yield [i] * 3


def work():
    total = 0
    for i in range(3000):
        total += sum(len(x) for x in gen(3))
    exec("def made():\n    return 1\nmade()", {})
    return total


for name, original in originals.items():
    setattr(builtins, name, spy(name, original))
try:
    worker = threading.Thread(target=work)
    worker.start()
    work()
    worker.join()
finally:
    for name, original in originals.items():
        setattr(builtins, name, original)
print("strangers:", sorted(strangers))
