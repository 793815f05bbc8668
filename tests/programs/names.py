"""Functions, methods and nested functions, for checking slice names."""
import json


def top_level():
    return helper_with_nested()


def helper_with_nested():
    def nested():
        return len([1, 2, 3])

    return nested()


class Shape:
    def area(self):
        return 0

    @staticmethod
    def unit():
        return Shape()

    @classmethod
    def make(cls):
        return cls()

    @property
    def sides(self):
        return 0


class Square(Shape):
    def area(self):
        return super().area() + 1


top_level()
Square().area()
Shape.unit()
Shape.make()
Square().sides
json.dumps({"a": 1})
[].append(1)
