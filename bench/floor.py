"""The cost floor of recording calls in Python: runs a program under the
cheapest callback that still records something, to compare the collector
with.

    python bench/floor.py MODE ENGINE script.py [ARGS...]

MODE
    append       the callback takes `time.perf_counter_ns()` and appends one
                 tuple to a buffer that keeps the last 8192 (a
                 `deque(maxlen=8192)`): what any Python-level recorder must
                 at least do per event.
    noop         the callback does nothing: the price of the hook itself.
    c            a C callback (bench/floor.c, built by bench/overhead.ts; its
                 path in PANOPTICON_FLOOR_MODULE) that takes a timestamp and
                 stores it in a ring of 8192: the floor of the native
                 collector, on the same hooks.
    append-list  as `append`, into a plain list that grows to the end. Not a
                 fair floor: tens of millions of tuples (over 1 GB) cost page
                 faults and garbage-collector passes that a recorder which
                 flushes its buffer (the collector sends every 8192 events)
                 never pays; on fib(25) x 16 this made the "floor" 1.4-1.9x
                 slower than `append`. Kept to show that difference.
ENGINE
    setprofile  `sys.setprofile` and `threading.setprofile` (every Python).
    monitoring  `sys.monitoring` (3.12+) with the collector's events:
                PY_START, PY_RESUME, PY_RETURN, PY_YIELD, PY_UNWIND,
                PY_THROW, CALL, C_RETURN, C_RAISE.

The script runs as `__main__` with `sys.argv` and `sys.path[0]` as under
`python script.py`, on every thread.
"""

import collections
import os
import runpy
import sys
import threading
from time import perf_counter_ns

MONITORING_EVENTS = (
    # (event, how many arguments its callback gets)
    ("PY_START", 2),
    ("PY_RESUME", 2),
    ("PY_RETURN", 3),
    ("PY_YIELD", 3),
    ("PY_UNWIND", 3),
    ("PY_THROW", 3),
    ("CALL", 4),
    ("C_RETURN", 4),
    ("C_RAISE", 4),
)

# The collector's FLUSH_THRESHOLD: it holds at most about this many events.
BUFFER_SIZE = 8192
MODES = ("append", "noop", "append-list", "c")


def profile_callback(mode, records):
    append = records.append
    now = perf_counter_ns

    def record(frame, event, arg):
        append((event, now()))

    def ignore(frame, event, arg):
        pass

    return ignore if mode == "noop" else record


def monitoring_callbacks(mode, records):
    """One callback per arity: exact signatures, as the collector has, since
    a `*args` callback would pay for packing a tuple on every event."""
    append = records.append
    now = perf_counter_ns

    def record2(code, offset):
        append((code, now()))

    def record3(code, offset, value):
        append((code, now()))

    def record4(code, offset, callable, arg0):
        append((code, now()))

    def ignore2(code, offset):
        pass

    def ignore3(code, offset, value):
        pass

    def ignore4(code, offset, callable, arg0):
        pass

    if mode == "noop":
        return {2: ignore2, 3: ignore3, 4: ignore4}
    return {2: record2, 3: record3, 4: record4}


def start_setprofile(mode, records):
    callback = profile_callback(mode, records)
    # threading installs this in each thread it starts, before `run`.
    threading.setprofile(callback)
    sys.setprofile(callback)

    def stop():
        sys.setprofile(None)
        threading.setprofile(None)

    return stop


def start_monitoring(mode, records):
    monitoring = sys.monitoring
    tool = monitoring.PROFILER_ID
    monitoring.use_tool_id(tool, "panopticon-floor")
    callbacks = monitoring_callbacks(mode, records)
    wanted = 0
    for name, arity in MONITORING_EVENTS:
        event = getattr(monitoring.events, name)
        monitoring.register_callback(tool, event, callbacks[arity])
        wanted |= event
    # Global events: every thread, current and future, and never DISABLE'd,
    # so that every event costs a call, as in the collector.
    monitoring.set_events(tool, wanted)

    def stop():
        monitoring.set_events(tool, 0)
        monitoring.free_tool_id(tool)

    return stop


def load_c_floor():
    import _imp

    class Spec:
        name = "_panopticon_floor"
        origin = os.environ["PANOPTICON_FLOOR_MODULE"]

    return _imp.create_dynamic(Spec)


def start_c(engine):
    floor = load_c_floor()
    if engine == "setprofile":
        # threading calls the hook as a profile function in each new thread:
        # it puts the C profile function in its place.
        threading.setprofile(floor.install_thread)
    floor.install(engine)

    def stop():
        if engine == "setprofile":
            sys.setprofile(None)
            threading.setprofile(None)
        else:
            sys.monitoring.set_events(4, 0)
            sys.monitoring.free_tool_id(4)

    return stop


ENGINES = {"setprofile": start_setprofile, "monitoring": start_monitoring}


def run(mode, engine, script, args):
    # deque.append with maxlen is one C call, like list.append, and drops the
    # oldest tuple: bounded memory without a length test per event.
    records = [] if mode == "append-list" else collections.deque(maxlen=BUFFER_SIZE)
    sys.argv = [script] + args
    sys.path[0] = os.path.dirname(os.path.abspath(script))
    stop = start_c(engine) if mode == "c" else ENGINES[engine](mode, records)
    try:
        runpy.run_path(script, run_name="__main__")
    finally:
        stop()


def main():
    if len(sys.argv) < 4 or sys.argv[1] not in MODES or sys.argv[2] not in ENGINES:
        sys.stderr.write(
            "usage: floor.py append|noop|append-list|c setprofile|monitoring script.py [args...]\n"
        )
        return 2
    if sys.argv[2] == "monitoring" and not hasattr(sys, "monitoring"):
        sys.stderr.write("error: the monitoring engine needs Python 3.12 or newer\n")
        return 2
    run(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
