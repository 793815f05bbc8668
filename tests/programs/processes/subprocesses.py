"""Python children by subprocess: with this environment, and with one of their own."""
import os
import subprocess
import sys

CHILD = "def in_child():\n    return 6 * 7\nprint('child says', in_child())"

result = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True)
print("first:", result.stdout.strip(), result.returncode)
own = {"PATH": os.environ.get("PATH", ""), "CHILD_ENV": "own"}
result = subprocess.run([sys.executable, "-c", CHILD], env=own, capture_output=True, text=True)
print("second:", result.stdout.strip(), result.returncode)
result = subprocess.run(["/bin/echo", "not python"], capture_output=True, text=True)
print("third:", result.stdout.strip())
