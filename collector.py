"""Panopticon's Python collector, and the module `panopticon`.

Two roles, one file (standard library only; Python 3.8 to 3.13):

- Under the `panopticon` command, this file is written into a private
  directory as `sitecustomize.py`, first on PYTHONPATH, so the interpreter
  loads it at start-up and then runs the user's program itself: `sys.argv`,
  `sys.path[0]`, `__main__`, tracebacks and the exit status stay Python's
  own. At import time it removes every trace of itself (its `sys.path` entry,
  its environment variables), chains to the user's own `sitecustomize`,
  connects to the converter's socket and arms the profiler; recording of the
  main thread starts at the program's `<module>` frame (or, with `--manual`,
  in the program's `trace()` blocks). `import panopticon` then gets this
  module.
- Written out by `panopticon python-module`, it is the importable module
  `panopticon` for a plain `python` process: `trace()`, `traced`,
  `instant()`, `counter()` and `span()` (docs/python-api.md). Nothing starts
  at import.

Events go out as NDJSON records, specified in docs/protocol.md. The per-event
callbacks do as little as possible: one tuple appended to a shared list. Code
objects and C functions are named once, when first seen, and referred to by
small integers after that.
"""

import atexit
import dis
import fnmatch
import functools
import itertools
import json
import marshal
import os
import signal
import socket
import sys
import threading
import types
from base64 import b64encode
from time import perf_counter_ns

__all__ = ["trace", "traced", "instant", "counter", "span"]

PROTOCOL_VERSION = 3

# Event op codes (docs/protocol.md): 0 call, 1 resume, 2 return, 3 unwind,
# 4 suspend, 5 c_call, 6 c_return, 7 c_raise; the marks of the in-program
# API: 8 instant, 9 counter, 10 span begin, 11 span end, 12 stop (recording
# stops on the thread). The callbacks write them as literals, since a global
# lookup per event is measurable.


def _asynchronous_signals():
    """The signals held back while a record is sent (see Recorder.write)."""
    if not hasattr(signal, "pthread_sigmask"):
        return frozenset()
    names = (
        "SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM",
        "SIGCHLD", "SIGWINCH", "SIGPIPE", "SIGVTALRM", "SIGPROF", "SIGIO", "SIGURG",
    )
    return frozenset(getattr(signal, name) for name in names if hasattr(signal, name))


HELD_SIGNALS = _asynchronous_signals()

# Buffered events before a flush. Large enough that the fixed cost of a flush
# (the lock, the signal mask, a write) is spread thin; small enough that a
# batch encodes in a millisecond or two and a killed program loses little.
FLUSH_THRESHOLD = 8192

CO_GENERATOR = 0x20
CO_COROUTINE = 0x80
CO_ASYNC_GENERATOR = 0x200
CO_ITERABLE_COROUTINE = 0x100
GENERATOR_LIKE = CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR | CO_ITERABLE_COROUTINE

# The C callables that `sys.setprofile` reports as `c_call`: builtin functions
# and methods implemented in C. sys.monitoring's CALL event fires for every
# callable, so the monitoring engine filters on the same types.
C_FUNCTION_TYPES = (types.BuiltinFunctionType, types.MethodDescriptorType)

OWN_FILE = __file__
DEBUG = bool(os.environ.get("PANOPTICON_DEBUG"))


def _debug(message):
    if DEBUG:
        sys.stderr.write("panopticon collector: %s\n" % message)


def _warn(message):
    """Say `message` on stderr; False if it could not be said."""
    try:
        sys.stderr.write("panopticon: warning: %s\n" % message)
        sys.stderr.flush()
        return True
    except Exception:
        return False


# --- where a frame is suspended rather than finished -------------------------

_OPS = dis.opmap
_YIELD_VALUE = _OPS["YIELD_VALUE"]
_YIELD_FROM = _OPS.get("YIELD_FROM")  # 3.8-3.10 only
_RESUME = _OPS.get("RESUME")  # 3.11+


def _suspension_offsets(code):
    """The values of `f_lasti` at which a 'return' event means a suspension.

    3.8-3.10: a `yield` sits on YIELD_VALUE; inside `yield from` and `await`
    the frame's f_lasti points at the instruction before YIELD_FROM, which is
    re-executed on resumption. 3.11 and 3.12: both sit on YIELD_VALUE. 3.13
    reports the RESUME that follows YIELD_VALUE.
    """
    raw = code.co_code
    offsets = set()
    for offset in range(0, len(raw), 2):
        op = raw[offset]
        if op == _YIELD_VALUE:
            offsets.add(offset)
            if _RESUME is not None and offset + 2 < len(raw) and raw[offset + 2] == _RESUME:
                offsets.add(offset + 2)
        elif _YIELD_FROM is not None and op == _YIELD_FROM and offset >= 2:
            offsets.add(offset - 2)
    return frozenset(offsets)


def _fresh_start_offsets(code):
    """The values of `f_lasti` at which a 'call' event is a fresh start.

    3.8-3.10: -1, before the first instruction. 3.11+: a frame that starts
    afresh stands on a `RESUME` whose "where" (oparg & 3) is 0; a resumed one
    on a RESUME with a non-zero "where" (after yield, yield from, await) or,
    when thrown into, on its YIELD_VALUE. Computed once per code object:
    `co_code` builds a new bytes object on every access in 3.11.
    """
    if _RESUME is None:
        return frozenset((-1,))
    raw = code.co_code
    return frozenset(
        offset
        for offset in range(0, len(raw), 2)
        if raw[offset] == _RESUME and raw[offset + 1] & 3 == 0
    )


# --- naming code objects -----------------------------------------------------


def _unwrap_method(obj):
    # staticmethod and classmethod objects have no __qualname__ before 3.10.
    if isinstance(obj, (staticmethod, classmethod)):
        return obj.__func__
    return obj


def _search_qualname(code, frame):
    """Find a qualified name on 3.8-3.10, where code objects have none.

    Looks for the function among the module's globals and the methods of its
    classes; a nested function is named after the frame that defines it.
    Runs once per code object.
    """
    name = code.co_name
    if name.startswith("<"):
        return name
    g = frame.f_globals
    obj = g.get(name)
    if getattr(obj, "__code__", None) is code:
        return getattr(obj, "__qualname__", name)
    for value in list(g.values()):
        if not isinstance(value, type):
            continue
        for attr in list(vars(value).values()):
            if isinstance(attr, property):
                candidates = (attr.fget, attr.fset, attr.fdel)
            else:
                candidates = (_unwrap_method(attr),)
            for candidate in candidates:
                if getattr(candidate, "__code__", None) is code:
                    return getattr(candidate, "__qualname__", name)
    back = frame.f_back
    if back is not None and code in back.f_code.co_consts:
        # Defined by the caller: a class body or a function nested in it.
        if back.f_code.co_name == "<module>":
            return name
        return _qualname(back.f_code, back) + ".<locals>." + name
    return name


def _qualname(code, frame):
    qualname = getattr(code, "co_qualname", None)  # 3.11+
    if qualname is not None:
        return qualname
    try:
        return _search_qualname(code, frame)
    except Exception:
        return code.co_name


def _code_type(flags):
    if flags & CO_ASYNC_GENERATOR:
        return "async_generator"
    if flags & (CO_COROUTINE | CO_ITERABLE_COROUTINE):
        return "coroutine"
    if flags & CO_GENERATOR:
        return "generator"
    return "function"


