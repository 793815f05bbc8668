"""An exception nobody catches: traceback on stderr, exit status 1."""


def inner():
    raise ValueError("boom")


def outer():
    inner()


print("before")
outer()
