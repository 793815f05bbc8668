"""Generators closed, thrown into (caught and uncaught), abandoned, and left
suspended inside try/finally until the interpreter shuts down."""


def guarded(name):
    try:
        yield 1
        yield 2
    finally:
        print("finally of", name)


def catcher():
    while True:
        try:
            yield "waiting"
        except ValueError as error:
            print("caught", error)


def main():
    closed = guarded("closed")
    next(closed)
    closed.close()

    thrown = guarded("thrown")
    next(thrown)
    try:
        thrown.throw(KeyError("k"))
    except KeyError:
        print("KeyError came back out")

    survivor = catcher()
    next(survivor)
    print(survivor.throw(ValueError("v")))
    survivor.close()

    abandoned = guarded("abandoned")
    next(abandoned)
    del abandoned

    return guarded("left for shutdown")


left = main()
next(left)
print("main done")