def _max_rss():
    """The process's peak resident memory in bytes, where the platform tells.

    Linux: VmHWM, the peak of this program's own memory. Its getrusage
    ru_maxrss would also count the image of the process that forked it
    before exec (the converter's, tens of megabytes).
    """
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024  # reported in kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux counts KiB


def _native_id():
    get_native_id = getattr(threading, "get_native_id", None)
    return get_native_id() if get_native_id is not None else None


def _cfunc_name(fn):
    qualname = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if not isinstance(qualname, str):
        return repr(fn)
    module = getattr(fn, "__module__", None)
    if isinstance(module, str) and module != "builtins" and "." not in qualname:
        return module + "." + qualname
    return qualname


# --- filters -----------------------------------------------------------------------


def _stdlib_dirs():
    import sysconfig

    dirs = set()
    paths = sysconfig.get_paths()
    for key in ("stdlib", "platstdlib"):
        path = paths.get(key)
        if path:
            dirs.add(os.path.join(path, ""))
            dirs.add(os.path.join(os.path.realpath(path), ""))
    return tuple(dirs)


class Filters:
    """Which code is recorded: decided once per code object.

    Built from PANOPTICON_FILTERS (see src/cli.ts): patterns with an explicit
    `module:`, `file:` or `function:` prefix, `exclude_stdlib`, `c_calls`.
    """

    def __init__(self, spec):
        spec = spec or {}
        self.include = [self._parse(p) for p in spec.get("include") or []]
        self.exclude = [self._parse(p) for p in spec.get("exclude") or []]
        self.stdlib = _stdlib_dirs() if spec.get("exclude_stdlib") else None
        self.c_calls = spec.get("c_calls", True) is not False
        # Whether any code can be excluded (this file always is, and needs no
        # per-event check: its code never runs while recording is on).
        self.active = bool(self.include or self.exclude or self.stdlib)

    @staticmethod
    def _parse(pattern):
        kind, _, glob = str(pattern).partition(":")
        if kind not in ("module", "file", "function") or not glob:
            raise ValueError("bad filter pattern %r" % pattern)
        return kind, glob

    @staticmethod
    def _matches(patterns, module, qualname, filename):
        match = fnmatch.fnmatchcase
        for kind, glob in patterns:
            value = module if kind == "module" else filename if kind == "file" else qualname
            if match(value, glob):
                return True
        return False

    def _is_stdlib(self, filename):
        if filename.startswith("<frozen"):
            return True  # the import machinery
        if "site-packages" in filename or "dist-packages" in filename:
            return False
        return filename.startswith(self.stdlib)

    def allows(self, module, qualname, filename):
        if self.stdlib is not None and self._is_stdlib(filename):
            return False
        if self.include and not self._matches(self.include, module, qualname, filename):
            return False
        return not self._matches(self.exclude, module, qualname, filename)


# --- marks: what the program itself puts on the timeline ---------------------


class _Mark(tuple):
    """`(category, name, args)` of an instant, counter or span, as given.

    A tuple subclass: made by a call of a type, which no profiler reports,
    and refused by marshal, which is how a flush finds the marks in a batch
    (Recorder._define_marks).
    """

    __slots__ = ()


def _text(value):
    try:
        return value if type(value) is str else str(value)
    except Exception:
        return "<%s>" % type(value).__name__


def _jsonable(value, depth):
    """`value` as JSON values: other objects by their repr(), cycles cut."""
    if value is None or type(value) in (str, bool, int):
        return value
    if type(value) is float:
        return value if value == value and value not in (float("inf"), float("-inf")) else repr(value)
    if depth < 8:
        if isinstance(value, dict):
            return {_text(k): _jsonable(v, depth + 1) for k, v in list(value.items())}
        if isinstance(value, (list, tuple)):
            return [_jsonable(v, depth + 1) for v in value]
    try:
        return repr(value)
    except Exception:
        return "<%s>" % type(value).__name__


# --- the recorder --------------------------------------------------------------


