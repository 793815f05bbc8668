"""The program replaces itself with another Python program (os.execv)."""
import os
import sys


def before():
    print("before exec", flush=True)


before()
os.execv(sys.executable, [sys.executable, "-c", "def after():\n    print('after exec')\nafter()"])
