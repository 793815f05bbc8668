"""Makes code again and again, as a long-running program may: exec and
compile in a loop, functions and lambdas made in a loop, and classes made in
a loop whose C methods it calls. Takes the number of rounds; every round lets
go of all it made, so the program's own memory stays flat."""
import sys

for i in range(int(sys.argv[1])):
    namespace = {}
    exec("def made(x):\n    return [x for _ in range(2)]\nmade(%d)" % i, namespace)
    namespace.clear()
    code = compile("def gen():\n    yield %d\nfor _ in gen(): pass" % i, "<made>", "exec")
    exec(code, {})
    (lambda: i)()
    made = type("Made", (dict,), {})
    made.fromkeys("ab")
    int.from_bytes(b"\x01", "little")
