"""Checks of the collector's own pieces against the standard library, run by
tests/collector_test.ts in each interpreter:

    python collector_checks.py COLLECTOR NATIVE FIXTURES_DIR

COLLECTOR is collector.py (imported as a module, which starts nothing),
NATIVE the native module built for this interpreter. Prints one JSON
object: for each check, a list of what differed (empty when all agree).
"""
import dis
import fnmatch
import importlib.util
import json
import sys
import _imp

collector_path, native_path, fixtures = sys.argv[1:4]
spec = importlib.util.spec_from_file_location("panopticon_under_test", collector_path)
collector = importlib.util.module_from_spec(spec)
spec.loader.exec_module(collector)


class Spec:
    name = "_panopticon_native"
    origin = native_path


native = _imp.create_dynamic(Spec)
_imp.exec_dynamic(native)

failures = {}

# The opcodes collector.py hard-codes (it does not import dis).
wanted = (dis.opmap["YIELD_VALUE"], dis.opmap.get("YIELD_FROM"), dis.opmap.get("RESUME"))
got = (collector._YIELD_VALUE, collector._YIELD_FROM, collector._RESUME)
failures["opcodes"] = [] if wanted == got else ["dis says %r, collector.py %r" % (wanted, got)]

# Both glob matchers against fnmatch.fnmatchcase.
patterns = ["*", "a*", "*.py", "*/src/*.py", "?", "a?c", "[abc]", "[!abc]", "[a-c]x", "[]]",
            "[!]]", "[", "a[", "[a-", "*[0-9]", "Handler.*", "*.<locals>.*", "caf\u00e9*", "**a",
            "a*b*c", "\u00e9?"]
texts = ["", "a", "abc", "x.py", "/x/src/y.py", "b", "d", "]", "[", "a[", "ax", "bx", "dx", "x9",
         "Handler.get", "f.<locals>.g", "caf\u00e9s", "aaa", "axbxc", "\u00e9\u00e9", "a-", "[a-"]
differ = failures["glob"] = []
for pattern in patterns:
    for text in texts:
        expected = fnmatch.fnmatchcase(text, pattern)
        for name, match in (("python", collector._glob_match), ("native", native.glob_match)):
            if match(pattern, text) != expected:
                differ.append("%s: %r against %r: %r, fnmatch %r" % (name, pattern, text,
                                                                      not expected, expected))

# The JSON writer, against json.loads.
values = [None, True, False, 0, -7, 2 ** 70, 1.5, float("nan"), float("inf"), "", "a\"b\\c\n\t\x00\x1f",
          "caf\u00e9 \U0001f600", "\ud800 lone", [1, [2, {"k": "v"}]], {"a": {"b": []}}, (1, 2)]
bad = failures["json"] = []
for value in values:
    text = collector._json(value)
    back = json.loads(text)
    expected = value
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        expected = repr(value)
    elif isinstance(value, tuple):
        expected = list(value)
    elif isinstance(value, str) and "\ud800" in value:
        expected = value.replace("\ud800", "\ufffd")
    if back != expected:
        bad.append("%r wrote %s" % (value, text))

# The native encoder writes the shared fixture's batch frames byte for byte.
stream = open(fixtures + "/native.stream", "rb").read()
mismatches = failures["batch"] = []
for frame in json.load(open(fixtures + "/native.events.json")):
    mine = native.encode_batch(frame["ts"], frame["thread"], [tuple(e) for e in frame["events"]])
    theirs = stream[frame["offset"]:frame["offset"] + frame["length"]]
    if mine != theirs:
        mismatches.append("frame after line %d: %s, fixture %s" % (frame["line"], mine.hex(), theirs.hex()))

print(json.dumps(failures))
