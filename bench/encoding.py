"""What the collector's batches cost to encode, per event, in this interpreter.

    python bench/encoding.py [EVENTS]

A loop that stands for a callback appends events shaped like the collector's
(`(op, thread ident, perf_counter_ns(), frame, ref)`) and flushes every 8192:

- `floor`: a 2-tuple appended, the batch thrown away (the benchmark's append
  floor);
- `tuples`: the collector's 5-tuples, the batch thrown away;
- `marshal`: the same, each batch `marshal.dumps(batch, 4)` (protocol 2+);
- `marshal+base64`: the same, base64 on top, as the collector sends it;
- `array extend`: the 5 numbers extended into an `array('q')`, each batch
  `tobytes()`: a fixed-width alternative to marshal.

Each figure is the best of three runs, in ns per event.
"""

import base64
import marshal
import sys
import time
from array import array
from time import perf_counter_ns

BATCH = 8192
IDENT = 140234234234234


def floor(n):
    events = []
    append, now = events.append, perf_counter_ns
    for _ in range(n):
        append((0, now()))
        if len(events) > BATCH:
            del events[:]


def tuples(n, encode=None):
    events = []
    append, now = events.append, perf_counter_ns
    for i in range(n):
        append((0, IDENT, now(), 0, 5))
        if len(events) > BATCH:
            if encode is not None:
                encode(events)
            del events[:]


def marshalled(n):
    tuples(n, lambda events: marshal.dumps(events, 4))


def marshalled_base64(n):
    tuples(n, lambda events: base64.b64encode(marshal.dumps(events, 4)))


def array_extend(n):
    events = array("q")
    extend, now = events.extend, perf_counter_ns
    for _ in range(n):
        extend((0, IDENT, now(), 0, 5))
        if len(events) > BATCH * 5:
            events.tobytes()
            del events[:]


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000000
    sample = [(0, IDENT, perf_counter_ns(), 0, 5) for _ in range(BATCH)]
    print(
        "Python %d.%d.%d, %d events, %.1f bytes/event marshalled"
        % (sys.version_info[:3] + (n, len(marshal.dumps(sample, 4)) / BATCH))
    )
    for name, run in (
        ("floor", floor),
        ("tuples", tuples),
        ("marshal", marshalled),
        ("marshal+base64", marshalled_base64),
        ("array extend", array_extend),
    ):
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            run(n)
            best = min(best, time.perf_counter() - start)
        print("  %-15s %5.0f ns/event" % (name, best / n * 1e9))


if __name__ == "__main__":
    main()
