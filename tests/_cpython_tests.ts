/**
 * CPython's own regression tests as the peer suite (DESIGN.md, "The program
 * is unchanged"): the modules, running one under plain `python` and under
 * Panopticon, comparing the two per test, and checking the trace. Used by
 * `tests/cpython_tests_test.ts` (a few fast modules, in CI) and by
 * `bench/cpython_tests.ts` (`deno task cpython-tests`, the whole list).
 *
 * Each run is `tests/programs/cpython_tests.py RESULTS test.MODULE`, which
 * runs the module as `python -m test` would (through `test_main()` where
 * 3.8-3.10 have one, else as `python -m unittest` loads it) and writes one
 * JSON line per test. A traced run is the same command under
 * `deno run -A main.ts --python PY --collector C -o trace.json`.
 *
 * @module
 */

import { join } from "node:path";
import type { TestCollector } from "./_collectors.ts";
import type { TestPython } from "./_pythons.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const MAIN = join(ROOT, "main.ts");
/** The runner script, in both runs. */
export const RUNNER = join(ROOT, "tests", "programs", "cpython_tests.py");

// --- the modules -----------------------------------------------------------------

/** One module of the list. */
export interface CpythonModule {
  /** The module under `test.`: `test_frame`, `test_asyncio.test_tasks`. */
  name: string;
  /** What it exercises, for the table. */
  area: string;
  /** Longer than about 5 s under plain python: left out of `--quick` runs. */
  slow?: boolean;
}

function group(area: string, names: string, slow: string[] = []): CpythonModule[] {
  return names.split(/\s+/).filter(Boolean).map((name) => ({
    name,
    area,
    ...(slow.includes(name) ? { slow: true } : {}),
  }));
}

/**
 * The modules compared, by area. A module absent from an interpreter's
 * `test` package (test_exception_group before 3.11, test_concurrent_futures
 * in some builds) is reported as absent there, not as a difference.
 */
export const CPYTHON_MODULES: readonly CpythonModule[] = [
  ...group(
    "generators, coroutines, context managers",
    `test_generators test_genexps test_generator_stop test_yield_from test_asyncgen
     test_coroutines test_contextlib test_contextlib_async test_with`,
  ),
  ...group(
    "asyncio",
    `test_asyncio.test_tasks test_asyncio.test_futures test_asyncio.test_locks
     test_asyncio.test_queues test_asyncio.test_events test_asyncio.test_pep492
     test_asyncio.test_base_events test_asyncio.test_streams test_asyncio.test_subprocess
     test_asyncio.test_runners test_asyncio.test_taskgroups test_asyncio.test_timeouts
     test_asyncio.test_sock_lowlevel test_asyncio.test_unix_events`,
    ["test_asyncio.test_tasks", "test_asyncio.test_events", "test_asyncio.test_subprocess"],
  ),
  ...group(
    "threads and signals",
    `test_threading test_thread test_threading_local test_threadedtempfile test_threadsignals
     test_queue test_concurrent_futures test_signal test_sched`,
    ["test_threading", "test_queue", "test_concurrent_futures", "test_signal"],
  ),
  ...group(
    "gc, weak references, finalization",
    `test_gc test_finalization test_weakref test_weakset test_atexit`,
  ),
  ...group(
    "frames, tracebacks, exceptions, inspect",
    `test_frame test_traceback test_exceptions test_exception_group test_except_star
     test_exception_variations test_raise test_baseexception test_exception_hierarchy
     test_inspect test_code test_scope test_sys`,
  ),
  ...group(
    "pickle, copy, marshal",
    `test_pickle test_pickletools test_copyreg test_copy test_shelve test_marshal`,
  ),
  ...group(
    "import machinery",
    `test_importlib test_import test_pkgutil test_runpy test_zipimport test_modulefinder
     test_pkg test_threaded_import`,
  ),
  ...group(
    "data structures and the object model",
    `test_collections test_deque test_heapq test_bisect test_dict test_list test_set
     test_tuple test_array test_enum test_dataclasses test_functools test_itertools
     test_operator test_ordered_dict test_struct test_sort test_userdict test_userlist
     test_defaultdict test_dictviews test_context test_types test_typing test_abc test_descr
     test_super test_class test_property test_decorators test_iter test_unittest test_patma
     test_statistics`,
  ),
];

