"""Code with no file of its own: exec and eval strings, lambdas, and the
comprehensions and generator expressions that get frames of their own."""

namespace = {}
exec("def made_by_exec(x):\n    return x * 2\n", namespace)
print(namespace["made_by_exec"](21))
print(eval("(lambda y: y + 1)(41)"))


def main():
    square = lambda v: v * v  # noqa: E731
    squares = [square(i) for i in range(3)]
    evens = {i for i in range(6) if i % 2 == 0}
    table = {i: i * i for i in range(3)}
    total = sum(i for i in range(4))
    return squares, sorted(evens), table, total


print(main())
