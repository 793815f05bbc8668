"""Panopticon's collector glue, its Python collector, and the module `panopticon`.

Two roles, one file (standard library only; Python 3.8 to 3.13):

- Under the `panopticon` command, this file is written into a private
  directory as `sitecustomize.py`, first on PYTHONPATH, so the interpreter
  loads it at start-up and then runs the user's program itself: `sys.argv`,
  `sys.path[0]`, `__main__`, tracebacks and the exit status stay Python's
  own. At import time it removes every trace of itself (its `sys.path` entry,
  its environment variables), chains to the user's own `sitecustomize`,
  and starts recording: with the native collector (the C module the command
  built for this interpreter, native/panopticon_native.c) where it was
  given one, else with the Python collector below. Recording of the main
  thread starts at the program's `<module>` frame (or, with `--manual`, in
  the program's `trace()` blocks). `import panopticon` then gets this module.
- Written out by `panopticon python-module`, it is the importable module
  `panopticon` for a plain `python` process: `trace()`, `traced`,
  `instant()`, `counter()` and `span()` (docs/python-api.md). Nothing starts
  at import.

The program must find `sys.modules` as `python` leaves it, plus `panopticon`:
so at import this file uses only modules the interpreter has loaded before
any `sitecustomize` (sys, os, _thread, marshal, time, _signal, _imp), and
anything else (`_socket` for the Python collector, `atexit`) is imported
where it is needed and taken out of `sys.modules` again where Python allows
(see _import_quietly).

Events go out as the records of docs/protocol.md. The Python collector's
per-event callbacks do as little as possible: one tuple appended to a shared
list. Code objects and C functions are named once, when first seen, and
referred to by small integers after that.
"""

import _signal
import _thread
import marshal
import os
import sys
import time as _time
from time import perf_counter_ns

__all__ = ["trace", "traced", "instant", "counter", "span"]

# The builtins this file's functions see: a copy taken before the program
# runs. A program that replaces one (test_functools makes `builtins.len` an
# lru_cache, which cannot hash a dict) must not have its function called
# inside a callback of ours, on our arguments. (Functions take their
# builtins from their globals: from the frame's since 3.10, from the
# globals at each frame's creation before.)
__builtins__ = dict(vars(sys.modules["builtins"]))

PROTOCOL_VERSION = 4

# Event op codes (docs/protocol.md): 0 call, 1 resume, 2 return, 3 unwind,
# 4 suspend, 5 c_call, 6 c_return, 7 c_raise; the marks of the in-program
# API: 8 instant, 9 counter, 10 span begin, 11 span end, 12 stop (recording
# stops on the thread). The callbacks write them as literals, since a global
# lookup per event is measurable.


def _asynchronous_signals():
    """The signals held back while a record is sent (see Recorder.write)."""
    if not hasattr(_signal, "pthread_sigmask"):
        return frozenset()
    names = (
        "SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM",
        "SIGCHLD", "SIGWINCH", "SIGPIPE", "SIGVTALRM", "SIGPROF", "SIGIO", "SIGURG",
    )
    return frozenset(getattr(_signal, name) for name in names if hasattr(_signal, name))


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
# and methods implemented in C (types.BuiltinFunctionType and
# types.MethodDescriptorType, without importing `types`). sys.monitoring's
# CALL event fires for every callable, so the monitoring engine filters on
# the same types.
C_FUNCTION_TYPES = (type(len), type(str.join))
_MethodType = type(_asynchronous_signals.__get__(0))


async def _coroutine_probe():
    pass


def _coroutine_type():
    probe = _coroutine_probe()
    probe.close()  # never started: no "never awaited" warning
    return type(probe)


_CoroutineType = _coroutine_type()

OWN_FILE = __file__
DEBUG = bool(os.environ.get("PANOPTICON_DEBUG"))

# Identities without `id()`, which raises an audit event (`builtins.id`) that
# the program's own audit hooks would see on every call: object's own hash
# is the address, shifted, and audits nothing.
_identity = object.__hash__

# C callables that are not builtin functions: a profiler reports a call of a
# builtin (`c_call`), but not of a method-wrapper, so these switch and read
# the profile function, and take times, without an event.
_set_profile = sys.setprofile.__call__
_set_trace = sys.settrace.__call__
_get_profile = sys.getprofile.__call__
_now = perf_counter_ns.__call__
_ident = _thread.get_ident.__call__
_frame_of_caller = sys._getframe.__call__


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


def _import_quietly(name):
    """Import module `name` for ourselves, leaving `sys.modules` as it was.

    The program then imports its own copy when it wants one, and sees that
    import (in its trace too). Not for `atexit` before 3.10: there Python
    runs only the at-exit functions of the last `atexit` module imported, so
    ours must stay the one in `sys.modules` (see _at_exit).
    """
    present = name in sys.modules
    module = __import__(name)
    if not present:
        del sys.modules[name]
    return module


def _at_exit(function):
    """Register `function` to run at exit, after the program's own at-exit functions."""
    if sys.version_info >= (3, 10):
        # The at-exit functions belong to the interpreter: any module object works.
        atexit = _import_quietly("atexit")
    else:
        import atexit

        _keep_at_exit(atexit, function)
    atexit.register(function)
    return atexit


def _keep_at_exit(atexit, function):
    """Keep `function` registered, to run last, whatever the program does with `atexit`.

    Before 3.10 the program's `atexit` is this module object, and its
    `_clear()` and `_run_exitfuncs()` (test_atexit calls both in its own
    process; 3.10+ runs those tests in a child) would clear our function too:
    the trace would end without its `end` record. Wrapped, `_clear()` leaves
    it registered (first, so it still runs last), and `_run_exitfuncs()`
    runs and clears the program's functions only.
    """
    real_clear = atexit._clear
    real_run = atexit._run_exitfuncs

    def _clear():
        real_clear()
        atexit.register(function)

    def _run_exitfuncs():
        atexit.unregister(function)
        try:
            return real_run()
        finally:
            # The program's functions are cleared; ours, registered again,
            # is the only one and runs last.
            atexit.register(function)

    for wrapper, real in ((_clear, real_clear), (_run_exitfuncs, real_run)):
        for attribute in ("__name__", "__qualname__", "__doc__", "__module__"):
            setattr(wrapper, attribute, getattr(real, attribute, None))
        wrapper.__wrapped__ = real
    atexit._clear = _clear
    atexit._run_exitfuncs = _run_exitfuncs


# --- JSON, without the json package ---------------------------------------------------

_JSON_ESCAPES = {i: "\\u%04x" % i for i in range(32)}
_JSON_ESCAPES.update({ord('"'): '\\"', ord("\\"): "\\\\", ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})


def _json_string(text):
    text = text.translate(_JSON_ESCAPES)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates (from undecodable bytes in a file name) become
        # U+FFFD, as in the native collector.
        text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return '"%s"' % text


def _json(value):
    """JSON text of None, bool, int, float, str, list, tuple and dict (str keys)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    kind = type(value)
    if kind is str:
        return _json_string(value)
    if kind is int:
        return str(value)
    if kind is float:
        return repr(value) if value == value and value not in (float("inf"), float("-inf")) else '"%r"' % value
    if kind is dict:
        return "{%s}" % ",".join("%s:%s" % (_json_string(k), _json(v)) for k, v in value.items())
    if kind in (list, tuple):
        return "[%s]" % ",".join(_json(v) for v in value)
    raise TypeError("not JSON: %r" % kind)


def _json_line(record):
    return (_json(record) + "\n").encode("utf-8")


# --- glob patterns, as fnmatch.fnmatchcase reads them ----------------------------------


def _glob_set(pattern, i, char):
    """Match `char` against the set at pattern[i] ("["); (matched, index of "]") or None."""
    j = i + 1
    negate = j < len(pattern) and pattern[j] == "!"
    if negate:
        j += 1
    first = j
    found = False
    while j < len(pattern) and (pattern[j] != "]" or j == first):
        if j + 2 < len(pattern) and pattern[j + 1] == "-" and pattern[j + 2] != "]":
            if pattern[j] <= char <= pattern[j + 2]:
                found = True
            j += 3
        else:
            if pattern[j] == char:
                found = True
            j += 1
    if j >= len(pattern):
        return None  # no closing "]": the "[" is a literal
    return found != negate, j


def _glob_match(pattern, text):
    """fnmatch.fnmatchcase without `re` (the native module has the same matcher in C).

    `*` any run of characters, `/` included; `?` one character; `[...]` a
    set, `[!...]` its complement, `a-z` a range, a `]` first is literal and
    an unclosed `[` is a literal `[`.
    """
    p = s = 0
    star = -1
    mark = 0
    while s < len(text):
        if p < len(pattern) and pattern[p] == "*":
            star = p
            p += 1
            mark = s
            continue
        if p < len(pattern):
            c = pattern[p]
            end = p
            if c == "?":
                ok = True
            elif c == "[" and _glob_set(pattern, p, text[s]) is not None:
                ok, end = _glob_set(pattern, p, text[s])
            else:
                ok = c == text[s]
            if ok:
                p = end + 1
                s += 1
                continue
        if star < 0:
            return False
        p = star + 1
        mark += 1
        s = mark
    while p < len(pattern) and pattern[p] == "*":
        p += 1
    return p == len(pattern)


# --- where a frame is suspended rather than finished -------------------------

# The opcodes the offsets below need, per version (tests/collector_test.ts
# checks them against `dis.opmap`, which this file does not import).
_YIELD_VALUE, _YIELD_FROM, _RESUME = {
    (3, 8): (86, 72, None),
    (3, 9): (86, 72, None),
    (3, 10): (86, 72, None),
    (3, 11): (86, None, 151),
    (3, 12): (150, None, 151),
}.get(sys.version_info[:2], (118, None, 149))  # 3.13


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


_FunctionType = type(_unwrap_method)


def _function_code(candidate):
    # Only real functions: an attribute of anything else could run its code.
    return candidate.__code__ if type(candidate) is _FunctionType else None


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
    if _function_code(obj) is code:
        return obj.__qualname__
    for value in list(g.values()):
        if not isinstance(value, type):
            continue
        for attr in list(vars(value).values()):
            if isinstance(attr, property):
                candidates = (attr.fget, attr.fset, attr.fdel)
            else:
                candidates = (_unwrap_method(attr),)
            for candidate in candidates:
                if _function_code(candidate) is code:
                    return candidate.__qualname__
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
    except RecursionError:
        raise
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
        resource = _import_quietly("resource")
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux counts KiB


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
    """The standard library's directories: where `os` came from, as given and resolved."""
    library = os.path.dirname(os.__file__)
    return tuple({os.path.join(library, ""), os.path.join(os.path.realpath(library), "")})


def _parse_filters(text):
    """PANOPTICON_FILTERS (see src/runner.ts): one setting a line.

    `include KIND:GLOB`, `exclude KIND:GLOB` (KIND is module, file or
    function), `exclude-stdlib`, `no-c-calls`.
    """
    spec = {"include": [], "exclude": [], "exclude_stdlib": False, "c_calls": True}
    for line in (text or "").splitlines():
        word, _, rest = line.partition(" ")
        if word in ("include", "exclude"):
            kind, _, glob = rest.partition(":")
            if kind not in ("module", "file", "function") or not glob:
                raise ValueError("bad filter pattern %r" % rest)
            spec[word].append((kind, glob))
        elif word == "exclude-stdlib":
            spec["exclude_stdlib"] = True
        elif word == "no-c-calls":
            spec["c_calls"] = False
        elif word:
            raise ValueError("unknown filter setting %r" % line)
    return spec


class Filters:
    """Which code is recorded: decided once per code object."""

    def __init__(self, spec=None):
        spec = spec or {}
        self.include = list(spec.get("include") or [])
        self.exclude = list(spec.get("exclude") or [])
        self.stdlib = _stdlib_dirs() if spec.get("exclude_stdlib") else None
        self.c_calls = spec.get("c_calls", True) is not False
        # Whether any code can be excluded (this file always is, and needs no
        # per-event check: its code never runs while recording is on).
        self.active = bool(self.include or self.exclude or self.stdlib)

    @staticmethod
    def _matches(patterns, module, qualname, filename):
        for kind, glob in patterns:
            value = module if kind == "module" else filename if kind == "file" else qualname
            if _glob_match(glob, value):
                return True
        return False

    def _is_stdlib(self, filename):
        if filename.startswith("<frozen"):
            return True  # the import machinery
        if "site-packages" in filename or "dist-packages" in filename:
            return False
        return filename.startswith(self.stdlib)

    def allows(self, module, qualname, filename, frame=None):
        if self.stdlib is not None and self._is_stdlib(filename):
            return False
        if self.stdlib is not None and filename.startswith("<") and frame is not None:
            # Code that is not from a file (`<string>`: what exec, eval and
            # namedtuple make) belongs to the code that runs it first.
            back = frame.f_back
            if back is not None and self._is_stdlib(back.f_code.co_filename):
                return False
        if self.include and not self._matches(self.include, module, qualname, filename):
            return False
        return not self._matches(self.exclude, module, qualname, filename)