/**
 * Modules not in the list, with the reason: each inspects the tracing
 * hooks themselves (docs/reliability.md lists them).
 */
export const LEFT_OUT: Readonly<Record<string, string>> = {
  test_sys_setprofile: "checks the events sys.setprofile reports, and that nothing else is set",
  test_sys_settrace: "checks the events sys.settrace reports, with and without a profile function",
  test_monitoring: "claims sys.monitoring tool ids and checks every event and callback",
  test_cprofile: "cProfile installs its own profile function (or sys.monitoring tool)",
  test_profile: "profile installs its own profile function",
  test_bdb: "bdb is a tracer: it installs sys.settrace and checks the lines it stops at",
  test_pdb: "pdb is a tracer, on bdb",
  test_trace: "the trace module installs sys.settrace and counts the lines and calls it sees",
};

/** Whether `test.NAME` exists for the interpreter whose standard library is at `lib`. */
export function moduleExists(lib: string, name: string): boolean {
  const path = join(lib, "test", ...name.split("."));
  for (const candidate of [`${path}.py`, join(path, "__init__.py")]) {
    try {
      Deno.statSync(candidate);
      return true;
    } catch {
      // Not this one.
    }
  }
  return false;
}

/** The interpreter's standard library directory (where `os.py` is). */
export function stdlibOf(python: string): string {
  const output = new Deno.Command(python, {
    args: ["-c", "import os; print(os.path.dirname(os.__file__))"],
    stdout: "piped",
    stderr: "null",
  }).outputSync();
  if (!output.success) throw new Error(`Cannot run the Python interpreter ${python}`);
  return new TextDecoder().decode(output.stdout).trim();
}

// --- running a module ---------------------------------------------------------------

/** How a module is run: plainly, or traced with a collector. */
export type RunMode = "plain" | TestCollector;

/** One test's outcome, as the runner wrote it. */
export interface TestOutcome {
  id: string;
  status: "ok" | "fail" | "error" | "skip" | "xfail" | "xpass";
  detail?: string;
}

/** What the trace of a run holds, and what is wrong with it. */
export interface TraceCheck {
  bytes: number;
  /** Events received (`otherData.events`). */
  events?: number;
  /** What is wrong, if anything: each a sentence. */
  problems: string[];
  /** Panopticon's own `panopticon: warning: …` lines. */
  warnings: string[];
}

/** One run of one module. */
export interface ModuleRun {
  mode: RunMode;
  /** Exit status of the command; null when a signal ended it. */
  code: number | null;
  signal: string | null;
  timedOut: boolean;
  seconds: number;
  /** The runner wrote its last line: every test ran. */
  done: boolean;
  tests: Map<string, TestOutcome>;
  /** The last lines of stderr, for the report. */
  stderrTail: string;
  /** Traced runs only. */
  trace?: TraceCheck;
}

/** Options of {@linkcode runModule}. */
export interface RunModuleOptions {
  /** Kill the run after this long. @default 1_800_000 */
  timeoutMs?: number;
  /** Check the trace and delete it. @default true */
  checkTrace?: boolean;
  /** Keep the trace here instead of deleting it. */
  keepTraceAs?: string;
}

