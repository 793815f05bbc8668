"""Runs a script under cProfile as `python -m cProfile SCRIPT` does, and writes the
call counts it found to OUTPUT as JSON: {"python": {"LINE": n}, "c": {"NAME": n}}, the
functions defined in the script by their first line, and the C functions by cProfile's
name (`<built-in method math.gcd>`).

    python cprofile_counts.py SCRIPT OUTPUT
"""
import cProfile
import io
import json
import os
import pstats
import sys

script = os.path.abspath(sys.argv[1])
output = sys.argv[2]
sys.argv[:] = [script]
sys.path.insert(0, os.path.dirname(script))
with io.open_code(script) as source:
    code = compile(source.read(), script, "exec")
globs = {"__file__": script, "__name__": "__main__", "__package__": None, "__cached__": None}
profiler = cProfile.Profile()
profiler.runctx(code, globs, None)
counts = {"python": {}, "c": {}}
for (file, line, name), (_, calls, _, _, _) in pstats.Stats(profiler).stats.items():
    if file == script:
        counts["python"][str(line)] = calls
    elif file == "~":
        counts["c"][name] = calls
with open(output, "w") as out:
    json.dump(counts, out)