class Recorder:
    """Owns the channel, the event buffer and the tables of names.

    Every callback appends `(op, thread, ts, frame, ref)` to `self.events`;
    `flush` sends what has accumulated. Flushes may come from any thread, so
    they take a lock; appends need none (list.append is atomic under the GIL,
    and the buffer is only ever trimmed from the front).
    """

    def __init__(self, sock, engine, filters):
        self.sock = sock
        self.engine = engine
        self.filters = filters
        self.events = []
        self.definitions = []
        self.lock = threading.Lock()
        self.closed = False
        self.sent = 0
        self.dropped = 0
        # id(code) -> code number: positive for plain functions, negative for
        # generator-like code, 0 for code that is never recorded (this file,
        # code the filters exclude).
        self.code_ids = {}
        # For generator-like code, id(code) -> f_lasti offsets where a 'call'
        # event is a fresh start, and where a 'return' event is a suspension.
        self.fresh_points = {}
        self.suspension_points = {}
        self.code_count = 0
        self.mark_count = 0
        self.on_flush = None  # the engine's look at its own state, see MonitoringEngine
        self.on_close = None  # switches recording off when the channel breaks
        self.cfunc_ids = {}  # id(C function) -> number, for long-lived callables
        self.cfunc_by_name = {}
        self.keep_alive = []  # keeps ids in the tables from being reused

    # definitions ------------------------------------------------------------

    def define(self, record):
        self.definitions.append(json.dumps(record, separators=(",", ":")) + "\n")

    def register_code(self, code, frame):
        """Number a code object, once. Returns 0 for code that is never traced.

        This file's own code (the API's wrappers and context managers, the
        audit hook) is recorded but marked hidden: the converter follows its
        frames, so that the stack stays right, and shows what they call.
        """
        key = id(code)
        self.keep_alive.append(code)
        if code.co_filename == OWN_FILE:
            self.code_count += 1
            number = self.code_count
            self.define(
                {
                    "kind": "code",
                    "id": number,
                    "module": "panopticon",
                    "qualname": code.co_name,
                    "file": code.co_filename,
                    "line": code.co_firstlineno,
                    "type": _code_type(code.co_flags),
                    "hidden": True,
                }
            )
            if code.co_flags & GENERATOR_LIKE:
                self.fresh_points[key] = _fresh_start_offsets(code)
                self.suspension_points[key] = _suspension_offsets(code)
                number = -number
            self.code_ids[key] = number
            return number
        module = frame.f_globals.get("__name__") if frame is not None else None
        module = module if isinstance(module, str) else ""
        qualname = _qualname(code, frame) if frame is not None else code.co_name
        if self.filters.active and not self.filters.allows(module, qualname, code.co_filename):
            self.code_ids[key] = 0
            return 0
        self.code_count += 1
        number = self.code_count
        flags = code.co_flags
        self.define(
            {
                "kind": "code",
                "id": number,
                "module": module,
                "qualname": qualname,
                "file": code.co_filename,
                "line": code.co_firstlineno,
                "type": _code_type(flags),
            }
        )
        if flags & GENERATOR_LIKE:
            self.fresh_points[key] = _fresh_start_offsets(code)
            self.suspension_points[key] = _suspension_offsets(code)
            number = -number
        self.code_ids[key] = number
        return number

    def register_cfunc(self, fn):
        name = _cfunc_name(fn)
        number = self.cfunc_by_name.get(name)
        if number is None:
            number = len(self.cfunc_by_name) + 1
            self.cfunc_by_name[name] = number
            self.define({"kind": "cfunc", "id": number, "name": name})
        # Builtin methods bound to an instance are created afresh for each
        # call, so their ids are reused for other objects: only long-lived
        # callables are remembered by id (and kept alive so the id stays theirs).
        owner = getattr(fn, "__self__", None)
        if owner is None or isinstance(owner, (types.ModuleType, type)) or not isinstance(
            fn, types.BuiltinFunctionType
        ):
            self.cfunc_ids[id(fn)] = number
            self.keep_alive.append(fn)
        return number

    def announce_thread(self, ident, name):
        """Send a `thread` record for the calling thread, after every event before it."""
        self.flush(
            ident,
            {"kind": "thread", "thread": ident, "native_id": _native_id(), "name": name},
        )

    # sending ------------------------------------------------------------------

    def write(self, data):
        """Send all of `data` as one piece.

        `sendall` checks for signals between partial sends, and a handler
        that raises there (Ctrl-C's KeyboardInterrupt) would leave half a
        record on the wire and the rest of the stream unreadable. The
        asynchronous signals are therefore held back while it runs: they are
        delivered, and their handlers run, once the record is whole. (A
        signal the kernel hands to another thread meanwhile can still raise
        here, in the main thread: see docs/reliability.md.)
        """
        if HELD_SIGNALS:
            held = signal.pthread_sigmask(signal.SIG_BLOCK, HELD_SIGNALS)
        try:
            self.sock.sendall(data)
        except OSError as error:
            self.closed = True
            _warn("the trace channel closed (%s): recording stopped" % error)
            if self.on_close is not None:
                # The program goes on at full speed, rather than feeding
                # callbacks whose events can go nowhere.
                try:
                    self.on_close()
                except Exception:
                    pass
        finally:
            if HELD_SIGNALS:
                signal.pthread_sigmask(signal.SIG_SETMASK, held)

    def flush(self, ident, record=None):
        """Send the buffered events, then `record` if given, in that order."""
        start = perf_counter_ns()
        if self.on_flush is not None:
            self.on_flush()
        with self.lock:
            if self.closed:
                # Nothing can be sent any more (the channel broke, e.g. on a
                # full disk): keep the buffer from growing for the rest of
                # the run.
                self.dropped += len(self.events)
                del self.events[:]
                return
            events = self.events
            count = len(events)
            # Take the events before the definitions: a definition is always
            # added before the first event that uses it.
            batch = events[:count]
            del events[:count]
            packed = None
            if count:
                # marshal writes integers in binary, several times faster than
                # json.dumps writes them as text (docs/protocol.md, `packed`).
                # Version 4 writes the thread ident and the small integers,
                # shared objects, once a batch and then refers back to them:
                # cheaper than version 2 and shorter (docs/protocol.md).
                try:
                    packed = marshal.dumps(batch, 4)
                except ValueError:
                    # A _Mark cannot be marshalled: this batch holds marks.
                    packed = marshal.dumps(self._define_marks(batch), 4)
            definitions = self.definitions
            pending = "".join(definitions[: len(definitions)])
            del definitions[: len(definitions)]
            parts = [pending.encode()] if pending else []
            if packed is not None:
                parts.append(b'{"kind":"events","packed":"')
                parts.append(b64encode(packed))
                parts.append(b'"}\n')
            if record is not None:
                parts.append(json.dumps(record, separators=(",", ":")).encode() + b"\n")
            if parts:
                self.write(b"".join(parts))
            self.sent += count
            if count:
                self.define(
                    {
                        "kind": "flush",
                        "thread": ident,
                        "start": start,
                        "end": perf_counter_ns(),
                        "events": count,
                    }
                )

    def _define_marks(self, batch):
        """Send a `mark` record for each mark of `batch`; return it with their numbers.

        The API appends marks with their name and arguments as they were
        given: turning them into JSON there would call code that recording
        sees. Here, in a flush, recording sees nothing.
        """
        resolved = []
        for event in batch:
            mark = event[4]
            if type(mark) is _Mark:
                self.mark_count += 1
                category, name, args = mark
                self.define(
                    {
                        "kind": "mark",
                        "id": self.mark_count,
                        "name": _text(name),
                        "category": category,
                        "args": _jsonable(args, 0),
                    }
                )
                event = (event[0], event[1], event[2], event[3], self.mark_count)
            resolved.append(event)
        return resolved

    def finish(self, reason):
        ident = threading.get_ident()
        self.flush(ident)
        end = {
            "kind": "end",
            "ts": perf_counter_ns(),
            "events": self.sent + len(self.events),
            "dropped": self.dropped,
            "reason": reason,
        }
        max_rss = _max_rss()
        if max_rss is not None:
            end["max_rss"] = max_rss
        self.flush(ident, end)
        with self.lock:
            self.closed = True
            try:
                self.sock.close()
            except OSError:
                pass


# --- engine: sys.setprofile (3.8+) ----------------------------------------------


def _make_profiler(recorder, ident):
    """A profile function for one thread, with its ident and tables bound.

    This is the hot path of the setprofile engine: everything it uses is a
    local or a closure variable, and op codes are literals (see the op codes above).
    """
    append = recorder.events.append
    events = recorder.events
    code_number = recorder.code_ids.get
    fresh_points = recorder.fresh_points
    suspension_points = recorder.suspension_points
    cfunc_number = recorder.cfunc_ids.get
    register_code = recorder.register_code
    register_cfunc = recorder.register_cfunc
    flush = recorder.flush
    now = perf_counter_ns
    _id = id
    _len = len
    threshold = FLUSH_THRESHOLD
    c_calls = recorder.filters.c_calls
    # With filters on, a C call is recorded only when its caller is, and a
    # return must be looked up (an excluded frame's is not recorded); without
    # them, the code's flags tell a generator's return more cheaply.
    filtering = recorder.filters.active
    generator_like = GENERATOR_LIKE

    def profile(frame, event, arg):
        if event == "call":
            code = frame.f_code
            number = code_number(_id(code))
            if number is None:
                number = register_code(code, frame)
            if number > 0:
                append((0, ident, now(), 0, number))
            elif number:
                if frame.f_lasti in fresh_points[_id(code)]:
                    append((0, ident, now(), _id(frame), -number))
                else:
                    append((1, ident, now(), _id(frame), -number))
            else:
                return
            if _len(events) > threshold:
                flush(ident)
        elif event == "return":
            ts = now()
            code = frame.f_code
            if filtering:
                number = code_number(_id(code))
                if number == 0:
                    return
                generator = number is not None and number < 0
            else:
                generator = code.co_flags & generator_like
            if not generator:
                # A frame not seen starting (runpy's, below <module>) ends the
                # same way: the converter ignores an end it has no start for.
                append((2, ident, ts, 0, 0))
            elif frame.f_lasti in suspension_points.get(_id(code), ()):
                append((4, ident, ts, _id(frame), 0))
            else:
                append((2, ident, ts, _id(frame), 0))
        elif c_calls:
            if filtering and code_number(_id(frame.f_code)) == 0:
                return
            if event == "c_call":
                number = cfunc_number(_id(arg))
                if number is None:
                    number = register_cfunc(arg)
                append((5, ident, now(), 0, number))
                if _len(events) > threshold:
                    flush(ident)
            elif event == "c_return":
                append((6, ident, now(), 0, 0))
            else:
                append((7, ident, now(), 0, 0))

    return profile


