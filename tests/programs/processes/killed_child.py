"""A forked child is killed (SIGKILL) in the middle of its work; the parent goes on."""
import os
import signal


def doomed():
    for _ in range(20000):
        abs(-1)
    os.kill(os.getpid(), signal.SIGKILL)


pid = os.fork()
if pid == 0:
    doomed()
    os._exit(0)
_, status = os.waitpid(pid, 0)
print("child killed:", os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL)
