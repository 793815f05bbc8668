"""Runs one command and prints, as one JSON line on stdout, its wall time,
exit status and peak memory.

    python bench/_measure.py [--env NAME=VALUE ...] COMMAND [ARGS...]

`--env` sets a variable for the command only: set for this script, a
PYTHONPATH with a sitecustomize in it would run in this interpreter too.

The command's stdout and stderr both go to our stderr, so that our stdout
holds only the result:

    {"wall_s": 0.251, "status": 0, "max_rss": 7876608, "own_peak_rss": 7614464}

- `wall_s`: from just before the spawn to the moment the child exits (a
  pidfd becomes readable then, so the time is exact, not rounded to the
  polling interval below).
- `max_rss` (bytes): `ru_maxrss` from `os.wait4`. On Linux this is NOT the
  child's own peak: the kernel reports the larger of the child's peak and
  that of every descendant the child itself waited for (`cmaxrss`), so for
  `deno run main.ts` it is usually the traced Python's peak, not deno's.
- `own_peak_rss` (bytes): the child's own high-water mark (`VmHWM` in
  /proc/PID/status), read every 10 ms while it runs. It can miss growth in
  the last 10 ms of the process; `null` when /proc is not there.

Standard library only; Python 3.8+ (without `os.pidfd_open`, before 3.9,
a thread waits for the child instead).
"""

import json
import os
import select
import sys
import threading
import time

POLL_SECONDS = 0.01


def read_vmhwm(pid):
    """The process's peak resident set in bytes, or None if unreadable."""
    try:
        with open("/proc/%d/status" % pid, "rb") as status:
            for line in status:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    # A zombie has no memory map (and no VmHWM line) any more.
    return None


def spawn(argv, env):
    # posix_spawnp rather than subprocess: no Popen bookkeeping that would
    # race our own wait4 for the child's status.
    return os.posix_spawnp(
        argv[0], argv, dict(os.environ, **env), file_actions=[(os.POSIX_SPAWN_DUP2, 2, 1)]
    )


def wait_for_exit(pid, on_tick):
    """Blocks until `pid` has exited (without reaping it), calling `on_tick`
    every POLL_SECONDS meanwhile; returns the time of exit."""
    if hasattr(os, "pidfd_open"):
        fd = os.pidfd_open(pid)
        try:
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            while not poller.poll(POLL_SECONDS * 1000):
                on_tick()
            return time.perf_counter()
        finally:
            os.close(fd)
    exited = threading.Event()
    ended = []

    def waiter():
        # waitid with WNOWAIT leaves the child for wait4 to collect its rusage.
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
        ended.append(time.perf_counter())
        exited.set()

    threading.Thread(target=waiter, daemon=True).start()
    while not exited.wait(POLL_SECONDS):
        on_tick()
    return ended[0]


def measure(argv, env):
    peak = [None]

    def sample():
        value = read_vmhwm(pid)
        if value is not None and (peak[0] is None or value > peak[0]):
            peak[0] = value

    start = time.perf_counter()
    pid = spawn(argv, env)
    end = wait_for_exit(pid, sample)
    _, status, usage = os.wait4(pid, 0)
    return {
        "wall_s": end - start,
        "status": exit_code(status),
        # ru_maxrss is in kilobytes on Linux.
        "max_rss": usage.ru_maxrss * 1024,
        "own_peak_rss": peak[0],
    }


def exit_code(status):
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def main():
    args = sys.argv[1:]
    env = {}
    while len(args) >= 2 and args[0] == "--env" and "=" in args[1]:
        name, _, value = args[1].partition("=")
        env[name] = value
        args = args[2:]
    if not args:
        sys.stderr.write("usage: _measure.py [--env NAME=VALUE ...] COMMAND [ARGS...]\n")
        return 2
    try:
        result = measure(args, env)
    except OSError as error:
        sys.stderr.write("error: cannot run %s: %s\n" % (args[0], error))
        return 1
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
