"""The program claims sys.monitoring's profiler tool id for itself (as
cProfile does on 3.12+) and relies on its callbacks."""
import sys

monitoring = sys.monitoring
TOOL = monitoring.PROFILER_ID
starts = []


def on_start(code, offset):
    starts.append(code.co_name)


def work():
    return 1


def main():
    monitoring.use_tool_id(TOOL, "other")
    monitoring.register_callback(TOOL, monitoring.events.PY_START, on_start)
    monitoring.set_events(TOOL, monitoring.events.PY_START)
    work()
    monitoring.set_events(TOOL, 0)
    monitoring.register_callback(TOOL, monitoring.events.PY_START, None)
    monitoring.free_tool_id(TOOL)
    print("own tool saw:", starts)


main()
