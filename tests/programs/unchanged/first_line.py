"""What the program finds at its first line: the modules loaded, the recursion
limit and how deep it can really recurse, and the audit events its own hook
sees while it runs a few calls, generators and an id(). Printed as JSON, to
compare with a plain run."""
import sys

modules = sorted(sys.modules)
seen = []
sys.addaudithook(lambda event, args: seen.append(event))


def depth(n=0):
    try:
        return depth(n + 1)
    except RecursionError:
        return n


def numbers():
    yield from range(3)


def work():
    total = sum(numbers())
    return total + len(str(id(total)))


work()
events = list(seen)
print(repr({"modules": modules, "limit": sys.getrecursionlimit(), "depth": depth(),
            "audit": events}))
