import sys

print("about to exit with 3")
sys.stderr.write("a line on stderr\n")
sys.exit(3)