# --- exceptions and values (docs/protocol.md, "Exceptions and values") ---------------


def _parse_details(text):
    """PANOPTICON_DETAILS (see src/runner.ts): one setting a line.

    `exceptions on` or `exceptions off`, `repr`, and `args KIND:GLOB`,
    `returns KIND:GLOB` or `lines KIND:GLOB` (--args, --returns, --lines:
    the patterns of --include). Exceptions left unsaid are decided by the
    engine.
    """
    spec = {"exceptions": None, "repr": False, "args": [], "returns": [], "lines": []}
    for line in (text or "").splitlines():
        word, _, rest = line.partition(" ")
        if word == "exceptions" and rest in ("on", "off"):
            spec["exceptions"] = rest == "on"
        elif word == "repr":
            spec["repr"] = True
        elif word in ("args", "returns", "lines"):
            kind, _, glob = rest.partition(":")
            if kind not in ("module", "file", "function") or not glob:
                raise ValueError("bad %s pattern %r" % (word, rest))
            spec[word].append((kind, glob))
        elif word:
            raise ValueError("unknown detail setting %r" % line)
    return spec


# How iteration ends, not errors: never recorded.
_ITERATION_EXCEPTIONS = (StopIteration, StopAsyncIteration, GeneratorExit)
# BaseException's own accessors, called as descriptors: a subclass's
# properties or __getattribute__ (program code) are never run.
_traceback_of = BaseException.__traceback__.__get__
_context_of = BaseException.__context__.__get__
_cause_of = BaseException.__cause__.__get__
_exception_args = BaseException.args.__get__
_object_repr = object.__repr__
_type_dict = type.__dict__["__dict__"].__get__
_type_qualname = type.__dict__["__qualname__"].__get__

VALUE_TEXT_MAX = 200  # characters of a str, bytes of a bytes, shown
VALUE_ITEMS_MAX = 8  # items of a container shown
VALUE_DEPTH_MAX = 2  # containers within containers shown


def _type_name(cls):
    """`ValueError`, `json.decoder.JSONDecodeError`: read from the type's own dict."""
    try:
        module = _type_dict(cls).get("__module__")
        name = _type_qualname(cls)
    except Exception:
        return "?"
    if type(module) is str and module != "builtins":
        return "%s.%s" % (module, name)
    return name


def _short_repr(value):
    if len(value) <= VALUE_TEXT_MAX:
        return repr(value)
    what = "characters" if type(value) is str else "bytes"
    return "%r... (%d %s)" % (value[:VALUE_TEXT_MAX], len(value), what)


def _own_repr(value):
    """--repr: the object's own repr(), guarded and bounded."""
    try:
        text = repr(value)
        if type(text) is not str:
            return _object_repr(value)
    except Exception as error:
        message = _exception_args(error)
        detail = ": %s" % message[0] if len(message) == 1 and type(message[0]) is str else ""
        return "<repr failed: %s%s>" % (_type_name(type(error)), detail)
    except KeyboardInterrupt:
        # Ctrl-C in the middle of a repr is the program's: raised again at
        # the next point Python checks for signals.
        _thread.interrupt_main()
        return "<repr failed: KeyboardInterrupt>"
    if len(text) > VALUE_TEXT_MAX:
        return "%s... (%d characters)" % (text[:VALUE_TEXT_MAX], len(text))
    return text


def _items_text(items, count, depth, open_, close, own_repr, pairs=False):
    if depth >= VALUE_DEPTH_MAX and count:
        return "%s... %d items%s" % (open_, count, close)
    shown = []
    for item in items:
        if len(shown) == VALUE_ITEMS_MAX:
            break
        if pairs:
            shown.append("%s: %s" % (_value_text(item[0], depth + 1, own_repr),
                                     _value_text(item[1], depth + 1, own_repr)))
        else:
            shown.append(_value_text(item, depth + 1, own_repr))
    text = ", ".join(shown)
    if count == 1 and open_ == "(":
        text += ","
    if count > len(shown):
        text += ", ... (%d items)" % count
    return open_ + text + close


def _value_text(value, depth=0, own_repr=False):
    """A value as text, as repr() would show it, without running the program's code.

    The same rules as the native collector's text_value: None, booleans,
    numbers, str and bytes (cut), tuples, lists, sets and dicts of exactly
    those types (to a depth and a length); anything else as
    `<Type object at 0x…>` (object.__repr__, which reads the type only),
    or with --repr by its own repr().
    """
    kind = type(value)
    if value is None or kind is bool or kind is float or kind is complex:
        return repr(value)
    if kind is int:
        bits = value.bit_length()
        return repr(value) if bits <= 640 else "<int of %d bits>" % bits
    if kind is str or kind is bytes:
        return _short_repr(value)
    if kind is tuple:
        return _items_text(value, len(value), depth, "(", ")", own_repr)
    if kind is list:
        return _items_text(value, len(value), depth, "[", "]", own_repr)
    if kind is dict:
        return _items_text(dict.items(value), len(value), depth, "{", "}", own_repr, pairs=True)
    if kind is set or kind is frozenset:
        if not value:
            return "set()" if kind is set else "frozenset()"
        if kind is set:
            return _items_text(value, len(value), depth, "{", "}", own_repr)
        return _items_text(value, len(value), depth, "frozenset({", "})", own_repr)
    if own_repr:
        return _own_repr(value)
    return _object_repr(value)


def _line_at(code, offset):
    """The line of the instruction at byte `offset`, or of the first after it
    that has one: a handler's first instructions (PUSH_EXC_INFO) have none,
    and f_lineno there gives the line before (3.12+)."""
    for start, end, line in code.co_lines():
        if end > offset and line is not None:
            return line
    return 0


def _exception_message(exception, own_repr):
    if own_repr:
        try:
            text = str(exception)
            if type(text) is str:
                return text[:VALUE_TEXT_MAX]
        except Exception:
            pass
    args = _exception_args(exception)
    if not args:
        return ""
    if len(args) > 1:
        return _value_text(args, 0, own_repr)
    only = args[0]
    if type(only) is str and len(only) <= VALUE_TEXT_MAX:
        return only
    return _value_text(only, 0, own_repr)


class Exceptions:
    """The Python collector's exceptions: the `raise` and `handled` events (ops 16, 17)."""

    def __init__(self, recorder, own_repr):
        self.recorder = recorder
        self.own_repr = own_repr
        self.count = 0

    def raised(self, serial, code, line, exception, tb=None):
        """An exception enters a recorded frame of `code`: its raise, if it starts there.

        `tb` is its traceback so far: before 3.12 an exception's
        __traceback__ is set only once it is caught, and the trace function
        is given the traceback apart.
        """
        if isinstance(exception, _ITERATION_EXCEPTIONS):
            return
        if tb is None:
            tb = _traceback_of(exception)
        after = tb.tb_next if tb is not None else None
        if after is not None and self.recorder.code_ids.get(_identity(after.tb_frame.f_code)):
            return  # it comes from a recorded frame, which recorded its raise
        ts = _now()
        context = _context_of(exception)
        if context is None:
            context = _cause_of(exception)
        self.count += 1
        self.recorder.define({
            "kind": "exception",
            "id": self.count,
            "type": _type_name(type(exception)),
            "message": _exception_message(exception, self.own_repr),
            "file": code.co_filename,
            "line": line or 0,
            "context": _identity(context) if context is not None else 0,
        })
        self.recorder.events.append((16, serial, ts, _identity(exception), self.count))

    def handled(self, serial, line, exception):
        if isinstance(exception, _ITERATION_EXCEPTIONS):
            return
        self.handled_key(serial, line, _identity(exception))

    def handled_key(self, serial, line, key):
        self.recorder.events.append((17, serial, _now(), key, line or 0))


def _make_exception_tracer(recorder, exceptions, serial):
    """--exceptions and --lines before 3.12 (the setprofile engine): sys.settrace for one thread.

    Each recorded frame gets the local trace function, with its line events
    off but in the code --lines selects; the frame an exception has just
    entered gets them on until its next line, which is where its handler
    starts if it handles it. Frames are compared by identity, never kept.
    `exceptions` is None with --lines alone.
    """
    code_number = recorder.code_ids.get
    register_code = recorder.register_code
    watch = [0, 0]  # the frame an exception entered, the exception's key
    lines = recorder.lines.selected if recorder.lines is not None else ()
    events = recorder.events
    now = _now

    def local(frame, event, arg):
        if event == "line":
            if watch[0] and watch[0] == _identity(frame):
                watch[0] = 0
                exceptions.handled_key(serial, frame.f_lineno, watch[1])
            if _identity(frame.f_code) in lines:
                events.append((19, serial, now(), 0, frame.f_lineno))
            else:
                frame.f_trace_lines = False
        elif exceptions is None:
            pass
        elif event == "exception":
            exception = arg[1]
            if isinstance(exception, _ITERATION_EXCEPTIONS):
                return local
            exceptions.raised(serial, frame.f_code, frame.f_lineno, exception, arg[2])
            watch[0] = _identity(frame)
            watch[1] = _identity(exception)
            frame.f_trace_lines = True
        elif event == "return" and watch[0] == _identity(frame):
            watch[0] = 0
        return local

    def tracer(frame, event, arg):
        code = frame.f_code
        number = code_number(_identity(code))
        if number is None:
            number = register_code(code, frame)
        if not number or code.co_filename == OWN_FILE:
            return None
        if _identity(code) in lines:
            frame.f_trace_lines = True
        elif exceptions is None:
            return None  # --lines alone: nothing to see in this frame
        else:
            frame.f_trace_lines = False
        return local

    return tracer, local


VALUES_ARGS = 1  # --args selects the code
VALUES_RETURNS = 2  # --returns selects it
# Before 3.13 frame.f_locals copies every local into a dict that the frame
# keeps (and a trace function's return writes back): arguments are read only
# where it is a view of the fast locals (PEP 667).
ARGS_READABLE = sys.version_info >= (3, 13)


def _argument_labels(code):
    """`(name, label)` of each parameter of `code`, in order: `*args` and
    `**kwargs` labelled with their stars."""
    flags = code.co_flags
    names = code.co_varnames
    count = code.co_argcount + code.co_kwonlyargcount
    labels = [(name, name) for name in names[:count]]
    if flags & 0x04:  # CO_VARARGS
        labels.append((names[count], "*" + names[count]))
        count += 1
    if flags & 0x08:  # CO_VARKEYWORDS
        labels.append((names[count], "**" + names[count]))
    return tuple(labels)


class Values:
    """--args and --returns with the Python collector: the `values` event (op 18).

    Which code is selected is decided once per code object (in
    Recorder.register_code); the engines look up `selected` only while
    either flag is given, and do more only for the code it holds.
    """

    def __init__(self, recorder, args, returns, own_repr):
        self.recorder = recorder
        self.args = list(args) if ARGS_READABLE else []
        self.returns = list(returns)
        self.own_repr = own_repr
        self.count = 0
        # _identity(code) -> (VALUES_* bits, its argument labels or None)
        self.selected = {}

    def select(self, key, code, module, qualname, filename):
        bits = 0
        if self.args and Filters._matches(self.args, module, qualname, filename):
            bits |= VALUES_ARGS
        if self.returns and Filters._matches(self.returns, module, qualname, filename):
            bits |= VALUES_RETURNS
        if bits:
            self.selected[key] = (bits, _argument_labels(code) if bits & VALUES_ARGS else None)
        else:
            # The identity may be a dead code object's, once selected.
            self.selected.pop(key, None)

    def _send(self, serial, values):
        self.count += 1
        self.recorder.define({"kind": "values", "id": self.count, "values": values})
        self.recorder.events.append((18, serial, _now(), 0, self.count))

    def arguments(self, serial, labels, frame):
        """The arguments of `frame`, just started, by parameter name (3.13+).

        `self` is shown by its type and address, whatever --repr says: its
        own repr would run on an object its __init__ has not finished.
        """
        view = frame.f_locals  # a view of the fast locals on 3.13+: copies nothing
        values = {}
        for at, (name, label) in enumerate(labels):
            try:
                value = view[name]
            except KeyError:
                values[label] = "<unbound>"
                continue
            if at == 0 and name == "self":
                values[label] = _object_repr(value)
            else:
                values[label] = _value_text(value, 0, self.own_repr)
        view = value = None
        self._send(serial, values)

    def result(self, serial, label, value):
        """What a frame returns (`return`) or yields (`yield`), before its end event."""
        self._send(serial, {label: _value_text(value, 0, self.own_repr)})


class Lines:
    """--lines with the Python collector: the `line` event (op 19), its number as ref.

    Which code is selected is decided once per code object (in
    Recorder.register_code). On 3.12+ the engine switches LINE on for that
    code alone (`switch_on`); before, the trace function turns line events
    on in its frames only (f_trace_lines). The converter looks up the text.
    """

    def __init__(self, patterns):
        self.patterns = list(patterns)
        self.selected = set()  # _identity(code) of the selected code
        self.switch_on = None  # the engine's: LINE events on for one code object

    def select(self, key, code, module, qualname, filename):
        if Filters._matches(self.patterns, module, qualname, filename):
            self.selected.add(key)
            if self.switch_on is not None:
                self.switch_on(code)
        else:
            # The identity may be a dead code object's, once selected.
            self.selected.discard(key)


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