class ProfileEngine:
    name = "setprofile"

    def __init__(self, recorder):
        self.recorder = recorder
        self.main_profile = None
        # ident -> the profile function recording that thread, for the
        # guard (see _guard_profiler) and for threads switched on by the API.
        self.profiles = {}
        self.announced = {}  # ident -> the name its `thread` record gave

    def profile_for(self, ident):
        """The profile function of thread `ident`, made once."""
        profile = self.profiles.get(ident)
        if profile is None:
            profile = self.profiles[ident] = _make_profiler(self.recorder, ident)
        return profile

    def record_thread(self, ident):
        """Start recording the calling thread (the API, in manual mode).

        The thread is announced the first time, and again only under a new
        name: a thread that is switched on and off many times stays one track.
        Must run while the thread records nothing: announcing runs Python code.
        """
        name = threading.current_thread().name
        if self.announced.get(ident) != name:
            self.announced[ident] = name
            self.recorder.announce_thread(ident, name)
        _switch_profile(self.profile_for(ident))

    def start(self, main_ident, manual=False):
        recorder = self.recorder
        engine = self
        if manual:
            return  # Threads are switched on by the API (record_thread).

        def wait_for_main(frame, event, arg):
            # Site initialisation and runpy run before the program: start at
            # the program's own <module> frame.
            if (
                event == "call"
                and frame.f_code.co_name == "<module>"
                and frame.f_globals.get("__name__") == "__main__"
            ):
                profile = engine.profile_for(main_ident)
                engine.main_profile = profile
                engine.announced[main_ident] = threading.current_thread().name
                _switch_profile(profile)
                profile(frame, event, arg)

        def start_thread(frame, event, arg):
            # threading installs this in each new thread before `run`.
            ident = threading.get_ident()
            name = threading.current_thread().name
            engine.announced[ident] = name
            recorder.announce_thread(ident, name)
            profile = _make_profiler(recorder, ident)
            engine.profiles[ident] = profile
            _switch_profile(profile)
            profile(frame, event, arg)

        threading.setprofile(start_thread)
        sys.setprofile(wait_for_main)

    def check_at_exit(self, current_profile):
        """Say so when the main thread stopped recording before the end.

        Python removes a profile function that raises (a RecursionError at
        the recursion limit, where the callback has no stack room left), and
        the program may replace it (sys.setprofile, cProfile): the events of
        the rest of the run are then missing. `current_profile` reads
        sys.getprofile() through functools.partial, so no event is recorded.
        """
        if (
            self.main_profile is not None
            and current_profile() is not self.main_profile
            and not _guard.warned
            and not self.recorder.closed
        ):
            _warn(
                "recording of the main thread stopped before the program ended: its "
                "profile function was removed or replaced (by sys.setprofile, another "
                "profiler, or a RecursionError at the recursion limit)"
            )

    def silencer(self):
        """A C callable that stops recording on the calling thread.

        Called from atexit, which calls from C, so switching off records no
        event (a call from Python code would record a stray `c_call`).
        """
        return functools.partial(sys.setprofile, None)

    def stop(self):
        _switch_profile(None)
        threading.setprofile(None)


# --- engine: sys.monitoring (3.12+) -------------------------------------------


