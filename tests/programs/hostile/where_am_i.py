"""Copied by the test into a directory with spaces and non-ASCII characters
in its name; prints how Python sees its own path."""
import os
import sys


def where():
    return __file__, sys.argv[0], os.path.basename(os.path.dirname(__file__))


print(*where(), sep="\n")