# --- threads: serial numbers and names -------------------------------------------------

# Every thread gets a serial number, the id its events carry: idents are
# reused by the operating system, serials never (docs/protocol.md,
# `thread_ids`). The main thread is 1.
_local = _thread._local()
_serials = [0]


def _new_serial():
    _serials[0] += 1
    _local.serial = _serials[0]
    return _serials[0]


def _current_serial():
    try:
        return _local.serial
    except AttributeError:
        return 0


def _threading_name(ident):
    """The name `threading` gave the thread `ident`, if it is imported and knows it."""
    threading = sys.modules.get("threading")
    thread = getattr(threading, "_active", {}).get(ident) if threading is not None else None
    name = vars(thread).get("_name") if thread is not None and hasattr(thread, "__dict__") else None
    return name if type(name) is str else None


def _bootstrap_name(function):
    """The name of the threading.Thread whose `_bootstrap` method is `function`."""
    if type(function) is not _MethodType:
        return None
    owner = function.__self__
    name = vars(owner).get("_name") if hasattr(owner, "__dict__") else None
    return name if type(name) is str else None


def _wrap_thread_starters(on_start):
    """Wrap `_thread.start_new_thread` (and 3.13's `start_joinable_thread`).

    The new thread first runs `on_start(name)` (with the name of the
    threading.Thread being started, or None), then the function it was
    given. The native collector does the same in C; this is the Python
    collector's, whose frames are hidden in the trace.
    """
    threading = sys.modules.get("threading")
    for name, copy in (("start_new_thread", "_start_new_thread"),
                       ("start_joinable_thread", "_start_joinable_thread")):
        real = getattr(_thread, name, None)
        if real is None:
            continue
        wrapper = _thread_starter(real, on_start)
        setattr(_thread, name, wrapper)
        if threading is not None and getattr(threading, copy, None) is real:
            setattr(threading, copy, wrapper)


# What the Python collector does as a thread started through _thread ends
# (see _Runtime.thread_ended), or None.
_thread_end_hook = [None]


def _thread_starter(real, on_start):
    def start(function, *args, **kwargs):
        name = _bootstrap_name(function)

        def entry(*inner_args, **inner_kwargs):
            on_start(name)
            try:
                return function(*inner_args, **inner_kwargs)
            except SystemExit:
                raise  # _thread ignores it, silently
            except BaseException as error:
                # _thread would report it as raised by `entry`.
                _unraisable_from_thread(function, error, entry.__code__)
            finally:
                ended = _thread_end_hook[0]
                if ended is not None:
                    ended()

        return real(entry, *args, **kwargs)

    for attribute in ("__name__", "__qualname__", "__doc__"):
        setattr(start, attribute, getattr(real, attribute, None))
    start.__module__ = "_thread"
    start.__wrapped__ = real
    return start


# --- identities that are forgotten when their object dies -----------------------------

_weak_ref = _import_quietly("_weakref").ref
_partial = _import_quietly("_functools").partial
_dict_pop = dict.pop
_HEAP_TYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE


def _unraisable_from_thread(function, error, own_code):
    """Report `error`, which `function` raised in a thread that _thread
    started, as _thread itself reports it: to sys.unraisablehook, naming
    the program's function, with a traceback that starts in it."""
    tb = error.__traceback__
    if tb is not None and tb.tb_frame.f_code is own_code:
        tb = tb.tb_next
        error.__traceback__ = tb
    if sys.version_info >= (3, 13):
        try:
            message = "Exception ignored in thread started by %r" % (function,)
        except Exception:
            message = "Exception ignored in thread started by <%s>" % type(function).__name__
        values = (type(error), error, tb, message, None)
    else:
        values = (type(error), error, tb, "Exception ignored in thread started by", function)
    hook = sys.unraisablehook
    try:
        hook(_unraisable_args(values))
    except BaseException as failure:
        # As Python does when the hook fails: the default hook reports that.
        sys.__unraisablehook__(_unraisable_args(
            (type(failure), failure, failure.__traceback__,
             "Exception ignored in sys.unraisablehook", hook)
        ))


_unraisable_type = []


def _unraisable_args(values):
    """A sys.UnraisableHookArgs of `values`: its type, which Python does not
    name, is found once, from an unraisable exception of our own."""
    if not _unraisable_type:
        class _Probe(object):
            def __del__(self):
                raise ValueError

        seen = []
        hook = sys.unraisablehook
        sys.unraisablehook = seen.append
        try:
            _Probe()
        finally:
            sys.unraisablehook = hook
        _unraisable_type.append(type(seen[0]))
    return _unraisable_type[0](values)


# --- the recorder --------------------------------------------------------------


class Recorder:
    """The Python collector's channel, event buffer and tables of names.

    Every callback appends `(op, thread, ts, frame, ref)` to `self.events`;
    `flush` sends what has accumulated. Flushes may come from any thread, so
    they take a lock; appends need none (list.append is atomic under the GIL,
    and the buffer is only ever trimmed from the front).
    """

    def __init__(self, sock, engine, filters, binary=True, max_events=0):
        self.sock = sock
        # The process whose stream `sock` is. A forked child is another
        # until forget_in_child gives it a stream of its own: what it records
        # before (its at-fork functions' calls, Python's and the program's
        # registered before ours, and the hello's own) must not go into the
        # parent's stream, where it was counted twice or cut a record of the
        # parent's in two.
        self.pid = os.getpid()
        self.engine = engine
        self.filters = filters
        # Binary frames (docs/protocol.md) to the converter; base64 in a file
        # of records, which stays text.
        self.binary = binary
        self.events = []
        self.definitions = []
        self.lock = _thread.RLock()
        self.closed = False  # nothing more can be sent
        self.limited = False  # --max-events was reached: nothing more is recorded
        self.sent = 0
        self.dropped = 0
        self.max_events = max_events
        # _identity(code) -> code number: positive for plain functions,
        # negative for generator-like code, 0 for code that is never recorded
        # (code the filters exclude).
        self.code_ids = {}
        # For generator-like code, _identity(code) -> f_lasti offsets where a
        # 'call' event is a fresh start, and where a 'return' event is a
        # suspension.
        self.fresh_points = {}
        self.suspension_points = {}
        self.code_count = 0
        self.mark_count = 0
        self.on_flush = None  # the engine's look at its own state, see MonitoringEngine
        self.on_close = None  # switches recording off when the channel breaks or at the limit
        self.cfunc_ids = {}  # _identity(C function) -> number, for long-lived callables
        self.cfunc_by_name = {}
        self.lasting = []  # every code and cfunc record sent (see define)
        self.spawns = 0  # spawn tokens given (docs/protocol.md, "Processes")
        self.runtime = None  # the runtime's records, see _Runtime
        self.tasks = None  # asyncio tasks, see _Tasks
        self.exceptions = None  # an Exceptions, when they are recorded
        self.values = None  # a Values, with --args or --returns
        self.thread_time = False  # --cpu-time: events of ops 0 to 7 carry the thread's CPU time
        self.lines = None  # a Lines, with --lines
        self.code_bytes = {}  # _identity(code) -> co_code, for ends_by_exception
        # A code record's fields -> its number: code made again and again
        # (exec in a loop) is defined once, so that the converter's table
        # stays as small as the program's set of names.
        self.code_numbers = {}
        # The tables above are keyed by identity and keep nothing of the
        # program's alive: each key is watched by a weak reference, kept
        # here by key, whose callback takes the key out of its table as the
        # object dies, before another object can take the identity over
        # (see _watch). What the dead leave here (and in fresh_points and
        # suspension_points) is swept at a flush (see _sweep).
        self.watches = {}

    # definitions ------------------------------------------------------------

    def define(self, record, lasting=False):
        line = _json_line(record)
        self.definitions.append(line)
        if lasting:
            # Code and C functions: a forked child's stream defines them anew.
            self.lasting.append(line)

    def _watch(self, obj, table, key):
        """Take `key` out of `table` when `obj` dies (obj must take weak references).

        The callback is `dict.pop` itself, bound by a partial: Python calls
        it from C as `obj` dies, so no bytecode runs (no signal handler of
        the program can run inside it), and no profiler or sys.monitoring
        sees a call. Before another object can be given the identity, the
        key is gone.
        """
        self.watches[key] = _weak_ref(obj, _partial(_dict_pop, table, key))

    def _sweep(self):
        """Drop what dead code and C functions left behind: their weak
        references, and a generator's offsets. Called by a flush once the
        dead outnumber the living, so the cost is spread over the deaths.
        """
        code_ids, cfunc_ids = self.code_ids, self.cfunc_ids
        for table in (self.watches, self.fresh_points, self.suspension_points, self.code_bytes):
            for key in [key for key in table if key not in code_ids and key not in cfunc_ids]:
                del table[key]

    def register_code(self, code, frame):
        """Number a code object, once. Returns 0 for code that is never traced.

        This file's own code (the API's wrappers and context managers, the
        audit hook) is recorded but marked hidden: the converter follows its
        frames, so that the stack stays right, and shows what they call.
        """
        with self.lock:  # against a sweep (see _sweep) in another thread's flush
            return self._register_code(code, frame)

    def _register_code(self, code, frame):
        key = _identity(code)
        hidden = code.co_filename == OWN_FILE
        if hidden:
            module, qualname = "panopticon", code.co_name
        else:
            module = frame.f_globals.get("__name__") if frame is not None else None
            module = module if isinstance(module, str) else ""
            qualname = _qualname(code, frame) if frame is not None else code.co_name
            if self.filters.active and not self.filters.allows(
                module, qualname, code.co_filename, frame
            ):
                self.code_ids[key] = 0
                self._watch(code, self.code_ids, key)
                return 0
        flags = code.co_flags
        kind = _code_type(flags)
        fields = (module, qualname, code.co_filename, code.co_firstlineno, kind, hidden)
        number = self.code_numbers.get(fields)
        if number is None:
            self.code_count += 1
            number = self.code_numbers[fields] = self.code_count
            record = {
                "kind": "code",
                "id": number,
                "module": module,
                "qualname": qualname,
                "file": code.co_filename,
                "line": code.co_firstlineno,
                "type": kind,
            }
            if hidden:
                record["hidden"] = True
            self.define(record, lasting=True)
        if self.values is not None and not hidden:
            self.values.select(key, code, module, qualname, code.co_filename)
        if self.lines is not None and not hidden:
            self.lines.select(key, code, module, qualname, code.co_filename)
        if flags & GENERATOR_LIKE:
            # Before the number: another thread's callback that finds the
            # number looks them up.
            self.fresh_points[key] = _fresh_start_offsets(code)
            self.suspension_points[key] = _suspension_offsets(code)
            number = -number
        self.code_ids[key] = number
        self._watch(code, self.code_ids, key)
        return number

    def ends_by_exception(self, frame):
        """Whether `frame`, at a 'return' event, is unwinding (before 3.12).

        A frame that returns stands on RETURN_VALUE (83 from 3.8 to 3.11);
        one that an exception leaves stands where it was raised.
        """
        code = frame.f_code
        key = _identity(code)
        raw = self.code_bytes.get(key)
        if raw is None:
            # co_code makes a new bytes object on every access in 3.11.
            raw = self.code_bytes[key] = code.co_code
        at = frame.f_lasti
        return 0 <= at < len(raw) and raw[at] != 83

    def register_cfunc(self, fn):
        """Number a C function by its name; remember a long-lived one by identity.

        Called for every call of a builtin method bound afresh (3.8-3.11
        `setprofile` reports `[].append` bound to its list): quick, and
        without the lock unless it remembers.
        """
        name = _cfunc_name(fn)
        number = self.cfunc_by_name.get(name)
        if number is None:
            number = len(self.cfunc_by_name) + 1
            self.cfunc_by_name[name] = number
            self.define({"kind": "cfunc", "id": number, "name": name}, lasting=True)
        # Only long-lived callables are remembered by identity, each watched
        # so that its identity is forgotten when it dies: the functions of
        # modules (and the builtins), a type's own (`object.__new__`), and
        # the methods of C types (which sys.monitoring reports unbound). A
        # builtin method bound to an instance or a class (`[].append`,
        # `dict.fromkeys`) is made afresh for each call, and is named again
        # each time.
        if type(fn) is C_FUNCTION_TYPES[0]:
            owner = fn.__self__
            if (
                owner is None
                or type(owner) is type(sys)
                or isinstance(owner, type) and vars(owner).get(fn.__name__) is fn
            ):
                with self.lock:  # against a sweep in another thread's flush
                    self.cfunc_ids[_identity(fn)] = number
                    self._watch(fn, self.cfunc_ids, _identity(fn))
            return number
        # A method descriptor takes no weak reference, but holds its type: it
        # lives as long as the type does, and a static type's forever. A heap
        # type's (a C extension's, made afresh by a fresh import) is watched
        # through the type. (One deleted from a mutable heap type would die
        # first, and its identity stay here until the type dies.)
        owner = getattr(fn, "__objclass__", None)
        if isinstance(owner, type):
            with self.lock:
                self.cfunc_ids[_identity(fn)] = number
                if owner.__flags__ & _HEAP_TYPE:
                    self._watch(owner, self.cfunc_ids, _identity(fn))
        return number

    def announce_thread(self, serial, name):
        """Send a `thread` record for the calling thread, after every event before it."""
        get_native_id = getattr(_thread, "get_native_id", None)
        ident = _thread.get_ident()
        self.flush(
            serial,
            {
                "kind": "thread",
                "thread": serial,
                "native_id": get_native_id() if get_native_id is not None else None,
                "name": name if name is not None else "Thread %d" % ident,
                "ident": ident,
            },
        )
        if self.runtime is not None:
            # After the thread's record, so that the converter knows the thread.
            self.runtime.thread_started(serial)


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
        if self.pid != os.getpid():
            return  # a forked child's, before its own stream (see self.pid)
        if HELD_SIGNALS:
            held = _signal.pthread_sigmask(_signal.SIG_BLOCK, HELD_SIGNALS)
        try:
            self.sock.sendall(data)
        except OSError as error:
            self.closed = True
            _warn("the trace channel closed (%s): recording stopped" % error)
            self._switch_off()
        finally:
            if HELD_SIGNALS:
                _signal.pthread_sigmask(_signal.SIG_SETMASK, held)

    def _switch_off(self):
        # The program goes on at full speed, rather than feeding callbacks
        # whose events can go nowhere.
        if self.on_close is not None:
            try:
                self.on_close()
            except Exception:
                pass

    def flush(self, serial, record=None):
        """Send the buffered events, then `record` if given, in that order."""
        start = perf_counter_ns()
        if self.pid != os.getpid():
            # A forked child before its own stream (see self.pid): what it
            # recorded goes nowhere. Before the lock, which another of the
            # parent's threads may have held at the fork.
            del self.events[:]
            return
        if self.on_flush is not None:
            self.on_flush()
        with self.lock:
            if len(self.watches) > 2 * (len(self.code_ids) + len(self.cfunc_ids)) + 1024:
                self._sweep()
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
            limit = None
            if self.limited:
                # Past --max-events: the stragglers of the other threads are
                # not recorded either.
                batch = []
                count = 0
            elif self.max_events and self.sent + count >= self.max_events:
                # --max-events: what is past the limit is not recorded at all.
                batch = batch[: self.max_events - self.sent]
                count = len(batch)
                last = batch[-1] if batch else (0, serial, perf_counter_ns())
                limit = {"kind": "limit", "ts": last[2], "events": self.max_events, "thread": last[1]}
            packed = None
            if count:
                # marshal writes integers in binary, several times faster than
                # JSON writes them as text (docs/protocol.md, `packed`).
                # Version 4 writes the thread and the small integers, shared
                # objects, once a batch and then refers back to them.
                try:
                    packed = marshal.dumps(batch, 4)
                except ValueError:
                    # A _Mark cannot be marshalled: this batch holds marks.
                    packed = marshal.dumps(self._define_marks(batch), 4)
            definitions = self.definitions
            parts = definitions[: len(definitions)]
            del definitions[: len(parts)]
            if packed is not None:
                if self.binary:
                    parts.append(b'{"kind":"events","marshal":%d}\n' % len(packed))
                    parts.append(packed)
                else:
                    parts.append(b'{"kind":"events","packed":"')
                    parts.append(_base64(packed))
                    parts.append(b'"}\n')
            if limit is not None:
                parts.append(_json_line(limit))
            if record is not None:
                parts.append(_json_line(record))
            if self.runtime is not None:
                # Past --max-events nothing is recorded, the runtime's work neither.
                until = 0 if self.limited else None if limit is None else limit["ts"]
                parts.extend(self.runtime.collection_records(until))
                if until is None:
                    # Last: after a thread's record, which may rename it.
                    sample = self.runtime.sample()
                    if sample is not None:
                        parts.append(sample)
            if parts:
                self.write(b"".join(parts))
            self.sent += count
            if count:
                self.define(
                    {
                        "kind": "flush",
                        "thread": serial,
                        "start": start,
                        "end": perf_counter_ns(),
                        "events": count,
                    }
                )
            if limit is not None:
                self.limited = True
                self._switch_off()

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

    def start_over(self, sock, hello):
        """In a forked child: a stream of its own, on `sock`, starting with `hello`.

        What the parent had not sent stays behind; the code and C functions
        the child's events name are defined anew.
        """
        # Another thread of the parent may have held the lock at the fork.
        self.lock = _thread.RLock()
        with self.lock:
            self.sock = sock
            self.pid = os.getpid()
            self.closed = False
            self.limited = False
            self.sent = self.dropped = self.spawns = 0
            del self.events[:]
            if self.runtime is not None:
                # The parent's collections not sent yet are the parent's.
                del self.runtime.collections[:]
            self.definitions[:] = [hello] + self.lasting

    def finish(self, reason):
        serial = _current_serial()
        self.flush(serial)
        self.limited = True  # nothing is recorded after the end
        end = {
            "kind": "end",
            "ts": perf_counter_ns(),
            "events": self.sent + self.dropped,
            "dropped": self.dropped,
            "reason": reason,
        }
        max_rss = _max_rss()
        if max_rss is not None:
            end["max_rss"] = max_rss
        with self.lock:
            if not self.closed:
                self.write(b"".join(self.definitions) + _json_line(end))
                del self.definitions[:]
            self.closed = True
            try:
                self.sock.close()
            except OSError:
                pass


