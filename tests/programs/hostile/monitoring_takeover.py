"""The program claims the sys.monitoring tool id Panopticon records with (4),
uses it, and frees it."""
import sys
m = sys.monitoring
def work(): return 1
def main():
    work()
    m.use_tool_id(4, "mine")
    m.register_callback(4, m.events.PY_START, lambda code, off: None)
    m.set_events(4, m.events.PY_START)
    work()
    m.set_events(4, 0)
    m.free_tool_id(4)
    work()
    print("ok", m.get_tool(4))
main()
