"""A coroutine created and never awaited: Python warns on stderr when it is
collected (RuntimeWarning, with the file and line)."""


async def fetch():
    return 1


def forget():
    fetch()


forget()
print("done")
