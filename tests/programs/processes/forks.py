"""A fork: the child works and leaves by os._exit, the parent waits for it."""
import os


def child_work():
    return sum(range(1000))


def parent_work():
    return sum(range(10))


pid = os.fork()
if pid == 0:
    print("child", child_work(), flush=True)
    os._exit(0)
_, status = os.waitpid(pid, 0)
print("parent", parent_work(), "child status", status)
