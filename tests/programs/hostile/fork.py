"""os.fork(), twice: the parent and the children all print; one child exits
through the normal interpreter shutdown (atexit handlers and all), the other
with os._exit. The trace is the parent's."""
import os
import sys


def in_child(how):
    print("child says hello and exits with", how)
    sys.stdout.flush()
    if how == "sys.exit":
        sys.exit(3)
    os._exit(4)


def in_parent(pid):
    _, status = os.waitpid(pid, 0)
    print("parent saw the child exit with", os.WEXITSTATUS(status))


def main():
    for how in ("sys.exit", "os._exit"):
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            in_child(how)
        in_parent(pid)


main()
