"""For the filter options: a user callback that the standard library calls
(json.dumps calls encode_point back through its default= hook), a generator
consumed in a loop, and C calls made by user code and by the library."""
import json
import os


class Point:
    def __init__(self, x, y):
        self.x = x
        self.y = y


def encode_point(obj):
    return {"x": obj.x, "y": obj.y}


def numbers(n):
    for i in range(n):
        yield i * i


def outer():
    text = json.dumps({"p": Point(1, 2)}, default=encode_point)
    total = 0
    for value in numbers(3):
        total += value
    return len(text), total


print("result", *outer())
print("panopticon env", sorted(k for k in os.environ if k.startswith("PANOPTICON")))