def _base64(data):
    binascii = _import_quietly("binascii")
    return binascii.b2a_base64(data, newline=False)


# --- engine: sys.setprofile (3.8+) ----------------------------------------------


def _with_thread_time(append):
    """`append` for --cpu-time: each event gets a sixth item, its thread's CPU time in ns.

    A wrapper, so that the hot paths stay as they are without the option;
    the thread's clock is read just after the event's time (a system call:
    CLOCK_THREAD_CPUTIME_ID has no vDSO fast path on Linux).
    """
    thread_time = _time.thread_time_ns

    def timed(event):
        append(event + (thread_time(),))

    return timed


def _make_profiler(recorder, serial):
    """A profile function for one thread, with its serial and tables bound.

    This is the hot path of the setprofile engine: everything it uses is a
    local or a closure variable, and op codes are literals (see the op codes
    above). It reads `frame.f_code`, which Python audits (`object.__getattr__`):
    the native collector reads it in C, without an audit event.
    """
    append = recorder.events.append
    if recorder.thread_time:
        append = _with_thread_time(append)
    events = recorder.events
    code_number = recorder.code_ids.get
    fresh_points = recorder.fresh_points
    suspension_points = recorder.suspension_points
    cfunc_number = recorder.cfunc_ids.get
    register_code = recorder.register_code
    register_cfunc = recorder.register_cfunc
    flush = recorder.flush
    now = perf_counter_ns
    _id = _identity
    _len = len
    threshold = FLUSH_THRESHOLD
    c_calls = recorder.filters.c_calls
    # With filters on, a C call is recorded only when its caller is, and a
    # return must be looked up (an excluded frame's is not recorded); without
    # them, the code's flags tell a generator's return more cheaply.
    filtering = recorder.filters.active
    generator_like = GENERATOR_LIKE
    # asyncio tasks (see _Tasks): checked at a coroutine frame's first start
    # and, while tasks run, at a generator-like frame's end.
    tasks = recorder.tasks
    tops = tasks.tops if tasks is not None else {}
    # With --exceptions the converter must tell an unwind from a return,
    # which a Python profile function is not told (arg is None for both).
    unwinds = recorder.exceptions is not None
    ends_by_exception = recorder.ends_by_exception
    # --args, --returns (see Values): one lookup per event while either is
    # given, more only for the code they select.
    values = recorder.values
    selected = values.selected.get if values is not None else None

    def profile(frame, event, arg):
        if event == "call":
            code = frame.f_code
            number = code_number(_id(code))
            if number is None:
                number = register_code(code, frame)
            if number > 0:
                append((0, serial, now(), 0, number))
                fresh = True
            elif number:
                fresh = frame.f_lasti in fresh_points[_id(code)]
                if fresh:
                    append((0, serial, now(), _id(frame), -number))
                    if tasks is not None and code.co_flags & 0x80:
                        tasks.started(serial, _id(frame))
                else:
                    append((1, serial, now(), _id(frame), -number))
            else:
                return
            if selected is not None and fresh:
                chosen = selected(_id(code))
                if chosen is not None and chosen[0] & 1:
                    values.arguments(serial, chosen[1], frame)
            if _len(events) > threshold:
                flush(serial)
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
            if selected is not None:
                chosen = selected(_id(code))
                if chosen is not None and chosen[0] & 2:
                    suspends = generator and frame.f_lasti in suspension_points.get(_id(code), ())
                    # A profile function is given None for an unwind as for `return None`.
                    if suspends or arg is not None or not ends_by_exception(frame):
                        values.result(serial, "yield" if suspends else "return", arg)
                        ts = now()
            if not generator:
                # A frame not seen starting (runpy's, below <module>) ends the
                # same way: the converter ignores an end it has no start for.
                append((3 if unwinds and arg is None and ends_by_exception(frame) else 2,
                        serial, ts, 0, 0))
            elif frame.f_lasti in suspension_points.get(_id(code), ()):
                append((4, serial, ts, _id(frame), 0))
            else:
                if tops and _id(frame) in tops:
                    # The exception, if any, is put aside while a profile function runs.
                    tasks.ended(serial, _id(frame))
                append((3 if unwinds and arg is None and ends_by_exception(frame) else 2,
                        serial, ts, _id(frame), 0))
        elif c_calls:
            if filtering and code_number(_id(frame.f_code)) == 0:
                return
            if event == "c_call":
                number = cfunc_number(_id(arg))
                if number is None:
                    number = register_cfunc(arg)
                append((5, serial, now(), 0, number))
                if _len(events) > threshold:
                    flush(serial)
            elif event == "c_return":
                append((6, serial, now(), 0, 0))
            else:
                append((7, serial, now(), 0, 0))

    return profile


