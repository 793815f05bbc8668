"""A fork that execs: the child replaces itself with another Python program
(os.execv), as a shell or a process supervisor does; the parent waits."""
import os
import sys


def before_exec():
    print("child before exec", flush=True)


pid = os.fork()
if pid == 0:
    before_exec()
    os.execv(sys.executable, [sys.executable, "-c", "def new_program():\n    print('child after exec')\nnew_program()"])
_, status = os.waitpid(pid, 0)
print("parent: child exited with", os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") else status >> 8)
