"""The program starts a Python child and exits at once, leaving it running."""
import subprocess
import sys

LATE = "import time\ndef late():\n    time.sleep(1.5)\n    print('late child', flush=True)\nlate()"

subprocess.Popen([sys.executable, "-c", LATE])
print("parent leaves")