class ProfileEngine:
    name = "setprofile"

    def __init__(self, recorder):
        self.recorder = recorder
        self.main_profile = None
        # serial -> (profile function, serial) recording that thread, for
        # the guard (see _Guard) and for threads switched on by the API. By
        # serial: a thread's ident may be another's that has ended.
        self.profiles = {}
        self.announced = {}  # serial -> the name its `thread` record gave

    def profile_for_caller(self):
        """The profile function of the calling thread, made once."""
        serial = _current_serial() or _new_serial()
        entry = self.profiles.get(serial)
        if entry is None:
            entry = self.profiles[serial] = (_make_profiler(self.recorder, serial), serial)
        return entry

    def record_thread(self, ident):
        """Start recording the calling thread (the API, in manual mode).

        The thread is announced the first time, and again only under a new
        name: a thread that is switched on and off many times stays one track.
        Must run while the thread records nothing: announcing runs Python code.
        """
        profile, serial = self.profile_for_caller()
        name = _threading_name(ident) or ("MainThread" if serial == 1 else None)
        if serial not in self.announced or (name is not None and self.announced[serial] != name):
            self.announced[serial] = name
            self.recorder.announce_thread(serial, name)
        _switch_profile(profile)

    def start(self, manual=False):
        engine = self
        recorder = self.recorder

        def thread_started(name):
            # The first thing a new thread runs (see _wrap_thread_starters).
            serial = _new_serial()
            if manual:
                return  # Threads are switched on by the API (record_thread).
            engine.announced[serial] = name
            recorder.announce_thread(serial, name)
            profile = _make_profiler(recorder, serial)
            engine.profiles[serial] = (profile, serial)
            if recorder.exceptions is not None or recorder.lines is not None:
                # Before the profile function: switching it on is the last thing.
                _set_trace(_make_exception_tracer(recorder, recorder.exceptions, serial)[0])
            _switch_profile(profile)

        _wrap_thread_starters(thread_started)
        if manual:
            return

        def wait_for_main(frame, event, arg):
            # Site initialisation and runpy run before the program: start at
            # the program's own <module> frame.
            if (
                event == "call"
                and frame.f_code.co_name == "<module>"
                and frame.f_globals.get("__name__") == "__main__"
            ):
                _forget_sitecustomize()
                profile, serial = engine.profile_for_caller()
                engine.main_profile = profile
                if recorder.exceptions is not None or recorder.lines is not None:
                    tracer, local = _make_exception_tracer(recorder, recorder.exceptions, serial)
                    _set_trace(tracer)
                    # The program's own frame is running already: it gets the
                    # local trace function here (as the tracer would give it).
                    if tracer(frame, "call", None) is not None:
                        frame.f_trace = local
                _switch_profile(profile)
                profile(frame, event, arg)

        sys.setprofile(wait_for_main)

    def check_at_exit(self):
        """Say so when the main thread stopped recording before the end.

        Python removes a profile function that raises (a RecursionError at
        the recursion limit, where the callback has no stack room left), and
        the program may replace it (sys.setprofile, cProfile): the events of
        the rest of the run are then missing.
        """
        if (
            self.main_profile is not None
            and _get_profile() is not self.main_profile
            and not _guard.warned
            and not self.recorder.closed
        ):
            _warn(
                "recording of the main thread stopped before the program ended: its "
                "profile function was removed or replaced (by sys.setprofile, another "
                "profiler, or a RecursionError at the recursion limit)"
            )

    def silence(self):
        """Stops recording on the calling thread, without an event (see _switch_profile)."""
        self.main_profile = None  # the end is ours: nothing to warn of at finish
        _switch_profile(None)

    def stop(self):
        _set_profile(None)
        if self.recorder.exceptions is not None or self.recorder.lines is not None:
            _set_trace(None)


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

    def start(self, manual=False):
        # Manual recording is per thread, which sys.monitoring is not: the
        # API always records with the setprofile engine (see _choose_engine).
        monitoring = sys.monitoring
        E = monitoring.events
        DISABLE = monitoring.DISABLE
        recorder = self.recorder
        append = recorder.events.append
        if recorder.thread_time:
            append = _with_thread_time(append)
        events = recorder.events
        code_number = recorder.code_ids.get
        cfunc_number = recorder.cfunc_ids.get
        register_code = recorder.register_code
        register_cfunc = recorder.register_cfunc
        flush = recorder.flush
        now = perf_counter_ns
        local = _local
        getframe = sys._getframe
        c_types = C_FUNCTION_TYPES
        _id = _identity
        _len = len
        threshold = FLUSH_THRESHOLD
        # With filters on, a C call is recorded only when its caller is.
        c_calls_follow_caller = recorder.filters.active
        # asyncio tasks (see _Tasks).
        tasks = recorder.tasks
        tops = tasks.tops if tasks is not None else {}
        # The numbers of Future.set_result and set_exception, once called.
        completing = tasks.completing if tasks is not None else set()
        type_type = type
        # --args, --returns (see Values).
        values = recorder.values
        selected = values.selected.get if values is not None else None

        def first_sight():
            # A thread's first event: it gets its serial, and is announced
            # before the event (by threading's name if it has one already;
            # a thread started through _thread is renamed by thread_started).
            serial = _new_serial()
            recorder.announce_thread(serial, _threading_name(_thread.get_ident()))
            return serial

        def thread_started(name):
            if name is not None:
                recorder.announce_thread(_current_serial() or first_sight(), name)

        _wrap_thread_starters(thread_started)

        # The callbacks below are the hot path: locals and closure variables
        # only, op codes as literals (see the op codes above). Code that the filters
        # exclude is switched off at its source with DISABLE, where the event
        # is a local one (PY_START, PY_RESUME, PY_RETURN, PY_YIELD, CALL);
        # for the others (PY_UNWIND, PY_THROW) DISABLE would raise into the
        # program, so those return at once. A thread's serial is an attribute
        # of a thread-local object: about as cheap as get_ident().

        def py_start(code, offset):
            number = code_number(_id(code))
            if number is None:
                number = register_code(code, getframe(1))
            try:
                serial = local.serial
            except AttributeError:
                serial = first_sight()
            if number > 0:
                append((0, serial, now(), 0, number))
            elif number:
                frame = _id(getframe(1))
                append((0, serial, now(), frame, -number))
                if tasks is not None and code.co_flags & 0x80:
                    tasks.started(serial, frame)
            else:
                return DISABLE
            if selected is not None:
                chosen = selected(_id(code))
                if chosen is not None and chosen[0] & 1:
                    values.arguments(serial, chosen[1], getframe(1))
            if _len(events) > threshold:
                flush(serial)

        def py_resume(code, offset):
            number = code_number(_id(code))
            if number is None:
                number = register_code(code, getframe(1))
            if not number:
                return DISABLE
            try:
                serial = local.serial
            except AttributeError:
                serial = first_sight()
            append((1, serial, now(), _id(getframe(1)), -number))
            if _len(events) > threshold:
                flush(serial)

        def py_throw(code, offset, exception):
            number = code_number(_id(code))
            if number is None:
                number = register_code(code, getframe(1))
            if number:
                try:
                    serial = local.serial
                except AttributeError:
                    serial = first_sight()
                append((1, serial, now(), _id(getframe(1)), -number))

        def py_return(code, offset, value):
            ts = now()
            number = code_number(_id(code))
            try:
                serial = local.serial
            except AttributeError:
                serial = first_sight()
            if selected is not None and number:
                chosen = selected(_id(code))
                if chosen is not None and chosen[0] & 2:
                    values.result(serial, "return", value)
                    ts = now()
            if number is None or number > 0:
                append((2, serial, ts, 0, 0))
            elif number:
                frame = _id(getframe(1))
                if tops and frame in tops:
                    tasks.ended(serial, frame, done=ts - 1)
                append((2, serial, ts, frame, 0))
            else:
                return DISABLE

        def py_unwind(code, offset, exception):
            ts = now()
            number = code_number(_id(code))
            try:
                serial = local.serial
            except AttributeError:
                serial = first_sight()
            if number is None or number > 0:
                append((3, serial, ts, 0, 0))
            elif number:
                frame = _id(getframe(1))
                if tops and frame in tops:
                    tasks.ended(serial, frame, exception, done=ts - 1)
                append((3, serial, ts, frame, 0))

        def py_yield(code, offset, value):
            if not code_number(_id(code)):
                return DISABLE
            try:
                serial = local.serial
            except AttributeError:
                serial = first_sight()
            if selected is not None:
                chosen = selected(_id(code))
                if chosen is not None and chosen[0] & 2:
                    values.result(serial, "yield", value)
            frame = _id(getframe(1))
            if tops and value is not None and frame in tops:
                tasks.awaits(serial, value)
            append((4, serial, now(), frame, 0))

        def call(code, offset, callable, arg0):
            if type(callable) in c_types:
                if c_calls_follow_caller and code_number(_id(code)) == 0:
                    return DISABLE
                number = cfunc_number(_id(callable))
                if number is None:
                    number = register_cfunc(callable)
                    if tasks is not None and tasks.is_completion(callable):
                        completing.add(number)
                try:
                    serial = local.serial
                except AttributeError:
                    serial = first_sight()
                append((5, serial, now(), 0, number))
                if completing and number in completing:
                    tasks.completes(serial, arg0)
                if _len(events) > threshold:
                    flush(serial)
            elif (
                tasks is not None and type(callable) is type_type and callable.__name__ == "Task"
                and tasks.is_task_type(callable)
            ):
                try:
                    serial = local.serial
                except AttributeError:
                    serial = first_sight()
                tasks.created(serial, arg0)

        def c_return(code, offset, callable, arg0):
            if type(callable) in c_types:
                try:
                    serial = local.serial
                except AttributeError:
                    serial = first_sight()
                append((6, serial, now(), 0, 0))

        def c_raise(code, offset, callable, arg0):
            if type(callable) in c_types:
                try:
                    serial = local.serial
                except AttributeError:
                    serial = first_sight()
                append((7, serial, now(), 0, 0))

        exceptions = recorder.exceptions

        # RAISE and EXCEPTION_HANDLED cannot be switched off at their source:
        # code left out (or our own) returns at once.
        def on_raise(code, offset, exception):
            if code_number(_id(code)) and code.co_filename != OWN_FILE:
                try:
                    serial = local.serial
                except AttributeError:
                    serial = first_sight()
                exceptions.raised(serial, code, _line_at(code, offset), exception)

        def on_handled(code, offset, exception):
            if code_number(_id(code)) and code.co_filename != OWN_FILE:
                try:
                    serial = local.serial
                except AttributeError:
                    serial = first_sight()
                exceptions.handled(serial, _line_at(code, offset), exception)

        lines = recorder.lines
        # Line events carry no thread time (only ops 0 to 7 do, with --cpu-time).
        append_line = recorder.events.append

        # LINE is a local event, switched on only for the code --lines
        # selects (switch_lines_on, at its registration): the rest pays
        # nothing. Its frames are the program's, never ours.
        def on_line(code, line):
            try:
                serial = local.serial
            except AttributeError:
                serial = first_sight()
            append_line((19, serial, now(), 0, line))

        if lines is not None:
            get_local_events = sys.monitoring.get_local_events
            set_local_events = self.api["set_local_events"]

            def switch_lines_on(code):
                tool = engine.tool
                set_local_events(tool, code, get_local_events(tool, code) | E.LINE)

            lines.switch_on = switch_lines_on

        recording = (
            E.PY_START | E.PY_RESUME | E.PY_RETURN | E.PY_YIELD | E.PY_UNWIND | E.PY_THROW
        )
        if recorder.filters.c_calls:
            # C_RETURN and C_RAISE come only with CALL.
            recording |= E.CALL | E.C_RETURN | E.C_RAISE
        if exceptions is not None:
            recording |= E.RAISE | E.EXCEPTION_HANDLED

        def wait_for_main(code, offset):
            # Only PY_START is on until the program's <module> starts; any
            # other code is switched off at its source (DISABLE is allowed for
            # this local event) and switched back on by restart_events().
            frame = getframe(1)
            if code.co_name == "<module>" and frame.f_globals.get("__name__") == "__main__":
                _forget_sitecustomize()
                engine.register(E.PY_START, py_start)
                engine.switch_on(recording)
                monitoring.restart_events()
                # As py_start would, with this frame (py_start's own caller
                # would be this callback).
                number = code_number(_id(code))
                if number is None:
                    number = register_code(code, frame)
                if number:
                    append((0, _current_serial() or first_sight(), now(), 0, number))
                return None
            return DISABLE

        engine = self
        self.api["use_tool_id"](self.tool, "panopticon")
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
            (E.RAISE, on_raise),
            (E.EXCEPTION_HANDLED, on_handled),
            (E.LINE, on_line),
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

    def check_at_exit(self):
        """A last look at our tool id (see check_tool)."""
        self.check_tool("at exit")

    def silence(self):
        """Stops recording, for atexit and os._exit (see ProfileEngine)."""
        if not self.stopped:
            self.api["set_events"](self.tool, 0)
            self.reported_mask = 0  # our own doing: check_tool stays quiet

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
        real = api["use_tool_id"]

        def use_tool_id(tool_id, name):
            if tool_id == engine.tool and not engine.stopped:
                engine.move(name, _place(sys._getframe(1)))
            return real(tool_id, name)

        for attribute in ("__name__", "__qualname__", "__doc__", "__module__"):
            setattr(use_tool_id, attribute, getattr(real, attribute, None))
        use_tool_id.__wrapped__ = real
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
        serial = _current_serial()
        mark = _Mark(("panopticon", name, {"by": where}))
        self.recorder.events.append((8, serial, _now(), 0, mark))
        if stop:
            self.recorder.events.append((12, serial, _now(), 0, 0))


# --- the guard on the profile function ------------------------------------------


class _Guard:
    """Watches for the program (or a library) replacing our profile function.

    An audit hook sees every `sys.setprofile`, including cProfile's before
    3.12. When it is not our own, and it replaces the function that records
    the calling thread, the trace gets a `profiler replaced` instant with the
    culprit's place, and recording of that thread stops there (op 12); the
    terminal is warned once. Python offers no hook *after* the change, so
    recording does not resume when the other tool lets go. This is the
    Python collector's: a Python function called for every audit event the
    process raises. The native collector's is in C.
    """

    def __init__(self):
        self.engine = None
        self.local = _thread._local()
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
        ours = engine.profiles.get(_current_serial())
        if ours is None or _get_profile() is not ours[0]:
            return
        serial = ours[1]
        try:
            caller = _frame_of_caller(1)
            where = None if _near_recursion_limit(caller) else _place(caller)
        except Exception:
            # No room left on the stack, or no Python caller.
            where = None
        if not self.warned and where is not None:
            self.warned = _warn(
                "the program replaced the profile function at %s: recording of thread %s "
                "stopped there (the trace marks the moment)"
                % (where, _threading_name(ident) or ("MainThread" if serial == 1 else ident))
            )
        args = {"by": where} if where is not None else {"by": "Python (an error in the profile function)"}
        mark = _Mark(("panopticon", "recording stopped: profile function replaced", args))
        # The last events of this thread: nothing may be recorded after the
        # stop, so the stop comes last and no call follows it here.
        _session_state.recording.discard(ident)
        engine.recorder.events += ((8, serial, _now(), 0, mark), (12, serial, _now(), 0, 0))


_guard = _Guard()


def _near_recursion_limit(frame):
    """Whether `frame` is at the recursion limit: there Python itself removes a
    profile function that raised RecursionError, through the same
    `sys.setprofile` audit event as a program would."""
    depth = 0
    limit = sys.getrecursionlimit()
    while frame is not None and depth < limit:
        frame = frame.f_back
        depth += 1
    return depth >= limit - 10