class MonitoringEngine:
    name = "monitoring"

    def __init__(self, recorder, tool):
        self.recorder = recorder
        self.tool = tool
        self.callbacks = {}  # event -> our callback, to move to another tool id
        self.mask = 0  # the events we have switched on
        self.reported_mask = 0
        self.stopped = False
        self.meddled = False
        # sys.monitoring's own functions: the program's calls go through the
        # guard (see guard_tool), ours never do.
        monitoring = sys.monitoring
        self.api = {
            name: getattr(monitoring, name)
            for name in ("use_tool_id", "free_tool_id", "get_tool", "set_events",
                         "register_callback", "set_local_events")
        }

    # Tool ids 3 and 4 have no assigned role. PROFILER_ID (2) would be the
    # natural choice, but cProfile claims it on 3.12+ and a program that
    # profiles itself (or claims the id) must run as it does without us.
    TOOL_IDS = (4, 3)

    @staticmethod
    def available():
        monitoring = getattr(sys, "monitoring", None)
        if monitoring is None:
            return None
        for tool in MonitoringEngine.TOOL_IDS:
            if monitoring.get_tool(tool) is None:
                return tool
        return None

    def start(self, main_ident, manual=False):
        # Manual recording is per thread, which sys.monitoring is not: the
        # API always records with the setprofile engine (see _choose_engine).
        monitoring = sys.monitoring
        E = monitoring.events
        DISABLE = monitoring.DISABLE
        tool = self.tool
        recorder = self.recorder
        append = recorder.events.append
        events = recorder.events
        code_ids = recorder.code_ids
        code_number = code_ids.get
        cfunc_number = recorder.cfunc_ids.get
        register_code = recorder.register_code
        register_cfunc = recorder.register_cfunc
        flush = recorder.flush
        now = perf_counter_ns
        get_ident = threading.get_ident
        getframe = sys._getframe
        c_types = C_FUNCTION_TYPES
        _id = id
        _len = len
        threshold = FLUSH_THRESHOLD
        # With filters on, a C call is recorded only when its caller is.
        c_calls_follow_caller = recorder.filters.active

        # Every thread that `threading` starts runs Thread._bootstrap first:
        # its start is where the thread is announced, before any of its
        # events, so that a reused ident cannot merge two threads. Its code
        # is never entered in `code_ids`, so that each start comes here.
        bootstrap_code = threading.Thread._bootstrap.__code__
        bootstrap_number = []

        def first_sight(code, frame):
            if code is not bootstrap_code:
                return register_code(code, frame)
            thread = frame.f_locals.get("self")
            recorder.announce_thread(get_ident(), str(getattr(thread, "name", "")))
            if not bootstrap_number:
                bootstrap_number.append(register_code(code, frame))
                del code_ids[id(code)]
            return bootstrap_number[0]

        # The callbacks below are the hot path: locals and closure variables
        # only, op codes as literals (see the op codes above). Code that the filters
        # exclude is switched off at its source with DISABLE, where the event
        # is a local one (PY_START, PY_RESUME, PY_RETURN, PY_YIELD, CALL);
        # for the others (PY_UNWIND, PY_THROW) DISABLE would raise into the
        # program, so those return at once.

        def py_start(code, offset):
            number = code_number(_id(code))
            if number is None:
                number = first_sight(code, getframe(1))
            if number > 0:
                append((0, get_ident(), now(), 0, number))
            elif number:
                append((0, get_ident(), now(), _id(getframe(1)), -number))
            else:
                return DISABLE
            if _len(events) > threshold:
                flush(get_ident())

        def py_resume(code, offset):
            number = code_number(_id(code))
            if number is None:
                number = register_code(code, getframe(1))
            if not number:
                return DISABLE
            append((1, get_ident(), now(), _id(getframe(1)), -number))
            if _len(events) > threshold:
                flush(get_ident())

        def py_throw(code, offset, exception):
            number = code_number(_id(code))
            if number is None:
                number = register_code(code, getframe(1))
            if number:
                append((1, get_ident(), now(), _id(getframe(1)), -number))

        def py_return(code, offset, value):
            ts = now()
            number = code_number(_id(code))
            if number is None or number > 0:
                append((2, get_ident(), ts, 0, 0))
            elif number:
                append((2, get_ident(), ts, _id(getframe(1)), 0))
            else:
                return DISABLE

        def py_unwind(code, offset, exception):
            ts = now()
            number = code_number(_id(code))
            if number is None or number > 0:
                append((3, get_ident(), ts, 0, 0))
            elif number:
                append((3, get_ident(), ts, _id(getframe(1)), 0))

        def py_yield(code, offset, value):
            if not code_number(_id(code)):
                return DISABLE
            append((4, get_ident(), now(), _id(getframe(1)), 0))

        def call(code, offset, callable, arg0):
            if type(callable) in c_types:
                if c_calls_follow_caller and code_number(_id(code)) == 0:
                    return DISABLE
                number = cfunc_number(_id(callable))
                if number is None:
                    number = register_cfunc(callable)
                append((5, get_ident(), now(), 0, number))
                if _len(events) > threshold:
                    flush(get_ident())

        def c_return(code, offset, callable, arg0):
            if type(callable) in c_types:
                append((6, get_ident(), now(), 0, 0))

        def c_raise(code, offset, callable, arg0):
            if type(callable) in c_types:
                append((7, get_ident(), now(), 0, 0))

        recording = (
            E.PY_START | E.PY_RESUME | E.PY_RETURN | E.PY_YIELD | E.PY_UNWIND | E.PY_THROW
        )
        if recorder.filters.c_calls:
            # C_RETURN and C_RAISE come only with CALL.
            recording |= E.CALL | E.C_RETURN | E.C_RAISE

        def wait_for_main(code, offset):
            # Only PY_START is on until the program's <module> starts; any
            # other code is switched off at its source (DISABLE is allowed for
            # this local event) and switched back on by restart_events().
            frame = getframe(1)
            if code.co_name == "<module>" and frame.f_globals.get("__name__") == "__main__":
                engine.register(E.PY_START, py_start)
                engine.switch_on(recording)
                monitoring.restart_events()
                number = code_number(_id(code))
                if number is None:
                    number = register_code(code, frame)
                if number:
                    append((0, get_ident(), now(), 0, number))
                return None
            return DISABLE

        engine = self
        self.api["use_tool_id"](tool, "panopticon")
        for event, callback in (
            (E.PY_START, wait_for_main),
            (E.PY_RESUME, py_resume),
            (E.PY_THROW, py_throw),
            (E.PY_RETURN, py_return),
            (E.PY_UNWIND, py_unwind),
            (E.PY_YIELD, py_yield),
            (E.CALL, call),
            (E.C_RETURN, c_return),
            (E.C_RAISE, c_raise),
        ):
            self.register(event, callback)
        self.switch_on(E.PY_START)
        self.guard_tool()

    def register(self, event, callback):
        self.callbacks[event] = callback
        self.api["register_callback"](self.tool, event, callback)

    def switch_on(self, mask):
        self.mask = mask
        self.api["set_events"](self.tool, mask)
        # As sys.monitoring reports it back (C_RETURN and C_RAISE come with CALL).
        self.reported_mask = sys.monitoring.get_events(self.tool)

    def check_at_exit(self, current_profile):
        """A last look at our tool id (see check_tool)."""
        self.check_tool("at exit")

    def silencer(self):
        """Stops recording, for atexit and os._exit (see ProfileEngine).

        A method, not a partial object as for setprofile: the tool id may
        change (see move), and this file's frames are hidden in the trace.
        """
        return self.silence

    def silence(self):
        if not self.stopped:
            self.api["set_events"](self.tool, 0)

    def stop(self):
        if self.stopped:
            return
        self.stopped = True
        self.release(self.tool)

    def release(self, tool):
        """Switch off and forget everything of ours on `tool`."""
        api = self.api
        api["set_events"](tool, 0)
        for event in self.callbacks:
            api["register_callback"](tool, event, None)
        api["free_tool_id"](tool)

    # The guard on the tool id --------------------------------------------------

    def guard_tool(self):
        """Watch the program's use of sys.monitoring for our tool id.

        A program (or a library) that claims our id with use_tool_id gets it,
        as it would without us: recording moves to another free id first, and
        goes on. One that switches our events or callbacks without claiming
        the id is let through, and the trace and the terminal say so.
        """
        engine = self
        monitoring = sys.monitoring
        api = self.api

        def use_tool_id(tool_id, name):
            if tool_id == engine.tool and not engine.stopped:
                engine.move(name, _place(sys._getframe(1)))
            return api["use_tool_id"](tool_id, name)

        functools.update_wrapper(use_tool_id, api["use_tool_id"])
        monitoring.use_tool_id = use_tool_id
        # The other functions are not wrapped: a wrapper is Python code that
        # the program's own tools would see run. Their effect on our tool is
        # checked instead, at each flush and at exit (check_tool).
        self.recorder.on_flush = self.check_tool

    def check_tool(self, when="while recording"):
        """Say so, once, if our tool id's owner or events were changed under us."""
        if self.stopped or self.meddled:
            return
        monitoring = sys.monitoring
        if (
            monitoring.get_tool(self.tool) == "panopticon"
            and monitoring.get_events(self.tool) == self.reported_mask
        ):
            return
        self.meddled = True
        self.report(
            "sys.monitoring tool %d changed" % self.tool,
            "the program changed sys.monitoring tool %d, which Panopticon records with, without "
            "claiming it (noticed %%s): the trace may lack events from then on" % self.tool,
            when,
        )

    def move(self, claimant, where):
        """Hand our tool id to the program: record on another free one."""
        old = self.tool
        free = [t for t in (4, 3, 5, 1, 0, 2) if t != old and self.api["get_tool"](t) is None]
        if not free:
            self.report(
                "recording stopped: sys.monitoring tool %d claimed" % old,
                "the program claimed sys.monitoring tool %d (as %r) at %%s, and no other tool id "
                "is free: recording stopped there" % (old, claimant),
                where,
                stop=True,
            )
            self.release(old)
            self.stopped = True
            return
        new = free[0]
        api = self.api
        # Off first: two tools on at once would record every event twice.
        api["set_events"](old, 0)
        api["use_tool_id"](new, "panopticon")
        for event, callback in self.callbacks.items():
            api["register_callback"](new, event, callback)
        api["set_events"](new, self.mask)
        self.tool = new
        self.release(old)
        self.report(
            "recording moved to sys.monitoring tool %d" % new,
            "the program claimed sys.monitoring tool %d (as %r) at %%s: recording goes on with "
            "tool %d" % (old, claimant, new),
            where,
        )

    def report(self, name, warning, where, stop=False):
        """Mark the moment on the calling thread's track, and warn once."""
        _warn_once(name.split(":")[0], warning % where)
        ident = _ident()
        mark = _Mark(("panopticon", name, {"by": where}))
        self.recorder.events.append((8, ident, _now(), 0, mark))
        if stop:
            self.recorder.events.append((12, ident, _now(), 0, 0))


