"""A program that clears and runs the at-exit functions itself, as
test_atexit does (in its own process before 3.10): its own functions run
when it says, and the collector's still runs at the real exit, after the
program's last one."""
import atexit


def early():
    print("early")


def cleared():
    print("cleared: must not run")


def last_one():
    print("last one")


atexit.register(cleared)
atexit._clear()
atexit.register(early)
atexit._run_exitfuncs()
atexit.register(last_one)
print("main done")