/** `python RUNNER results test.MODULE`, plainly or under Panopticon, in a fresh directory. */
export async function runModule(
  python: TestPython,
  module: string,
  mode: RunMode,
  options: RunModuleOptions = {},
): Promise<ModuleRun> {
  const dir = await Deno.makeTempDir({ prefix: "panopticon-cpython-" });
  try {
    const results = join(dir, "results.jsonl");
    const trace = join(dir, "trace.json");
    const program = [RUNNER, results, `test.${module}`];
    const [command, args] = mode === "plain" ? [python.path, program] : [Deno.execPath(), [
      "run",
      "-A",
      MAIN,
      "--python",
      python.path,
      "--collector",
      mode,
      "-o",
      trace,
      ...program,
    ]];
    // Each test's own files (TESTFN) go to a directory of this run's.
    const work = join(dir, "cwd");
    await Deno.mkdir(work);
    const ran = await runCommand(command, args, work, options.timeoutMs ?? 1_800_000);
    const tests = new Map<string, TestOutcome>();
    let done = false;
    let text = "";
    try {
      text = await Deno.readTextFile(results);
    } catch {
      // Nothing written: the run failed before the first test.
    }
    for (const line of text.split("\n")) {
      if (line.trim() === "") continue;
      let record: Record<string, unknown>;
      try {
        record = JSON.parse(line);
      } catch {
        continue; // A line cut short by a kill.
      }
      if (record.done === true) done = true;
      else if (typeof record.id === "string") {
        const outcome = record as unknown as TestOutcome;
        // A test id met twice (a parametrised class loaded twice): the worse outcome.
        const seen = tests.get(outcome.id);
        if (!seen || rank(outcome.status) > rank(seen.status)) tests.set(outcome.id, outcome);
      }
    }
    const run: ModuleRun = {
      mode,
      code: ran.code,
      signal: ran.signal,
      timedOut: ran.timedOut,
      seconds: ran.seconds,
      done,
      tests,
      stderrTail: ran.stderr.split("\n").slice(-40).join("\n"),
    };
    if (mode !== "plain" && (options.checkTrace ?? true)) {
      run.trace = await checkTrace(trace, ran.stderr);
      if (options.keepTraceAs) await Deno.rename(trace, options.keepTraceAs).catch(() => {});
    }
    return run;
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

function rank(status: TestOutcome["status"]): number {
  return ["ok", "skip", "xfail", "xpass", "fail", "error"].indexOf(status);
}

interface Ran {
  code: number | null;
  signal: string | null;
  timedOut: boolean;
  seconds: number;
  stderr: string;
}

/** The process ids below `pid`, deepest last. */
function descendants(pid: number): number[] {
  const found: number[] = [];
  const visit = (parent: number) => {
    let tasks: Deno.DirEntry[] = [];
    try {
      tasks = [...Deno.readDirSync(`/proc/${parent}/task`)];
    } catch {
      return;
    }
    for (const task of tasks) {
      let text = "";
      try {
        text = Deno.readTextFileSync(`/proc/${parent}/task/${task.name}/children`);
      } catch {
        continue;
      }
      for (const child of text.split(/\s+/).filter(Boolean).map(Number)) {
        found.push(child);
        visit(child);
      }
    }
  };
  visit(pid);
  return found;
}

function kill(pid: number, signal: Deno.Signal) {
  try {
    Deno.kill(pid, signal);
  } catch {
    // Gone already.
  }
}

/** Collects a stream's text, up to its end or until `stop` is called. */
function collect(stream: ReadableStream<Uint8Array>) {
  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  const finished = (async () => {
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        chunks.push(value);
      }
    } catch {
      // Cancelled.
    }
  })();
  return {
    finished,
    stop: () => reader.cancel().catch(() => {}),
    text: () => {
      const decoder = new TextDecoder();
      return chunks.map((chunk) => decoder.decode(chunk, { stream: true })).join("") +
        decoder.decode();
    },
  };
}

/**
 * Runs a command to its end, or until `timeoutMs`: then SIGTERM (which
 * Panopticon passes on to the program), and SIGKILL to what is left 10 s
 * later. A test's child that outlives the run and holds the pipes open is
 * not waited for beyond 5 s.
 */
