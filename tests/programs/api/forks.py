"""A fork inside a trace() block: under the command the child is followed
(a process of the trace), in a plain process it is not recorded; either way
the parent's block ends without waiting for the child (which waits for the
parent to say the block has ended)."""
import os
import signal

import panopticon


def in_child():
    return 1


def in_parent():
    return 2


read_end, write_end = os.pipe()
with panopticon.trace("forks.json"):
    pid = os.fork()
    if pid == 0:
        os.close(write_end)
        signal.alarm(20)  # never left hanging, whatever happens
        in_child()
        released = os.read(read_end, 1)
        print("child released" if released else "child gave up", flush=True)
        os._exit(0)
    in_parent()
os.close(read_end)
print("block ended", flush=True)
os.write(write_end, b"x")
os.waitpid(pid, 0)
print("done")
