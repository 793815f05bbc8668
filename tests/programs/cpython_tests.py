"""Runs CPython test modules as `python -m test` runs them, one after the
other in this process, and writes each test's outcome to a file, one JSON
object a line, for tests/_cpython_tests.ts to compare a plain run with a
traced one.

    python cpython_tests.py RESULTS MODULE...

MODULE is a dotted name (`test.test_frame`). A module that defines
`test_main()` and no `load_tests()` (3.8-3.10: test_generators, test_gc,
test_pickle...) is run through its `test_main()`, as regrtest does, with
support.run_unittest's and support.run_doctest's suites run here; any other
is loaded as `python -m unittest MODULE` loads it.

The lines: `{"id": ..., "status": ...}` per test as it ends (status: ok,
fail, error, skip, xfail, xpass; a test with a failing subtest is a fail or
an error, what failed in `detail`), then `{"done": true, "run": N}` once
every module has run. A run cut short (a crash, a kill, `os._exit`) has no
`done` line. Only this process writes: a child that a test forks is left
out, and a child that multiprocessing starts with `spawn` or `forkserver`
imports this file as `__mp_main__`, which runs nothing.

As `python -m test` does without `-u`, no resource (network, cpu,
largefile...) is enabled: those tests are skipped in both runs.
"""

import json
import os
import sys
import unittest


def _last_line(err):
    kind, value = err[0], err[1]
    try:
        text = str(value).strip().splitlines()
    except Exception:
        text = []
    return "%s: %s" % (kind.__name__, text[-1][:300] if text else "")


class Results(object):
    """The results file, written by the process that opened it alone."""

    def __init__(self, path):
        self.pid = os.getpid()
        self.out = open(path, "w", encoding="utf-8")
        self.run = 0
        self.failed = False

    def write(self, record):
        if os.getpid() == self.pid:
            self.out.write(json.dumps(record) + "\n")
            self.out.flush()


class Result(unittest.TextTestResult):
    results = None  # the Results, set before a run
    _test = None  # the test between startTest and stopTest

    def startTest(self, test):
        super().startTest(test)
        self._test = test
        self._status = "ok"
        self._detail = []

    def _outside(self, test, status, detail):
        # setUpClass, setUpModule, their tearDowns, a skipped module: no
        # startTest came.
        if test is self._test:
            return False
        self.results.write({"id": test.id(), "status": status, "detail": detail})
        return True

    def addFailure(self, test, err):
        super().addFailure(test, err)
        if not self._outside(test, "fail", _last_line(err)):
            self._status = "fail"
            self._detail.append(_last_line(err))

    def addError(self, test, err):
        super().addError(test, err)
        if not self._outside(test, "error", _last_line(err)):
            self._status = "error"
            self._detail.append(_last_line(err))

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            if self._status not in ("fail", "error"):
                self._status = "fail" if issubclass(err[0], test.failureException) else "error"
            self._detail.append("%s: %s" % (subtest._subDescription(), _last_line(err)))

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        if not self._outside(test, "skip", str(reason)[:300]):
            self._status = "skip"
            self._detail.append(str(reason)[:300])

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self._status = "xfail"

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self._status = "xpass"

    def stopTest(self, test):
        super().stopTest(test)
        record = {"id": test.id(), "status": self._status}
        if self._detail:
            record["detail"] = " | ".join(self._detail)[:2000]
        self.results.write(record)
        self._test = None


def _run_suite(results, suite):
    Result.results = results
    result = unittest.TextTestRunner(resultclass=Result, verbosity=0).run(suite)
    results.run += result.testsRun
    results.failed = results.failed or not result.wasSuccessful()


def _run_through_test_main(results, module, support):
    """Run `module.test_main()`, its suites and doctests run by _run_suite."""
    import doctest

    def run_unittest_suite(suite):
        _run_suite(results, suite)

    def run_doctest(module, verbosity=None, optionflags=0):
        _run_suite(results, doctest.DocTestSuite(module, optionflags=optionflags))
        return 0, 0

    saved = support._run_suite, support.run_doctest
    support._run_suite, support.run_doctest = run_unittest_suite, run_doctest
    try:
        module.test_main()
    except Exception as error:
        results.write({"id": module.__name__ + ".test_main", "status": "error",
                       "detail": _last_line((type(error), error))})
        results.failed = True
    finally:
        support._run_suite, support.run_doctest = saved


def main(path, names):
    import importlib

    results = Results(path)
    try:
        from test import support
    except ImportError:
        support = None
    if support is not None:
        support.use_resources = []
    for name in names:
        try:
            module = importlib.import_module(name)
        except Exception:
            module = None  # the loader reports the error as a test
        if (
            support is not None
            and hasattr(module, "test_main")
            and not hasattr(module, "load_tests")
            and hasattr(support, "_run_suite")
        ):
            _run_through_test_main(results, module, support)
        else:
            _run_suite(results, unittest.defaultTestLoader.loadTestsFromName(name))
    results.write({"done": True, "run": results.run})
    results.out.close()
    sys.exit(1 if results.failed else 0)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