async function runCommand(
  command: string,
  args: string[],
  cwd: string,
  timeoutMs: number,
): Promise<Ran> {
  const start = performance.now();
  const child = new Deno.Command(command, {
    args,
    cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stdout = collect(child.stdout);
  const stderr = collect(child.stderr);
  let timedOut = false;
  const timers: ReturnType<typeof setTimeout>[] = [];
  timers.push(setTimeout(() => {
    timedOut = true;
    const below = descendants(child.pid);
    kill(child.pid, "SIGTERM");
    if (command !== Deno.execPath()) { for (const pid of below) kill(pid, "SIGTERM"); }
    timers.push(setTimeout(() => {
      for (const pid of [...descendants(child.pid), ...below].reverse()) kill(pid, "SIGKILL");
      kill(child.pid, "SIGKILL");
    }, 10_000));
  }, timeoutMs));
  const status = await child.status;
  const seconds = (performance.now() - start) / 1000;
  for (const timer of timers) clearTimeout(timer);
  let grace: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    Promise.all([stdout.finished, stderr.finished]),
    new Promise((wake) => grace = setTimeout(wake, 5_000)),
  ]);
  clearTimeout(grace);
  stdout.stop();
  stderr.stop();
  return {
    code: status.signal === null ? status.code : null,
    signal: status.signal,
    timedOut,
    seconds,
    stderr: stderr.text(),
  };
}

// --- checking the trace ----------------------------------------------------------

/**
 * The checks the end-to-end tests apply to a trace, on a file of any size:
 * it parses as one JSON document (each event line, as the Catapult writer
 * writes one event a line, or the whole file when it is laid out
 * otherwise and small enough); `otherData` says the trace is complete,
 * nothing was dropped and every event recorded arrived; no slice is a
 * frame of the collector (`sitecustomize`).
 */
export async function checkTrace(path: string, stderr = ""): Promise<TraceCheck> {
  const warnings = stderr.split("\n").filter((line) => line.startsWith("panopticon: warning:"));
  let bytes: number;
  try {
    bytes = (await Deno.stat(path)).size;
  } catch {
    const said = stderr.split("\n").filter((line) =>
      line.startsWith("panopticon: ") ||
      line.startsWith("error: ")
    );
    return {
      bytes: 0,
      problems: [`no trace written (${said.join(" / ") || "nothing said"})`],
      warnings,
    };
  }
  const problems: string[] = [];
  let other: Record<string, unknown> | undefined;
  let collectorFrames = 0;
  const look = (event: Record<string, unknown>) => {
    const args = event.args as Record<string, unknown> | undefined;
    if (event.ph === "X" && String(args?.file ?? "").includes("sitecustomize")) collectorFrames++;
  };
  const head = '{"traceEvents":[';
  const file = await Deno.open(path);
  const lines = file.readable.pipeThrough(new TextDecoderStream()).pipeThrough(splitLines());
  let first = true;
  let tail: string | undefined;
  let layout = true;
  for await (const line of lines) {
    if (first) {
      first = false;
      if (line !== head) {
        layout = false;
        break;
      }
      continue;
    }
    if (tail !== undefined) {
      problems.push("text after the end of the trace");
      break;
    }
    if (line.startsWith("]")) {
      tail = line;
      continue;
    }
    try {
      look(JSON.parse(line.endsWith(",") ? line.slice(0, -1) : line));
    } catch {
      problems.push(`not JSON: ${line.slice(0, 120)}`);
      break;
    }
  }
  if (!layout) {
    if (bytes > 256e6) {
      problems.push("laid out other than one event a line, and too large to parse whole");
    } else {
      try {
        const whole = JSON.parse(await Deno.readTextFile(path));
        for (const event of whole.traceEvents ?? []) look(event);
        other = whole.otherData;
      } catch (error) {
        problems.push(`not JSON: ${error}`);
      }
    }
  } else if (tail === undefined) {
    if (problems.length === 0) problems.push("the trace has no end");
  } else {
    try {
      other = JSON.parse(head + tail).otherData;
    } catch (error) {
      problems.push(`the trace's end is not JSON: ${error}`);
    }
  }
  if (problems.length === 0) {
    if (other === undefined) problems.push("no otherData");
    else {
      // The test process itself must be whole. Its children may end abruptly
      // on purpose (a fatal error, a signal: test_sys, test_faulthandler),
      // and their streams are cut short then, as the trace says.
      const processes = Array.isArray(other.processes)
        ? other.processes as { parent: unknown; complete: boolean; reason?: string }[]
        : undefined;
      const root = processes?.find((process) => process.parent === null);
      if (root !== undefined ? root.complete !== true : other.complete !== true) {
        problems.push(`not complete (reason ${root?.reason ?? other.reason})`);
      }
      if (other.dropped !== 0) problems.push(`${other.dropped} events dropped`);
      if (other.events !== other.recorded) {
        problems.push(`${other.recorded} events recorded, ${other.events} received`);
      }
    }
    if (collectorFrames > 0) problems.push(`${collectorFrames} slices of collector frames`);
  }
  const events = typeof other?.events === "number" ? other.events : undefined;
  return { bytes, events, problems, warnings };
}

