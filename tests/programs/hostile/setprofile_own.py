"""The program installs its own profile function in the middle of its run,
and relies on it seeing its calls."""
import sys

seen = []


def own_profiler(frame, event, arg):
    if event == "call":
        seen.append(frame.f_code.co_name)


def before():
    return 1


def after():
    return 2


def main():
    before()
    sys.setprofile(own_profiler)
    after()
    sys.setprofile(None)
    print("own profiler saw:", seen)


main()
