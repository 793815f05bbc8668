"""Code run in a subinterpreter, as test.support.run_in_subinterp does
(test_atexit, test_threading): the subinterpreter imports sitecustomize
too, and must not start a recording of its own nor disturb this one."""
import _testcapi


def before():
    return "before"


print(before())
status = _testcapi.run_in_subinterp("import os; print('in the subinterpreter', 'PANOPTICON_TRACED_PID' in os.environ)")
print("subinterpreter status", status)


def after():
    return "after"


print(after())