function splitLines(): TransformStream<string, string> {
  let rest = "";
  return new TransformStream({
    transform(chunk, controller) {
      const parts = (rest + chunk).split("\n");
      rest = parts.pop()!;
      for (const part of parts) controller.enqueue(part);
    },
    flush(controller) {
      if (rest !== "") controller.enqueue(rest);
    },
  });
}

// --- comparing --------------------------------------------------------------------

/** One way a traced run differs from the plain one. */
export interface Difference {
  /** A test id, or what the whole run differs in (`(exit status)`, `(trace)`). */
  id: string;
  plain: string;
  traced: string;
  detail?: string;
}

function describe(run: ModuleRun): string {
  if (run.timedOut) return `timed out after ${run.seconds.toFixed(0)} s`;
  if (run.signal) return `killed by ${run.signal}`;
  return `exit status ${run.code}`;
}

/**
 * How `traced` differs from `plain`: the same tests must run, each with the
 * same outcome; the run must end the same way, with every test run; and
 * its trace must pass {@linkcode checkTrace}.
 */
export function compareRuns(plain: ModuleRun, traced: ModuleRun): Difference[] {
  const differences: Difference[] = [];
  const ids = new Set([...plain.tests.keys(), ...traced.tests.keys()]);
  for (const id of [...ids].sort()) {
    const a = plain.tests.get(id);
    const b = traced.tests.get(id);
    if (a?.status === b?.status) continue;
    differences.push({
      id,
      plain: a?.status ?? "not run",
      traced: b?.status ?? "not run",
      detail: (b?.status === "ok" ? a?.detail : b?.detail) ?? a?.detail,
    });
  }
  if (describe(plain) !== describe(traced) || plain.done !== traced.done) {
    differences.push({
      id: "(the run)",
      plain: describe(plain) + (plain.done ? "" : ", cut short"),
      traced: describe(traced) + (traced.done ? "" : ", cut short"),
      detail: traced.stderrTail.split("\n").slice(-6).join(" / "),
    });
  }
  if (traced.trace && traced.trace.problems.length > 0) {
    differences.push({
      id: "(the trace)",
      plain: "-",
      traced: traced.trace.problems.join("; "),
    });
  }
  return differences;
}

/** The count of each outcome, as `312 ok, 4 skip`. */
export function tally(run: ModuleRun): string {
  const counts = new Map<string, number>();
  for (const test of run.tests.values()) {
    counts.set(test.status, (counts.get(test.status) ?? 0) + 1);
  }
  return [...counts].map(([status, n]) => `${n} ${status}`).join(", ") || "no test";
}

// --- known differences ---------------------------------------------------------------