# --- switching the profile function, and the guard on it ----------------------

# C callables called through functools.partial: a profiler reports a call
# of a builtin (`c_call`), but not of a partial object, so these switch and
# read the profile function, and take times and idents, without an event.
_set_profile = functools.partial(sys.setprofile)
_get_profile = functools.partial(sys.getprofile)
_now = functools.partial(perf_counter_ns)
_ident = functools.partial(threading.get_ident)
_frame_of_caller = functools.partial(sys._getframe, 1)


class _Guard:
    """Watches for the program (or a library) replacing our profile function.

    An audit hook sees every `sys.setprofile`, including cProfile's before
    3.12. When it is not our own, and it replaces the function that records
    the calling thread, the trace gets a `profiler replaced` instant with the
    culprit's place, and recording of that thread stops there (op 12); the
    terminal is warned once. Python offers no hook *after* the change, so
    recording does not resume when the other tool lets go.
    """

    def __init__(self):
        self.engine = None
        self.local = threading.local()
        self.warned = False
        self.installed = False

    def stand_down(self):
        """Our own switching off at exit is not the program's doing."""
        self.engine = None

    def watch(self, engine):
        self.engine = engine
        if not self.installed and hasattr(sys, "addaudithook"):
            self.installed = True
            sys.addaudithook(self.audit)

    def audit(self, event, args):
        if event != "sys.setprofile" or getattr(self.local, "switching", False):
            return
        engine = self.engine
        if engine is None or engine.recorder.closed:
            return
        ident = _ident()
        ours = engine.profiles.get(ident)
        if ours is None or _get_profile() is not ours:
            return
        try:
            where = _place(_frame_of_caller())
        except Exception:
            # No room left on the stack (Python removes a profile function
            # that raised, as at the recursion limit), or no Python caller.
            where = None
        if not self.warned and where is not None:
            self.warned = _warn(
                "the program replaced the profile function at %s: recording of thread %s "
                "stopped there (the trace marks the moment)"
                % (where, threading.current_thread().name)
            )
        args = {"by": where} if where is not None else {"by": "Python (an error in the profile function)"}
        mark = _Mark(("panopticon", "recording stopped: profile function replaced", args))
        # The last events of this thread: nothing may be recorded after the
        # stop, so the stop comes last and no call follows it here.
        _session_state.recording.discard(ident)
        engine.recorder.events += ((8, ident, _now(), 0, mark), (12, ident, _now(), 0, 0))


_guard = _Guard()


def _place(frame):
    """`file:line (function)` of a frame, for the trace and the terminal."""
    return "%s:%d (%s)" % (frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name)


def _switch_profile(profile, stop=None):
    """Install `profile` on the calling thread, as ourselves (the guard stays quiet).

    Switching recording on or off must be the last thing a thread does
    before or after it: the frames around it then record no call that has
    no end. With `stop`, the thread's ident, its `stop` event is sent just
    before recording ends: after this frame's own call, which it closes.
    """
    local = _guard.local
    local.switching = True
    try:
        if stop is not None:
            _session_state.events += ((12, stop, _now(), 0, 0),)
        _set_profile(profile)
    finally:
        local.switching = False


# --- the in-program API: trace(), traced, instant(), counter(), span() --------------


class _SessionState:
    """What the API needs of the recording in progress.

    Under the CLI it is the run's own recording: with `--manual`, threads
    record only inside `trace()` blocks and `traced` calls; otherwise all
    the time, and those only add their marks. In a plain `python` process,
    the first `trace()` or `traced` call opens a recording of its own
    (_open_in_process) that ends with the outermost `trace()` block, or at
    exit when a `traced` function opened it.
    """

    def __init__(self):
        self.recorder = None
        self.engine = None
        self.events = None  # the recorder's event list
        self.manual = False
        self.in_process = None  # the _InProcess output of a plain-python recording
        self.depth = {}  # ident -> nesting of trace()/traced on that thread
        self.recording = set()  # idents recording now (manual mode)
        self.blocks = 0  # trace() blocks and traced calls open, all threads
        self.lock = threading.RLock()

    def attach(self, recorder, engine, manual, in_process=None):
        self.recorder = recorder
        self.engine = engine
        self.events = recorder.events
        self.manual = manual
        self.in_process = in_process
        self.depth = {}
        self.recording = set()
        self.blocks = 0

    def detach(self):
        self.recorder = self.engine = self.events = self.in_process = None
        self.recording = set()

    def active(self, ident):
        """Whether marks of thread `ident` are recorded now."""
        return self.events is not None and (not self.manual or ident in self.recording)


_session_state = _SessionState()


def _enter(path, opener, default_path="panopticon.json"):
    """Start (or nest) recording of the calling thread; False if it cannot.

    `path` is where the caller asked the trace to go, if it did; a recording
    that this call opens goes there, or to `default_path`.
    """
    state = _session_state
    ident = _ident()
    state.lock.acquire()
    try:
        if state.recorder is not None and state.recorder.closed and state.in_process is None:
            return False  # the command's recording has ended: the program is exiting
        if state.recorder is None or state.recorder.closed:
            _open_in_process(path or default_path, opener)
        elif path is not None and state.in_process is not None and path != state.in_process.path:
            _warn_once(
                "nested",
                "%s asked for %s while the trace to %s is being recorded: it is recorded there"
                % (opener, path, state.in_process.path),
            )
        state.blocks += 1
        depth = state.depth.get(ident, 0)
        state.depth[ident] = depth + 1
        start = not depth and state.manual
        if start:
            state.recording.add(ident)
    finally:
        state.lock.release()
    if start:
        state.engine.record_thread(ident)  # the last thing: see _switch_profile
    return True


def _leave():
    """Undo one _enter(): the outermost stops recording of the thread."""
    state = _session_state
    ident = _ident()
    state.lock.acquire()
    try:
        state.blocks -= 1
        depth = state.depth.get(ident, 1) - 1
        if depth:
            state.depth[ident] = depth
        else:
            state.depth.pop(ident, None)
        stop = not depth and state.manual and ident in state.recording
        if stop:
            state.recording.discard(ident)
        close = (
            state.blocks == 0 and state.in_process is not None and state.in_process.ends_with_blocks
        )
    finally:
        state.lock.release()
    if stop:
        _switch_profile(None, stop=ident)
    if close:
        _close_in_process()


_warned_once = set()


def _warn_once(key, message):
    if key not in _warned_once:
        _warned_once.add(key)
        _warn(message)


class trace(object):
    """Record the calling thread while the block runs: `with panopticon.trace("out.json"):`.

    Under the `panopticon` command the trace goes where the command writes
    it, and `path` is not used; with `--manual`, only such blocks (and
    `traced` calls) are recorded. In a plain `python` process the block
    records into `path` (default `panopticon.json`), written when the
    outermost block ends. Blocks nest; other threads are recorded while
    they are inside blocks of their own. An exception leaving the block is
    marked on the timeline and goes on unchanged.
    """

    def __init__(self, path=None):
        self.path = path
        self.entered = False

    def __enter__(self):
        self.entered = _enter(self.path, "trace()")
        return self

    def __exit__(self, kind, exception, traceback):
        if self.entered:
            self.entered = False
            if exception is not None:
                instant("exception", exception=exception)
            _leave()
        return False


