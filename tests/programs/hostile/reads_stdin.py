"""Reads all of its standard input and reports what it got."""
import hashlib
import sys


def digest(data):
    return hashlib.sha256(data).hexdigest()


data = sys.stdin.buffer.read()
print(len(data), digest(data))