/**
 * A difference that docs/reliability.md explains ("CPython's own tests"),
 * with the tests it touches: the harness reports them apart, and
 * tests/cpython_tests_test.ts checks their exact shape.
 */
export interface KnownDifference {
  /** The module, as in the list. */
  module: string;
  /**
   * Test ids under `test.<module>.` (`ClearTest.test_clear_locals`), or
   * `(the run)` / `(the trace)` for what the whole run differs in.
   */
  tests: string[];
  collector: TestCollector;
  /** The Python 3 minor versions where it applies. */
  minors: number[];
  /** What the traced run shows, when the plain run shows ok. */
  traced: TestOutcome["status"] | "not run" | "cut short";
  /** It comes with some runs only (it depends on timing or on the garbage collector's moment). */
  sometimes?: boolean;
  /** The cause, in a few words; docs/reliability.md says more. */
  why: string;
}

/** The Python collector on 3.8-3.10: Python keeps a copy of every traced frame's locals. */
const LOCALS_COPY = "f_locals copy (3.8-3.10, Python collector)";
/** The Python collector allocates a tuple per event, which the garbage collector tracks. */
const EVENT_TUPLES = "event tuples seen by gc (Python collector)";
/** A signal raised by C code is handled in the Python collector's next callback. */
const SIGNAL_IN_CALLBACK = "signal handled in a callback (Python collector)";
/** The Python collector's callbacks take stack room (docs/reliability.md, "Known limitations"). */
const RECURSION = "recursion limit (Python collector)";

const OLD = [8, 9, 10];
const ALL = [8, 9, 10, 11, 12, 13];

function locals(module: string, traced: KnownDifference["traced"], tests: string[]) {
  return { module, tests, collector: "python", minors: OLD, traced, why: LOCALS_COPY } as const;
}

/** The differences docs/reliability.md explains, each with its tests. */
export const KNOWN_DIFFERENCES: readonly KnownDifference[] = [
  locals("test_frame", "fail", ["ClearTest.test_clear_locals", "ClearTest.test_clear_refcycles"]),
  locals("test_contextlib", "fail", ["ContextManagerTestCase.test_nokeepref"]),
  locals("test_coroutines", "error", [
    "CoroutineTest.test_fatal_coro_warning",
    "OriginTrackingTest.test_unawaited_warning_when_module_broken",
  ]),
  locals("test_generators", "fail", [
    "FinalizationTest.test_frame_resurrect",
    "FinalizationTest.test_refcycle",
  ]),
  locals("test_code", "fail", [
    "CoExtra.test_free_different_thread",
    "CodeWeakRefTest.test_basic",
  ]),
  locals("test_asyncio.test_futures", "fail", [
    "CFutureTests.test_future_exception_never_retrieved",
    "CFutureTests.test_future_exception_never_retrieved_debug",
    "CFutureTests.test_tb_logger_exception_unretrieved",
    "CSubFutureTests.test_future_exception_never_retrieved",
    "CSubFutureTests.test_future_exception_never_retrieved_debug",
    "CSubFutureTests.test_tb_logger_exception_unretrieved",
  ]),
  locals("test_asyncio.test_base_events", "fail", [
    "BaseEventLoopTests.test_default_exc_handler_coro",
  ]),
  locals("test_weakref", "fail", ["ReferencesTestCase.test_proxy_ref"]),
  // A finalizer's order depends on when the copy lets go: one run in two.
  {
    ...locals("test_weakref", "fail", ["FinalizeTestCase.test_order"]),
    sometimes: true,
  },
  locals("test_deque", "fail", ["TestSubclass.test_weakref"]),
  locals("test_set", "fail", [
    "TestSet.test_weakref",
    "TestSetSubclass.test_weakref",
    "TestSetSubclassWithKeywordArgs.test_weakref",
  ]),
  locals(
    "test_array",
    "fail",
    [
      "Byte",
      "Double",
      "Float",
      "Int",
      "LongLong",
      "Long",
      "Short",
      "Unicode",
      "UnsignedByte",
      "UnsignedInt",
      "UnsignedLongLong",
      "UnsignedLong",
      "UnsignedShort",
    ].map((type) => `${type}Test.test_weakref`),
  ),
  locals("test_functools", "fail", [
    "TestPartialC.test_weakref",
    "TestPartialCSubclass.test_weakref",
  ]),
  locals("test_itertools", "fail", ["TestBasicOps.test_tee"]),
  locals("test_iter", "fail", ["TestCase.test_ref_counting_behavior"]),
  locals("test_super", "fail", ["TestSuper.test_various___class___pathologies"]),
  locals("test_gc", "fail", ["GCTests.test_frame"]),
  {
    module: "test_gc",
    tests: ["GCTests.test_get_objects_arguments"],
    collector: "python",
    minors: ALL,
    traced: "fail",
    why: EVENT_TUPLES,
  },
  {
    module: "test_descr",
    tests: ["ClassPropertiesAndMethods.test_slots"],
    collector: "python",
    minors: ALL,
    traced: "fail",
    why: EVENT_TUPLES,
  },
  {
    module: "test_generators",
    tests: ["SignalAndYieldFromTest.test_raise_and_yield_from"],
    collector: "python",
    minors: ALL,
    traced: "fail",
    why: SIGNAL_IN_CALLBACK,
  },
  {
    module: "test_traceback",
    tests: ["TracebackFormatTests.test_recursive_traceback_cpython_internal"],
    collector: "python",
    minors: OLD,
    traced: "fail",
    sometimes: true,
    why: RECURSION,
  },
];

