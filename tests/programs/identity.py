"""Prints what a program can see of how it was started."""
import os
import pickle
import sys


class Point:
    def __init__(self, x, y):
        self.x = x
        self.y = y


print("argv", sys.argv)
print("path0", sys.path[0])
print("name", __name__)
print("file", __file__)
print("main module file", sys.modules["__main__"].__file__)
print("pythonpath", os.environ.get("PYTHONPATH"))
print("panopticon env", sorted(k for k in os.environ if k.startswith("PANOPTICON")))
print("collector on path", any("panopticon" in p for p in sys.path))
restored = pickle.loads(pickle.dumps(Point(1, 2)))
print("pickle", type(restored).__module__, type(restored).__qualname__, restored.x, restored.y)
