"""Recursion to the limit: the RecursionError is caught and the program goes
on. (How deep it got is not printed here; recursion_uncaught.py shows it.)"""


def down(n):
    return down(n + 1)


def after():
    return "after"


def main():
    try:
        down(0)
    except RecursionError as error:
        print("caught:", error)
    return after()


print(main())