def _place(frame):
    """`file:line (function)` of a frame, for the trace and the terminal."""
    return "%s:%d (%s)" % (frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name)


def _switch_profile(profile, stop=None):
    """Install `profile` on the calling thread, as ourselves (the guard stays quiet).

    Switching recording on or off must be the last thing a thread does
    before or after it: the frames around it then record no call that has
    no end. With `stop`, the thread's serial, its `stop` event is sent just
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


# --- the native collector ---------------------------------------------------------------


def _load_native(path):
    """The native module built for this interpreter (src/native_build.ts), not in sys.modules."""
    import _imp

    class Spec:
        name = "_panopticon_native"
        origin = path

    module = _imp.create_dynamic(Spec)
    _imp.exec_dynamic(module)
    sys.modules.pop(Spec.name, None)
    return module


class NativeEngine:
    """The engine of the native collector, as the in-program API uses it."""

    def __init__(self, native, name):
        self.native = native
        self.name = name

    def record_thread(self, ident):
        self.native.record_thread()

    def stop_thread(self):
        self.native.stop_thread()


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
        self.native = None  # the native module, when it records
        self.native_finished = False
        self.events = None  # the Python recorder's event list
        self.manual = False
        self.in_process = None  # the _InProcess output of a plain-python recording
        self.depth = {}  # ident -> nesting of trace()/traced on that thread
        self.recording = set()  # idents recording now (manual mode)
        self.blocks = 0  # trace() blocks and traced calls open, all threads
        self.lock = _thread.RLock()

    def attach(self, recorder, engine, manual, in_process=None, native=None):
        self.recorder = recorder
        self.engine = engine
        self.native = native
        self.events = recorder.events if recorder is not None else None
        self.manual = manual
        self.in_process = in_process
        self.depth = {}
        self.recording = set()
        self.blocks = 0

    def detach(self):
        self.recorder = self.engine = self.events = self.in_process = self.native = None
        self.recording = set()

    def finished(self):
        """The command's recording has ended (the program is exiting)."""
        if self.in_process is not None:
            return False
        if self.native is not None:
            return self.native_finished
        return self.recorder is not None and self.recorder.closed

    def active(self, ident):
        """Whether marks of thread `ident` are recorded now."""
        if self.native is None and self.events is None:
            return False
        return not self.manual or ident in self.recording

    def mark(self, op, name, args, number=0):
        """An instant (8), counter (9) or span begin (10) on the calling thread."""
        if self.native is not None:
            self.native.mark(op, number, name, args)
        else:
            self.events += ((op, _current_serial(), _now(), number, _Mark(("mark", name, args))),)

    def span_end(self, number):
        if self.native is not None:
            self.native.span_end(number)
        else:
            self.events += ((11, _current_serial(), _now(), number, 0),)

    def stop_thread(self):
        """Manual mode: the calling thread's recording ends (its last event is a stop)."""
        if self.native is not None:
            self.native.stop_thread()
        else:
            _switch_profile(None, stop=_current_serial())


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
        if state.finished():
            return False  # the command's recording has ended: the program is exiting
        if state.native is None and (state.recorder is None or state.recorder.closed):
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
        state.stop_thread()
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

    def decorate(function):
        return _traced(function, target)

    return decorate


def _wraps(wrapper, function):
    """functools.wraps, without importing functools."""
    for attribute in ("__module__", "__name__", "__qualname__", "__doc__"):
        try:
            setattr(wrapper, attribute, getattr(function, attribute))
        except AttributeError:
            pass
    wrapper.__dict__.update(getattr(function, "__dict__", {}))
    wrapper.__wrapped__ = function
    return wrapper


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

    return _wraps(wrapper, function)


class _TracedSteps(object):
    """A generator or awaitable whose every step is recorded.

    Each `send`, `throw` and `close` of the inner object runs between an
    _enter() and a _leave(). They are called through method-wrappers, so
    that the call itself is not reported as a C call when recording has just
    been switched on.
    """

    __slots__ = ("path", "default_path", "_send", "_throw", "_close")

    def __init__(self, inner, path, default_path):
        self.path = path
        self.default_path = default_path
        self._send = inner.send.__call__
        self._throw = inner.throw.__call__
        self._close = inner.close.__call__

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
    if state.active(_ident()):
        state.mark(8, name, args)


def counter(name, value=None, **values):
    """Set a counter track: `counter("queue depth", 3)`, or several series by keyword."""
    if value is not None:
        values["value"] = value
    for key in values:
        if type(values[key]) not in (int, float):
            raise TypeError("panopticon.counter() takes numbers, got %r for %r" % (values[key], key))
    state = _session_state
    if state.active(_ident()):
        state.mark(9, name, values)


_span_numbers = [0]


class span(object):
    """A slice of the program's own on its thread's timeline: `with panopticon.span("phase 2"):`."""

    __slots__ = ("name", "args", "number")

    def __init__(self, name, **args):
        self.name = name
        self.args = args
        self.number = 0

    def __enter__(self):
        state = _session_state
        if state.active(_ident()):
            _span_numbers[0] += 1
            self.number = _span_numbers[0]
            state.mark(10, self.name, self.args, self.number)
        return self

    def __exit__(self, kind, exception, traceback):
        state = _session_state
        if self.number and state.active(_ident()):
            state.span_end(self.number)
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
    recorder = Recorder(output, None, Filters(None), binary=False)
    engine = ProfileEngine(recorder)
    recorder.engine = engine.name
    if not _current_serial():
        _new_serial()
    recorder.write(_hello_line(engine.name, "python", None))
    state.attach(recorder, engine, True, output)
    engine.start(manual=True)
    _guard.watch(engine)
    if not ends_with_blocks:
        _at_exit(_close_in_process)
    _watch_forks(_forget_in_child, _mark_fork)
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
    if state.active(ident) and state.recorder is not None and not state.recorder.closed:
        mark = _Mark(("panopticon", "fork: the child process is not traced", {}))
        state.events.append((8, _current_serial(), _now(), 0, mark))


_fork_hooks = []


def _watch_forks(forget_in_child, in_parent, before=None):
    """Once per process: `before` the fork, `in_parent` after it, `forget_in_child` in the child."""
    hooks = [forget_in_child, in_parent, before or _nothing]
    if hasattr(os, "register_at_fork") and not _fork_hooks:
        _fork_hooks.extend(hooks)
        os.register_at_fork(
            before=lambda: _fork_hooks[2](),
            after_in_parent=lambda: _fork_hooks[1](),
            after_in_child=lambda: _fork_hooks[0](),
        )
    elif _fork_hooks:
        _fork_hooks[:] = hooks


def _nothing():
    pass


def _hello_line(engine, collector, secret, clock="monotonic", t0=None, parent=None, main_thread=1,
                thread_time=False):
    hello = {
        "kind": "hello",
        "protocol": PROTOCOL_VERSION,
        "pid": os.getpid(),
        "python": "%d.%d.%d" % sys.version_info[:3],
        "engine": engine,
        "collector": collector,
        "thread_ids": "serial",
        "clock": clock,
        "t0": perf_counter_ns() if t0 is None else t0,
        "main_thread": main_thread,
        "argv": [str(a) for a in sys.argv],
    }
    if thread_time:
        hello["thread_time"] = True
    if parent is not None:
        hello["parent"] = parent
    try:
        # What relative code files are relative to (the converter reads the
        # source of --lines; 3.8 names the script as it was given).
        hello["cwd"] = os.getcwd()
    except OSError:
        pass
    if secret:
        hello["secret"] = secret
    return _json_line(hello)


# --- the runtime: garbage collection and CPU time (issue 14) ---------------------


def _parse_runtime(text):
    """PANOPTICON_RUNTIME (see src/runner.ts): words that switch the runtime's records off or on.

    Without the variable everything that is on by default is on: `gc`
    (a slice per collection), `cpu-counters` (each thread's CPU time) and
    `tasks` (asyncio tasks); `thread-time` (--cpu-time: each event's thread
    CPU time) is off.
    """
    spec = {"gc": True, "cpu_counters": True, "tasks": True, "thread_time": False}
    for word in (text or "").split():
        name = word[3:] if word.startswith("no-") else word
        key = name.replace("-", "_")
        if key in spec:
            spec[key] = not word.startswith("no-")
        else:
            _warn("ignoring %r in PANOPTICON_RUNTIME: not a setting this collector knows" % word)
    return spec


def _remove_by_identity(items, item):
    """Take `item` out of the list `items`; list.remove would compare with ==, which may be Python code."""
    for i in range(len(items)):
        if items[i] is item:
            del items[i]
            return


class _Runtime:
    """The Python collector's records of the runtime's own work (docs/protocol.md, "The runtime").

    - Garbage collection: a function appended to `gc.callbacks` takes the
      time at a collection's start and, at its stop, adds a `gc` record,
      which goes out with the next flush. It keeps nothing of `info`.
    - CPU time: each thread's CPU clock (`time.pthread_getcpuclockid` of
      its ident, read on the thread when it is announced) is read at every
      flush, at most once a millisecond, into a `cpu` record.
    """

    def __init__(self, recorder, spec):
        self.recorder = recorder
        self.gc = None
        self.callback = None
        self.clocks = {} if spec["cpu_counters"] else None  # serial -> clock id
        self.sampled_at = 0
        # Collections seen since the last flush: (thread, start, end, and
        # info's generation, collected, uncollectable). The callback only
        # appends; the flush writes them out, where recording sees nothing
        # (each call the callback made would be an event: writing the record
        # there cost 50-100 us a collection, measured).
        self.collections = []
        if spec["gc"]:
            gc = _import_quietly("gc")
            started = [0]
            append = self.collections.append
            events = recorder.events
            now = perf_counter_ns
            local = _local

            def collection(phase, info):
                if phase == "start":
                    started[0] = now()
                    return
                start = started[0]
                started[0] = 0
                try:
                    serial = local.serial
                except AttributeError:
                    return
                # Nothing recorded yet: the program's <module> has not started.
                if start and not recorder.closed and (events or recorder.sent):
                    end = now()
                    append((serial, start, end, info["generation"], info["collected"],
                            info["uncollectable"]))

            self.gc = gc
            self.callback = collection
            gc.callbacks.append(collection)
        if self.clocks is not None:
            _thread_end_hook[0] = self.thread_ended

    def collection_records(self, until=None):
        """The `gc` records of the collections seen since the last call, as lines;
        with `until`, only those that started by then (the --max-events limit)."""
        collections = self.collections
        taken = collections[: len(collections)]
        del collections[: len(taken)]
        lines = []
        for serial, start, end, generation, collected, uncollectable in taken:
            if until is not None and start > until:
                continue
            lines.append(
                b'{"kind":"gc","thread":%d,"start":%d,"end":%d,"generation":%d,"collected":%d,'
                b'"uncollectable":%d}\n' % (serial, start, end, generation, collected, uncollectable)
            )
        return lines

    def thread_started(self, serial):
        """On the thread `serial`, once it is announced: its CPU clock, and a first sample."""
        if self.clocks is None:
            return
        try:
            clock = self.clocks[serial] = _time.pthread_getcpuclockid(_thread.get_ident())
            cpu = _time.clock_gettime_ns(clock)
        except (AttributeError, OSError):
            return
        self.recorder.define({"kind": "cpu", "ts": perf_counter_ns(), "threads": [[serial, cpu]]})

    def thread_ended(self):
        """On a thread that ends: its last sample, for a thread that ran without a flush."""
        serial = _current_serial()
        clocks = self.clocks
        if clocks is None or self.recorder.closed or serial not in clocks:
            return
        try:
            cpu = _time.clock_gettime_ns(clocks.pop(serial))
        except OSError:
            return
        self.recorder.define({"kind": "cpu", "ts": perf_counter_ns(), "threads": [[serial, cpu]]})

    def sample(self):
        """The line of a `cpu` record of every known thread's CPU time, if a millisecond has passed."""
        clocks = self.clocks
        if not clocks:
            return None
        now = perf_counter_ns()
        if now - self.sampled_at < 1000000:
            return None
        self.sampled_at = now
        read = _time.clock_gettime_ns
        pairs = []
        for serial, clock in list(clocks.items()):
            try:
                pairs.append(b"[%d,%d]" % (serial, read(clock)))
            except OSError:
                # The thread has ended: its clock is gone.
                del clocks[serial]
        if pairs:
            return b'{"kind":"cpu","ts":%d,"threads":[%s]}\n' % (now, b",".join(pairs))
        return None

    def stop(self):
        _thread_end_hook[0] = None
        if self.callback is not None:
            _remove_by_identity(self.gc.callbacks, self.callback)
            self.callback = None


