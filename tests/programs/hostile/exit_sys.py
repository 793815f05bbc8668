"""sys.exit(5) from inside a function: SystemExit unwinds every frame."""
import sys


def leave(status):
    print("leaving with", status)
    sys.stderr.write("a line on stderr\n")
    sys.exit(status)


def main():
    leave(5)


main()
print("never printed")
