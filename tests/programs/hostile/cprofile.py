"""The program profiles part of itself with cProfile (sys.setprofile before
3.12, sys.monitoring's profiler tool id from 3.12 on)."""
import cProfile
import pstats


def work():
    return sum(range(100))


def main():
    profile = cProfile.Profile()
    profile.enable()
    work()
    profile.disable()
    names = sorted(name for (_, _, name) in pstats.Stats(profile).stats)
    print("cProfile saw work:", "work" in names)
    print("after profiling:", work())


main()