class _Tasks:
    """The Python collector's asyncio tasks (docs/protocol.md, "asyncio tasks").

    As the native collector does: the monitoring engine's CALL of the
    `_asyncio.Task` type is a task's creation (an instant of its "created"
    mark, and its coroutine's identity waits for the task); a coroutine
    frame's first start with a task of the running loop in
    `_asyncio._current_tasks` that was not seen before is that task's first
    step (an instant of the task's mark, named by `get_name()`, after the
    frame's call event); that frame's end is the task's, an unwind with
    `CancelledError` (monitoring engine) preceded by a "cancelled" instant.
    On the monitoring engine, awaiting too: a task's coroutine frame that
    yields a future (what `Future.__await__` yields) awaits it (op 20, or
    one per child of a `gather`), and a future completes (op 21) where
    `Future.set_result` or `set_exception` is called on it, or, a task,
    where its coroutine ends. Callbacks of either engine run unrecorded, so the calls made here are
    never in the trace. Only identities are kept, never a task or coroutine.
    """

    def __init__(self, recorder):
        self.events = recorder.events
        self.task_type = None  # _asyncio.Task, once seen
        self.current_tasks = None
        self.get_running_loop = None
        self.cancelled_error = None
        self.count = 0
        self.by_task = {}  # id(task) -> its number, while its coroutine runs
        self.tops = {}  # the frame id of each task's coroutine -> id(task)
        self.pending = {}  # id(coroutine) -> the number of its task, created
        self.future_type = None  # _asyncio.Future
        self.gathering_type = None  # asyncio.tasks._GatheringFuture
        self.completions = ()  # Future.set_result, Future.set_exception
        self.completing = set()  # their C function numbers, once called

    def find(self):
        module = sys.modules.get("_asyncio")
        current = getattr(module, "_current_tasks", None)
        if type(current) is not dict:
            return False
        self.current_tasks = current
        self.get_running_loop = module._get_running_loop
        self.task_type = module.Task
        exceptions = sys.modules.get("asyncio.exceptions")
        self.cancelled_error = getattr(exceptions, "CancelledError", None)
        future = getattr(module, "Future", None)
        if type(future) is type:
            self.future_type = future
            members = future.__dict__
            self.completions = (members.get("set_result"), members.get("set_exception"))
        return True

    def gathering(self):
        """asyncio.tasks._GatheringFuture, once asyncio.tasks is imported."""
        gathering = getattr(sys.modules.get("asyncio.tasks"), "_GatheringFuture", None)
        if type(gathering) is type and issubclass(gathering, self.future_type):
            self.gathering_type = gathering
        return gathering

    def is_completion(self, callable):
        """For a C function seen for the first time: Future.set_result or set_exception?"""
        if self.current_tasks is None and not self.find():
            return False
        return any(callable is method for method in self.completions)

    def completes(self, serial, future):
        """Future.set_result or set_exception is called on `future` (its first argument)."""
        kind = self.future_type
        if kind is not None and issubclass(type(future), kind):
            self.events.append((21, serial, perf_counter_ns(), _identity(future), 0))

    def awaits(self, serial, value):
        """A task's coroutine frame yields `value`: a future it awaits, or not."""
        kind = self.future_type
        if kind is None or not issubclass(type(value), kind):
            return
        futures = (value,)
        if type(value) is (self.gathering_type or self.gathering()):
            try:
                children = object.__getattribute__(value, "_children")
            except Exception:
                children = None
            if type(children) is list:
                futures = [child for child in children if issubclass(type(child), kind)]
        ts = perf_counter_ns()
        for future in futures:
            self.events.append((20, serial, ts, _identity(future), 0))

    def is_task_type(self, callable):
        """For a CALL of a type named Task: is it _asyncio.Task?"""
        if self.task_type is None:
            self.find()
        return callable is self.task_type

    def created(self, serial, coroutine):
        if type(coroutine) is not _CoroutineType:
            return
        self.count += 1
        self.pending[_identity(coroutine)] = self.count
        self.events.append(
            (8, serial, perf_counter_ns(), 0, _Mark(("asyncio.created", "task created", {"task": self.count})))
        )

    def started(self, serial, frame):
        # An exception here would leave the engine's callback, which Python
        # then switches off: a task not recorded is the lesser harm.
        try:
            self._started(serial, frame)
        except Exception:
            pass

    def _started(self, serial, frame):
        if self.current_tasks is None and not self.find():
            return
        loop = self.get_running_loop()
        if loop is None:
            return
        task = None
        for key, value in list(self.current_tasks.items()):
            if key is loop:  # by identity: no __eq__ of the program's runs
                task = value
                break
        if task is None or _identity(task) in self.by_task:
            return
        number = self.pending.pop(_identity(task.get_coro()), None)
        if number is None:
            self.count += 1
            number = self.count
        name = task.get_name()
        self.by_task[_identity(task)] = number
        self.tops[frame] = _identity(task)
        self.events.append(
            (8, serial, perf_counter_ns(), 0, _Mark(("asyncio.task", name, {"task": number})))
        )

    def ended(self, serial, frame, exception=None, done=None):
        """Before the end event of a frame in `self.tops`; `done`, a moment before it, on the monitoring engine."""
        task = self.tops.pop(frame, None)
        self.by_task.pop(task, None)
        error = self.cancelled_error
        if exception is not None and error is not None and isinstance(exception, error):
            self.events.append(
                (8, serial, perf_counter_ns(), 0, _Mark(("asyncio.cancelled", "task cancelled", {})))
            )
        if done is not None and task is not None:
            self.events.append((21, serial, done, task, 0))


# --- start-up -------------------------------------------------------------------


# The collector's variables (src/runner.ts), which a traced child process
# gets too; and the ones meant for this process alone.
_VARIABLES = (
    "PANOPTICON_CHANNEL", "PANOPTICON_SECRET", "PANOPTICON_ENGINE", "PANOPTICON_FILTERS",
    "PANOPTICON_DETAILS", "PANOPTICON_MANUAL", "PANOPTICON_NATIVE", "PANOPTICON_MAX_EVENTS", "PANOPTICON_CLOCK",
    "PANOPTICON_DEBUG", "PANOPTICON_FOLLOW", "PANOPTICON_RUNTIME",
)
_OWN_VARIABLES = ("PANOPTICON_SPAWN", "PANOPTICON_ROOT")
# Set in the process's C environment (never in os.environ) once this
# process records: a second interpreter of the same process (a
# subinterpreter: test.support.run_in_subinterp, _interpreters) builds its
# os.environ from it and imports this file again, and must not start a
# recording of its own (the native module's state is the process's).
_TRACED_MARK = "PANOPTICON_TRACED_PID"


def _hide_variable(env, name, value=None, keep=False):
    """Set (or, with None, remove) `name` in `os.environ` as the program sees it.

    With `keep`, the process's own environment (the C one, which the
    processes it starts inherit) is left as it is: only the mapping the
    program reads changes, so that a Python child finds the collector's
    variables and is traced too.
    """
    if not keep:
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    elif value is None:
        env._data.pop(env.encodekey(name), None)
    else:
        env._data[env.encodekey(name)] = env.encodevalue(value)


def _take_environment():
    """Read our settings and remove every trace of ourselves from what the program sees."""
    env = os.environ
    values = {
        name: env.get(name)
        for name in _VARIABLES + _OWN_VARIABLES + ("PANOPTICON_PYTHONPATH", _TRACED_MARK)
    }
    follow = values["PANOPTICON_FOLLOW"] != "0"
    own_dir = os.path.dirname(os.path.abspath(OWN_FILE))
    spawn = (values["PANOPTICON_SPAWN"] or "").partition(":")
    settings = {
        "channel": values["PANOPTICON_CHANNEL"],
        "secret": values["PANOPTICON_SECRET"],
        "engine": values["PANOPTICON_ENGINE"] or "auto",
        "filters": values["PANOPTICON_FILTERS"],
        "details": values["PANOPTICON_DETAILS"],
        "manual": values["PANOPTICON_MANUAL"] == "1",
        "native": values["PANOPTICON_NATIVE"],
        "max_events": values["PANOPTICON_MAX_EVENTS"] or "",
        "clock": values["PANOPTICON_CLOCK"] or "auto",
        "follow": follow,
        "runtime": _parse_runtime(values["PANOPTICON_RUNTIME"]),
        # Who started this process: the parent's pid and spawn token (see
        # docs/protocol.md, "Processes"); the run's first process has none.
        "parent": None if values["PANOPTICON_ROOT"] == "1" else {
            "pid": int(spawn[0]) if spawn[0].isdigit() else os.getppid(),
            "token": int(spawn[2]) if spawn[2].isdigit() else 0,
        },
        # A child's collector variables, and the directory first on its PYTHONPATH.
        "child_env": [
            os.fsencode("%s=%s" % (name, values[name]))
            for name in _VARIABLES if values[name] is not None
        ],
        "private_dir": os.fsencode(own_dir),
        "traced_pid": values[_TRACED_MARK],
    }
    _hide_variable(env, _TRACED_MARK, keep=True)
    for name in _VARIABLES + ("PANOPTICON_PYTHONPATH",):
        _hide_variable(env, name, keep=follow)
    for name in _OWN_VARIABLES:
        _hide_variable(env, name)  # for this process alone: its children get their own
    _hide_variable(env, "PYTHONPATH", values["PANOPTICON_PYTHONPATH"], keep=follow)
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


def _forget_sitecustomize():
    """At the program's first line: the `sitecustomize` entry this file had to
    leave (the import system looks it up once the module has run) goes, unless
    the user's own sitecustomize took it. The native module does the same."""
    module = sys.modules.get("sitecustomize")
    if getattr(module, "__file__", None) == OWN_FILE:
        del sys.modules["sitecustomize"]


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


def _engine_name(requested, manual):
    """The engine to record with: "monitoring" or "setprofile"."""
    if manual:
        # Recording is switched on and off per thread: sys.monitoring's
        # events are process-wide, a profile function is per thread.
        return "setprofile"
    if requested in ("auto", "monitoring"):
        if MonitoringEngine.available() is not None:
            return "monitoring"
        if requested == "monitoring":
            if sys.version_info < (3, 12):
                _warn("the monitoring engine needs Python 3.12 or newer: using setprofile")
            else:
                _warn("the sys.monitoring tool ids 3 and 4 are taken: using setprofile")
    return "setprofile"


def _max_events(text):
    try:
        return max(int(text), 0) if text else 0
    except ValueError:
        _warn("ignoring PANOPTICON_MAX_EVENTS=%r: not a whole number" % text)
        return 0


def _start():
    settings = _take_environment()
    _chain_to_user_sitecustomize()
    if not settings["channel"]:
        return
    pid = str(os.getpid())
    if settings["traced_pid"] == pid:
        # Another interpreter of a process that records already: its code is
        # not recorded (docs/reliability.md, "Known limitations").
        return
    os.putenv(_TRACED_MARK, pid)
    try:
        filters = _parse_filters(settings["filters"])
    except ValueError as error:
        _warn("ignoring the filters (%s): recording everything" % error)
        filters = _parse_filters("")
    try:
        details = _parse_details(settings["details"])
    except ValueError as error:
        _warn("ignoring the details (%s): recording the calls only" % error)
        details = _parse_details("")
    manual = settings["manual"]
    engine = _engine_name(settings["engine"], manual)
    # Exceptions: on where they cost little (sys.monitoring calls back only
    # when one is raised or handled); with the tracing hook before 3.12,
    # only when asked for. Not in manual recording.
    on = details["exceptions"]
    details["exceptions"] = (engine == "monitoring" if on is None else on) and not manual
    if on and manual:
        _warn("--exceptions is not recorded with --manual: recording the calls only")
    elif on and engine == "setprofile" and sys.version_info >= (3, 12):
        _warn("--exceptions needs the monitoring engine on Python 3.12+: recording the calls only")
        details["exceptions"] = False
    # Lines: sys.monitoring's LINE on 3.12+, the tracing hook before; like
    # exceptions, not in manual recording.
    if details["lines"] and manual:
        _warn("--lines is not recorded with --manual: recording the calls only")
        details["lines"] = []
    elif details["lines"] and engine == "setprofile" and sys.version_info >= (3, 12):
        _warn("--lines needs the monitoring engine on Python 3.12+: recording the calls only")
        details["lines"] = []
    settings["details"] = details
    native = None
    if settings["native"]:
        try:
            native = _load_native(settings["native"])
        except Exception as error:
            _warn(
                "cannot load the native collector %s (%s): recording with the Python collector, "
                "which costs several times more" % (settings["native"], error)
            )
    if native is not None:
        _start_native(native, settings, filters, engine, manual)
    else:
        _start_python(settings, filters, engine, manual)
    # `import panopticon` in the program gets this module, recording as it is.
    sys.modules["panopticon"] = sys.modules[__name__]


