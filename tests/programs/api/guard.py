"""The program switches the profile function off inside a trace() block."""
import sys

import panopticon


def before():
    return 1


def after():
    return 2


with panopticon.trace("guard.json"):
    before()
    sys.setprofile(None)
    after()
print("done")