/** The known differences that apply to one traced run. */
export function knownFor(
  python: TestPython,
  collector: TestCollector,
  module: string,
): KnownDifference[] {
  const minor = Number(python.version.split(".")[1]);
  return KNOWN_DIFFERENCES.filter((k) =>
    k.module === module && k.collector === collector && k.minors.includes(minor)
  );
}

/** The differences of a traced run, split into those known and the rest. */
export interface Classified {
  known: Difference[];
  unexpected: Difference[];
  /** Known differences that did not show, of those that always should. */
  missing: string[];
}

/**
 * Splits `differences` by {@linkcode KNOWN_DIFFERENCES}: a test difference
 * is known when its test is listed with the status the traced run shows;
 * `(the run)` (another exit status) is known when every test difference is
 * and there is one, or when it is listed (a run cut short); `(the trace)`
 * when it is listed.
 */
export function classify(
  python: TestPython,
  collector: TestCollector,
  module: string,
  differences: Difference[],
): Classified {
  const known = knownFor(python, collector, module);
  const listed = (id: string, traced: string) =>
    known.some((k) =>
      k.tests.some((test) => (test.startsWith("(") ? test : `test.${module}.${test}`) === id) &&
      (id.startsWith("(") || k.traced === traced)
    );
  const result: Classified = { known: [], unexpected: [], missing: [] };
  for (const d of differences) {
    if (d.id === "(the run)") continue;
    (listed(d.id, d.traced) ? result.known : result.unexpected).push(d);
  }
  const run = differences.find((d) => d.id === "(the run)");
  if (run) {
    // Another exit status follows from known test differences; a run cut
    // short, or ending so with every test the same, must be listed itself.
    const cutShort = run.traced.endsWith("cut short");
    const explained = result.unexpected.length === 0 &&
      (cutShort || result.known.length === 0 ? listed("(the run)", "cut short") : true) &&
      !/timed out|killed/.test(run.traced);
    (explained ? result.known : result.unexpected).push(run);
  }
  for (const k of known.filter((k) => !k.sometimes)) {
    for (const test of k.tests.filter((t) => !t.startsWith("("))) {
      const id = `test.${module}.${test}`;
      if (!differences.some((d) => d.id === id)) result.missing.push(id);
    }
  }
  return result;
}