def traced(target=None):
    """Record every call of a function: `@panopticon.traced` or `@panopticon.traced("out.json")`.

    For a generator, coroutine or async generator function, every
    resumption of each of its frames is recorded, and nothing between them.
    In a plain `python` process the trace is written to `target` (default
    `<function>.json`) when the process exits.
    """
    if callable(target):
        return _traced(target, None)
    return functools.partial(_traced, path=target)


def _traced(function, path):
    default_path = "%s.json" % getattr(function, "__name__", "traced")
    flags = getattr(getattr(function, "__code__", None), "co_flags", 0)
    if flags & CO_ASYNC_GENERATOR:

        def wrapper(*args, **kwargs):
            return _TracedAsyncGenerator(function(*args, **kwargs), path, default_path)

    elif flags & (CO_COROUTINE | CO_ITERABLE_COROUTINE):

        async def wrapper(*args, **kwargs):
            return await _TracedSteps(function(*args, **kwargs), path, default_path)

    elif flags & CO_GENERATOR:

        def wrapper(*args, **kwargs):
            return _TracedSteps(function(*args, **kwargs), path, default_path)

    else:

        def wrapper(*args, **kwargs):
            entered = _enter(path, "traced", default_path)
            try:
                return function(*args, **kwargs)
            finally:
                if entered:
                    _leave()

    return functools.wraps(function)(wrapper)


class _TracedSteps(object):
    """A generator or awaitable whose every step is recorded.

    Each `send`, `throw` and `close` of the inner object runs between an
    _enter() and a _leave(). They are called through partial objects, so
    that the call itself is not reported as a C call when recording has just
    been switched on.
    """

    __slots__ = ("path", "default_path", "_send", "_throw", "_close")

    def __init__(self, inner, path, default_path):
        self.path = path
        self.default_path = default_path
        self._send = functools.partial(inner.send)
        self._throw = functools.partial(inner.throw)
        self._close = functools.partial(inner.close)

    def __iter__(self):
        return self

    __await__ = __iter__

    def __next__(self):
        return self.send(None)

    def send(self, value):
        entered = _enter(self.path, "traced", self.default_path)
        try:
            return self._send(value)
        finally:
            if entered:
                _leave()

    def throw(self, *exception):
        entered = _enter(self.path, "traced", self.default_path)
        try:
            return self._throw(*exception)
        finally:
            if entered:
                _leave()

    def close(self):
        entered = _enter(self.path, "traced", self.default_path)
        try:
            return self._close()
        finally:
            if entered:
                _leave()


class _TracedAsyncGenerator(object):
    """An async generator whose every step is recorded (see _TracedSteps)."""

    __slots__ = ("path", "default_path", "_inner")

    def __init__(self, inner, path, default_path):
        self.path = path
        self.default_path = default_path
        self._inner = inner

    def __aiter__(self):
        return self

    def __anext__(self):
        return _TracedSteps(self._inner.__anext__(), self.path, self.default_path)

    def asend(self, value):
        return _TracedSteps(self._inner.asend(value), self.path, self.default_path)

    def athrow(self, *exception):
        return _TracedSteps(self._inner.athrow(*exception), self.path, self.default_path)

    def aclose(self):
        return _TracedSteps(self._inner.aclose(), self.path, self.default_path)


def instant(name, **args):
    """Put a marker on the calling thread's timeline, with `args` to show in it."""
    state = _session_state
    ident = _ident()
    if state.active(ident):
        state.events += ((8, ident, _now(), 0, _Mark(("mark", name, args))),)


def counter(name, value=None, **values):
    """Set a counter track: `counter("queue depth", 3)`, or several series by keyword."""
    if value is not None:
        values["value"] = value
    for key in values:
        if type(values[key]) not in (int, float):
            raise TypeError("panopticon.counter() takes numbers, got %r for %r" % (values[key], key))
    state = _session_state
    ident = _ident()
    if state.active(ident):
        state.events += ((9, ident, _now(), 0, _Mark(("mark", name, values))),)


_span_numbers = itertools.count(1)


class span(object):
    """A slice of the program's own on its thread's timeline: `with panopticon.span("phase 2"):`."""

    __slots__ = ("name", "args", "number")

    def __init__(self, name, **args):
        self.name = name
        self.args = args
        self.number = 0

    def __enter__(self):
        state = _session_state
        ident = _ident()
        if state.active(ident):
            self.number = next(_span_numbers)
            state.events += ((10, ident, _now(), self.number, _Mark(("mark", self.name, self.args))),)
        return self

    def __exit__(self, kind, exception, traceback):
        state = _session_state
        ident = _ident()
        if self.number and state.active(ident):
            state.events += ((11, ident, _now(), self.number, 0),)
        self.number = 0
        return False


# --- recording in a plain python process -----------------------------------------------


class _InProcess(object):
    """Where a plain-python recording goes: the `panopticon convert` command
    found on PATH, reading the records on its standard input, or else an
    NDJSON file beside `path` and a word on how to convert it."""

    def __init__(self, path, ends_with_blocks):
        import shutil
        import subprocess

        self.path = path
        self.ends_with_blocks = ends_with_blocks
        self.process = None
        self.file = None
        base = path[:-5] if path.endswith(".json") else path
        self.ndjson = base + ".ndjson"
        executable = shutil.which("panopticon")
        if executable is not None:
            try:
                self.process = subprocess.Popen(
                    [executable, "convert", "-", "-o", path], stdin=subprocess.PIPE
                )
                self.file = self.process.stdin
            except OSError as error:
                _warn("cannot run %s (%s): writing the records to %s" % (executable, error, self.ndjson))
        if self.file is None:
            self.file = open(self.ndjson, "wb")

    def sendall(self, data):
        self.file.write(data)
        self.file.flush()

    def close(self):
        try:
            self.file.close()
        except OSError:
            pass
        if self.process is not None:
            status = self.process.wait()
            if status != 0:
                _warn("panopticon convert could not write %s (exit status %d)" % (self.path, status))
        else:
            _warn(
                "no panopticon command on PATH: the records are in %s; convert them with: "
                "panopticon convert %s -o %s" % (self.ndjson, self.ndjson, self.path)
            )


def _open_in_process(path, opener):
    """Open a recording of this process; True if it started."""
    state = _session_state
    ends_with_blocks = opener == "trace()"
    output = _InProcess(path or "panopticon.json", ends_with_blocks)
    recorder = Recorder(output, None, Filters(None))
    engine = ProfileEngine(recorder)
    recorder.engine = engine.name
    recorder.write(_hello_line(engine, None))
    state.attach(recorder, engine, True, output)
    _guard.watch(engine)
    if not ends_with_blocks:
        atexit.register(_close_in_process)
    _watch_forks(_forget_in_child)
    return True


def _close_in_process():
    state = _session_state
    with state.lock:
        output = state.in_process
        recorder = state.recorder
        if output is None or recorder is None or recorder.closed:
            return
        state.detach()
        recorder.finish("exit")  # which closes `output`


def _forget_in_child():
    # A forked child must not write into its parent's recording, nor keep
    # the converter's pipe open: the converter would wait for the child.
    # The descriptor is pointed at /dev/null rather than closed, so that the
    # file object stays valid; nothing is buffered in it (each write flushes).
    state = _session_state
    if state.in_process is not None and state.recorder is not None:
        state.recorder.closed = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, state.in_process.file.fileno())
            os.close(devnull)
        except (OSError, ValueError):
            pass
        state.detach()
        try:
            _set_profile(None)
        except Exception:
            pass