def _start_native(native, settings, filters, engine, manual):
    try:
        native.open(settings["channel"])
    except OSError as error:
        _warn("cannot connect to the converter (%s): the program runs untraced" % error)
        return
    native.configure(
        engine,
        OWN_FILE,
        filters["include"],
        filters["exclude"],
        _stdlib_dirs() if filters["exclude_stdlib"] else None,
        filters["c_calls"],
        _max_events(settings["max_events"]),
        settings["clock"],
    )
    details = settings["details"]
    readable = native.details(
        details["exceptions"], details["repr"], details["args"], details["returns"], details["lines"]
    )
    if details["args"] and not readable:
        _warn(
            "--args needs the interpreter's internal headers (internal/pycore_frame.h) to build "
            "the native collector on Python 3.11+: recording no arguments"
        )
    _new_serial()  # the main thread is 1, in the native module too
    # The runtime's records, --cpu-time among them, are not made under --manual.
    thread_time = settings["runtime"]["thread_time"] and not manual
    native.send(
        _hello_line(engine, "native", settings["secret"], native.clock(), native.now(),
                    settings["parent"], thread_time=thread_time)
    )
    if not manual:
        runtime = settings["runtime"]
        native.runtime(
            _import_quietly("gc").callbacks if runtime["gc"] else None,
            runtime["cpu_counters"],
            runtime["tasks"],
            thread_time,
        )
    _session_state.attach(None, NativeEngine(native, engine), manual, native=native)

    def finish():
        _session_state.native_finished = True
        native.finish("exit")

    # Registered first, so that it runs last: after the program's own exit
    # handlers and after non-daemon threads were joined.
    _at_exit(finish)
    os._exit = native.wrap_exit(os._exit)
    if hasattr(os, "fork"):
        fork, forkpty = native.wrap_fork(os.fork, getattr(os, "forkpty", None))
        os.fork = fork
        if forkpty is not None:
            os.forkpty = forkpty
    native.follow(os, settings["child_env"] if settings["follow"] else None, settings["private_dir"])

    def after_fork_child():
        # A forked child is a process of its own: with following, it gets a
        # stream of its own (docs/protocol.md, "Processes").
        hello = None
        if settings["follow"]:
            hello = _hello_line(
                engine, "native", settings["secret"], native.clock(), native.now(),
                {"pid": os.getppid(), "token": native.fork_token()}, native.current_serial(),
                thread_time=thread_time,
            )
            # Before the new stream starts, which would show the call.
            os.putenv(_TRACED_MARK, str(os.getpid()))
        native.after_fork_child(hello)

    _watch_forks(after_fork_child, native.after_fork_parent, native.before_fork)
    native.start(manual)
    _debug("recording with the native collector (%s engine%s)" % (engine, ", manual" if manual else ""))


def _start_python(settings, filters, engine_name, manual):
    try:
        socket = _import_quietly("_socket")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(settings["channel"])
    except OSError as error:
        _warn("cannot connect to the converter (%s): the program runs untraced" % error)
        return
    recorder = Recorder(sock, None, Filters(filters), max_events=_max_events(settings["max_events"]))
    recorder.socket_module = socket
    details = settings["details"]
    if details["exceptions"]:
        recorder.exceptions = Exceptions(recorder, details["repr"])
    if details["args"] and not ARGS_READABLE:
        _warn(
            "--args needs the native collector before Python 3.13 (the Python collector would "
            "have to read frame.f_locals, which changes the frame there): recording no arguments"
        )
    if details["args"] or details["returns"]:
        recorder.values = Values(recorder, details["args"], details["returns"], details["repr"])
    if details["lines"]:
        recorder.lines = Lines(details["lines"])
    if engine_name == "monitoring":
        engine = MonitoringEngine(recorder, MonitoringEngine.available())
    else:
        engine = ProfileEngine(recorder)
    recorder.engine = engine.name
    _new_serial()
    # The runtime's records, --cpu-time among them, are not made under --manual.
    recorder.thread_time = settings["runtime"]["thread_time"] and not manual
    recorder.write(_hello_line(engine.name, "python", settings["secret"], parent=settings["parent"],
                               thread_time=recorder.thread_time))
    if not manual:
        recorder.runtime = _Runtime(recorder, settings["runtime"])
        if settings["runtime"]["tasks"]:
            recorder.tasks = _Tasks(recorder)
    if not manual:
        recorder.announce_thread(1, "MainThread")
    _session_state.attach(recorder, engine, manual)
    recorder.on_close = engine.stop
    if engine.name == "setprofile":
        _guard.watch(engine)

    def finish(reason="exit"):
        if recorder.closed:
            return
        try:
            _guard.stand_down()
            engine.check_at_exit()
            engine.silence()
            engine.stop()
            if recorder.runtime is not None:
                recorder.runtime.stop()
            recorder.finish(reason)
        except Exception as error:
            _warn("could not finish the trace: %s" % error)

    real_exit = os._exit

    def exit_now(*args, **kwargs):
        # os._exit skips atexit: send what was recorded first. A call that
        # os._exit may refuse goes straight to it, for its own error. The
        # test calls no function that recording would see (no len(), no
        # isinstance()): its events would land in the program's trace.
        if args and not args[1:] and not kwargs and type(args[0]) in (int, bool):
            engine.silence()
            finish("os._exit")
        real_exit(*args, **kwargs)

    for attribute in ("__name__", "__qualname__", "__doc__", "__module__"):
        setattr(exit_now, attribute, getattr(real_exit, attribute, None))
    exit_now.__wrapped__ = real_exit
    os._exit = exit_now

    def before_fork():
        # The spawn event, inside the posix.fork call (docs/protocol.md,
        # "Processes"); its token goes to the child.
        serial = _current_serial()
        if settings["follow"] and not recorder.closed and serial:
            recorder.spawns += 1
            fork_token[0] = recorder.spawns
            recorder.events.append((14, serial, _now(), 0, recorder.spawns))

    fork_token = [0]

    def forget_in_child():
        # A forked child must not write into the parent's stream. With
        # following, it gets a stream of its own; without, none, and the
        # converter is not kept waiting for the parent's to close.
        try:
            recorder.sock.close()
        except Exception:
            pass
        if settings["follow"] and not recorder.closed:
            try:
                sock = recorder.socket_module.socket(
                    recorder.socket_module.AF_UNIX, recorder.socket_module.SOCK_STREAM
                )
                sock.connect(settings["channel"])
                hello = _hello_line(
                    engine.name, "python", settings["secret"],
                    parent={"pid": os.getppid(), "token": fork_token[0]},
                    main_thread=_current_serial(), thread_time=recorder.thread_time,
                )
                # Everything this frame calls is asked before the new stream
                # starts: the stream does not know this frame (it began in
                # the parent's), so a C call made here after it would be
                # the child's first slice rather than ours, hidden.
                serial = _current_serial()
                name = _threading_name(_thread.get_ident())
                os.putenv(_TRACED_MARK, str(os.getpid()))
                recorder.start_over(sock, hello)
                recorder.announce_thread(serial, name)
                return
            except OSError as error:
                _warn("cannot connect the forked process %d to the converter (%s): it runs "
                      "untraced" % (os.getpid(), error))
        recorder.closed = True
        try:
            engine.stop()
        except Exception:
            pass

    def after_fork_parent():
        if not settings["follow"]:
            _mark_fork()

    # Registered first, so that it runs last: after the program's own exit
    # handlers and after non-daemon threads were joined. From C (atexit), so
    # switching recording off there records no event.
    _at_exit(finish)
    _watch_forks(forget_in_child, after_fork_parent, before_fork)
    _follow_processes(settings, recorder, finish)
    engine.start(manual)
    _debug("recording with the Python collector (%s engine%s)" % (engine.name, ", manual" if manual else ""))


# --- following processes, in the Python collector -----------------------------------
#
# The native collector does the same in C (native/panopticon_native.c,
# "follow"). The wrappers are this file's code: the converter hides their
# frames, and the C calls they make, so the trace shows the program's call
# of os.posix_spawn and the rest as if it were direct.


def _with_collector_variables(entries, settings, token):
    """`entries` (a list of bytes "NAME=VALUE") with the collector's variables
    in, for a Python child to be traced: the run's settings, `PANOPTICON_SPAWN`
    (this process and `token`), the private directory first on PYTHONPATH and
    the child's own PYTHONPATH in PANOPTICON_PYTHONPATH."""
    private = settings["private_dir"]
    out = []
    user_path = None
    for entry in entries:
        name, _, value = entry.partition(b"=")
        if name == b"PYTHONPATH":
            # This process's C environment has the private directory first.
            if value == private:
                continue
            if value.startswith(private + b":"):
                value = value[len(private) + 1:]
            user_path = value
        elif not name.startswith(b"PANOPTICON_"):
            out.append(entry)
    out.extend(settings["child_env"])
    out.append(b"PANOPTICON_SPAWN=%d:%d" % (os.getpid(), token))
    out.append(b"PYTHONPATH=" + private + (b":" + user_path if user_path else b""))
    if user_path is not None:
        out.append(b"PANOPTICON_PYTHONPATH=" + user_path)
    return out


def _environment_entries(env):
    """An `env` argument (a mapping of str or bytes, or None for this
    process's own) as a list of bytes, and a function that turns such a list
    back into the kind of mapping it was."""
    if env is None:
        env = os.environ
    as_str = False
    entries = []
    for key, value in env.items():
        if isinstance(key, str) and isinstance(value, str):
            as_str = True
            entries.append(os.fsencode(key) + b"=" + os.fsencode(value))
        elif isinstance(key, bytes) and isinstance(value, bytes):
            entries.append(key + b"=" + value)
        else:
            return None, None  # the real function refuses it, with its own message

    def mapping(entries):
        pairs = (entry.partition(b"=") for entry in entries)
        if as_str:
            return {os.fsdecode(k): os.fsdecode(v) for k, _, v in pairs}
        return {k: v for k, _, v in pairs}

    return entries, mapping


def _follow_processes(settings, recorder, finish):
    """Wrap what starts a process, for the Python collector (see the native
    collector's `follow`): os.execv and os.execve end the stream first (the
    new program, a Python one, sends its own); os.posix_spawn, os.posix_spawnp
    and, once subprocess is imported, _posixsubprocess.fork_exec record a
    `spawn` event and give the child the collector's variables with its token."""

    def spawn_token():
        serial = _current_serial()
        if not settings["follow"] or recorder.closed or not serial:
            return 0
        recorder.spawns += 1
        recorder.events.append((14, serial, _now(), 0, recorder.spawns))
        return recorder.spawns

    def wrap(module, name, make):
        real = getattr(module, name, None)
        if real is None:
            return
        wrapper = make(real)
        for attribute in ("__name__", "__qualname__", "__doc__", "__module__"):
            setattr(wrapper, attribute, getattr(real, attribute, None))
        wrapper.__wrapped__ = real
        setattr(module, name, wrapper)

    def exec_will_run(path):
        # An exec that fails raises and the program goes on: only one that
        # can succeed ends the stream.
        try:
            return os.access(path, os.X_OK)
        except (TypeError, ValueError):
            return False

    def make_execv(real):
        def execv(path, argv):
            if exec_will_run(path):
                finish("exec")
                # The new program, in this process, records again.
                os.unsetenv(_TRACED_MARK)
            return real(path, argv)
        return execv

    def make_execve(real):
        def execve(path, argv, env):
            if settings["follow"]:
                entries, mapping = _environment_entries(env)
                if entries is not None:
                    env = mapping(_with_collector_variables(entries, settings, 0))
            if exec_will_run(path):
                finish("exec")
            return real(path, argv, env)
        return execve

    def make_spawn(real):
        def posix_spawn(path, argv, env, *args, **kwargs):
            token = spawn_token()
            if settings["follow"]:
                entries, mapping = _environment_entries(env)
                if entries is not None:
                    env = mapping(_with_collector_variables(entries, settings, token))
            return real(path, argv, env, *args, **kwargs)
        return posix_spawn

    def make_fork_exec(real):
        # Its sixth argument, in every version, is the child's environment:
        # a list of bytes, or None for this process's own (the C one).
        def fork_exec(*args):
            token = spawn_token()
            if settings["follow"] and len(args) > 5:
                given = args[5]
                if given is None:
                    given = _environment_entries(None)[0] or []
                args = args[:5] + (_with_collector_variables(list(given), settings, token),) + args[6:]
            return real(*args)
        return fork_exec

    wrap(os, "execv", make_execv)
    wrap(os, "execve", make_execve)
    wrap(os, "posix_spawn", make_spawn)
    wrap(os, "posix_spawnp", make_spawn)
    if not settings["follow"] or not hasattr(sys, "addaudithook"):
        return
    wrapped = []

    def wrap_fork_exec():
        wrapped.append(True)
        import _posixsubprocess
        wrap(_posixsubprocess, "fork_exec", make_fork_exec)

    if "subprocess" in sys.modules or "multiprocessing" in sys.modules:
        wrap_fork_exec()
        return

    def on_import(event, args):
        # subprocess (or multiprocessing) is being imported: its
        # _posixsubprocess, which it imports next, gets the wrapper first.
        if not wrapped and event == "import" and args[0] in ("subprocess", "multiprocessing"):
            wrap_fork_exec()

    sys.addaudithook(on_import)


# Under the `panopticon` command this file is the interpreter's
# `sitecustomize`; imported as `panopticon` (the file `panopticon
# python-module` writes), it only offers the API.
if __name__ == "sitecustomize":
    _start()