def _mark_fork():
    """In the parent, after a fork: the trace says the child is not traced."""
    state = _session_state
    ident = _ident()
    if state.active(ident) and not state.recorder.closed:
        mark = _Mark(("panopticon", "fork: the child process is not traced", {}))
        state.events.append((8, ident, _now(), 0, mark))


_fork_hooks = []


def _watch_forks(forget_in_child):
    """Once per process: a mark in the parent, and `forget_in_child` in the child."""
    if hasattr(os, "register_at_fork") and not _fork_hooks:
        _fork_hooks.append(forget_in_child)
        os.register_at_fork(
            after_in_parent=_mark_fork, after_in_child=lambda: _fork_hooks[0]()
        )
    elif _fork_hooks:
        _fork_hooks[0] = forget_in_child


def _hello_line(engine, secret):
    hello = {
        "kind": "hello",
        "protocol": PROTOCOL_VERSION,
        "pid": os.getpid(),
        "python": "%d.%d.%d" % sys.version_info[:3],
        "engine": engine.name,
        "t0": perf_counter_ns(),
        "main_thread": threading.main_thread().ident,
        "argv": [str(a) for a in sys.argv],
    }
    if secret:
        hello["secret"] = secret
    return json.dumps(hello, separators=(",", ":")).encode() + b"\n"



# --- start-up -------------------------------------------------------------------


def _take_environment():
    """Read our settings and remove every trace of ourselves from the process."""
    env = os.environ
    settings = {
        "channel": env.pop("PANOPTICON_CHANNEL", None),
        "secret": env.pop("PANOPTICON_SECRET", None),
        "engine": env.pop("PANOPTICON_ENGINE", "auto"),
        "filters": env.pop("PANOPTICON_FILTERS", None),
        "manual": env.pop("PANOPTICON_MANUAL", "") == "1",
    }
    env.pop("PANOPTICON_DEBUG", None)
    own_dir = os.path.dirname(os.path.abspath(OWN_FILE))
    if "PANOPTICON_PYTHONPATH" in env:
        env["PYTHONPATH"] = env.pop("PANOPTICON_PYTHONPATH")
    else:
        env.pop("PYTHONPATH", None)
    sys.path[:] = [p for p in sys.path if not p or os.path.abspath(p) != own_dir]
    return settings


def _chain_to_user_sitecustomize():
    """Run the sitecustomize this one displaced, as site.py would have."""
    this = sys.modules.get("sitecustomize")
    del sys.modules["sitecustomize"]
    try:
        import sitecustomize  # noqa: F401  (the user's own, if any)
    except ImportError as error:
        if error.name != "sitecustomize":
            _report_sitecustomize_error()
    except Exception:
        _report_sitecustomize_error()
    if "sitecustomize" not in sys.modules:
        sys.modules["sitecustomize"] = this


def _report_sitecustomize_error():
    # The words site.py itself prints for a failing sitecustomize.
    if sys.flags.verbose:
        sys.excepthook(*sys.exc_info())
    else:
        exc = sys.exc_info()[1]
        sys.stderr.write(
            "Error in sitecustomize; set PYTHONVERBOSE for traceback:\n%s: %s\n"
            % (type(exc).__name__, exc)
        )


def _connect(path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    return sock


def _choose_engine(requested, recorder, manual):
    if manual:
        # Recording is switched on and off per thread: sys.monitoring's
        # events are process-wide, a profile function is per thread.
        return ProfileEngine(recorder)
    if requested in ("auto", "monitoring"):
        tool = MonitoringEngine.available()
        if tool is not None:
            return MonitoringEngine(recorder, tool)
        if requested == "monitoring":
            if sys.version_info < (3, 12):
                _warn("the monitoring engine needs Python 3.12 or newer: using setprofile")
            else:
                _warn("the sys.monitoring tool ids 3 and 4 are taken: using setprofile")
    return ProfileEngine(recorder)


def _start():
    settings = _take_environment()
    _chain_to_user_sitecustomize()
    if not settings["channel"]:
        return
    try:
        sock = _connect(settings["channel"])
    except OSError as error:
        _warn("cannot connect to the converter (%s): the program runs untraced" % error)
        return
    try:
        filters = Filters(json.loads(settings["filters"]) if settings["filters"] else None)
    except ValueError as error:
        _warn("ignoring the filters (%s): recording everything" % error)
        filters = Filters(None)
    manual = settings["manual"]
    recorder = Recorder(sock, None, filters)
    engine = _choose_engine(settings["engine"], recorder, manual)
    recorder.engine = engine.name
    main_ident = threading.get_ident()
    recorder.write(_hello_line(engine, settings["secret"]))
    if not manual:
        recorder.announce_thread(main_ident, threading.current_thread().name)
    # `import panopticon` in the program gets this module, recording as it is.
    sys.modules["panopticon"] = sys.modules[__name__]
    _session_state.attach(recorder, engine, manual)
    recorder.on_close = engine.stop
    if engine.name == "setprofile":
        _guard.watch(engine)

    def finish(reason="exit"):
        # Registered first, so atexit runs it last: after the program's own
        # exit handlers and after non-daemon threads were joined.
        if recorder.closed:
            return
        try:
            engine.stop()
            recorder.finish(reason)
        except Exception as error:
            _warn("could not finish the trace: %s" % error)

    silence = engine.silencer()
    real_exit = os._exit

    def exit_now(*args, **kwargs):
        # os._exit skips atexit: send what was recorded first. `silence` is a
        # functools.partial, whose call records no event, unlike a call of
        # sys.setprofile or sys.monitoring.set_events from here would. A call
        # that os._exit may refuse goes straight to it, for its own error. The
        # test calls no function that recording would see (no len(), no
        # isinstance()): its events would land in the program's trace.
        if not recorder.closed and args and not args[1:] and not kwargs and type(args[0]) in (int, bool):
            _guard.engine = None
            silence()
            finish("os._exit")
        real_exit(*args, **kwargs)

    functools.update_wrapper(exit_now, real_exit)
    os._exit = exit_now

    def forget_in_child():
        # A forked child must not write into the parent's stream, nor keep
        # the converter waiting for the stream to close after the parent ends.
        recorder.closed = True
        atexit.unregister(finish)
        atexit.unregister(silence)
        atexit.unregister(engine.check_at_exit)
        try:
            engine.stop()
            recorder.sock.close()
        except Exception:
            pass

    atexit.register(finish)
    # atexit runs its handlers last-in first-out: this one stops recording,
    # from C, just before `finish`; the check runs before both.
    atexit.register(silence)
    atexit.register(_guard.stand_down)
    atexit.register(engine.check_at_exit, functools.partial(sys.getprofile))
    _watch_forks(forget_in_child)
    engine.start(main_ident, manual)
    _debug("recording with the %s engine%s" % (engine.name, " (manual)" if manual else ""))


# Under the `panopticon` command this file is the interpreter's
# `sitecustomize`; imported as `panopticon` (the file `panopticon
# python-module` writes), it only offers the API.
if __name__ == "sitecustomize":
    _start()
