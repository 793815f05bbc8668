/**
 * End-to-end tests of following child processes: programs under
 * `tests/programs/processes/` fork, run multiprocessing pools with every
 * start method, start Python children with subprocess, replace themselves
 * with os.execv, fork a child that execs, lose a child to SIGKILL and leave
 * one running. Each runs on every Python present, with both collectors, and
 * is compared with a plain `python` run:
 *
 * - stdout, stderr (without Panopticon's own lines) and the exit status are
 *   the same;
 * - the trace has one process per traced Python process, each named, the
 *   program's first; the children's own functions are on their processes'
 *   tracks, never on the parent's;
 * - a flow arrow leaves the call that started a child (`posix.fork`, or the
 *   call inside subprocess) and arrives at the child's first slice, where
 *   the collector knows the spawner (docs/reliability.md says where the
 *   Python collector does not);
 * - with `--no-follow`, the children are not traced;
 * - Panopticon warns of nothing but what the test expects (a process
 *   killed, say): a count that does not add up is an event lost or doubled.
 */
import assert from "node:assert/strict";
import { collectorOptions, COLLECTORS, type TestCollector } from "./_collectors.ts";
import { TEST_PYTHONS, type TestPython } from "./_pythons.ts";
import { type Outcome, programStderr, runPanopticon, runPython, tempDir } from "./_run.ts";
import { readTrace, slices, type Trace, type TraceEvent } from "./_trace.ts";

const PROGRAMS = new URL("./programs/processes/", import.meta.url).pathname;
const RUN_LIMIT_MS = 120_000;

interface TracedRun {
  plain: Outcome;
  traced: Outcome;
  trace: Trace;
}

/** Runs `args` plainly and under Panopticon, in a fresh directory each. */
async function traceBoth(
  python: TestPython,
  collector: TestCollector,
  args: string[],
  options: string[] = [],
): Promise<TracedRun> {
  const dir = await tempDir();
  try {
    // A hang (a bug, or a multiprocessing race of the program's own) fails
    // the test rather than holding up the suite.
    const plain = await runPython(python.path, args, { cwd: dir.path, timeoutMs: RUN_LIMIT_MS });
    const output = `${dir.path}/trace.json`;
    const traced = await runPanopticon(
      ["--python", python.path, ...collectorOptions(collector), ...options, "-o", output, ...args],
      { cwd: dir.path, timeoutMs: RUN_LIMIT_MS },
    );
    let trace: Trace;
    try {
      trace = await readTrace(output);
    } catch (error) {
      throw new Error(`no readable trace (${error}); panopticon said:\n${traced.stderr}`);
    }
    return { plain, traced, trace };
  } finally {
    await dir.remove();
  }
}

/** The converter's warning of a process that ended without its stream's end. */
const ABRUPT_END =
  /: the event stream ended without an "end" record \(the program exited abruptly\)/;

/** The program behaves as it does untraced, and Panopticon warns of nothing else. */
function assertUnchanged(run: TracedRun, warnings: RegExp[] = []): void {
  assert.equal(run.traced.code, run.plain.code, run.traced.stderr);
  assert.equal(run.traced.stdout, run.plain.stdout);
  assert.equal(programStderr(run.traced.stderr), run.plain.stderr);
  const unexpected = run.traced.stderr.split("\n").filter((line) =>
    line.startsWith("panopticon: warning:") && !warnings.some((warning) => warning.test(line))
  );
  assert.deepEqual(unexpected, [], "no warning (a count that does not add up is a lost event)");
}

/** The processes of the trace by pid, with their names, the first process first. */
function processes(trace: Trace): Map<number, string> {
  const names = new Map<number, string>();
  const sort = new Map<number, number>();
  for (const event of trace.traceEvents) {
    if (event.ph !== "M") continue;
    if (event.name === "process_name") names.set(event.pid, String(event.args?.name));
    if (event.name === "process_sort_index") sort.set(event.pid, Number(event.args?.sort_index));
  }
  const order = [...names.keys()].sort((a, b) => (sort.get(a) ?? 0) - (sort.get(b) ?? 0));
  return new Map(order.map((pid) => [pid, names.get(pid)!]));
}

/**
 * The slices of the program's function `name`: named `name` in the main
 * module, `__mp_main__.name` in a spawned or forkserver worker (which
 * imports the main module under that name).
 */
function calls(trace: Trace, name: string): TraceEvent[] {
  return slices(trace).filter((slice) =>
    slice.name === name || slice.name === `__mp_main__.${name}`
  );
}

/** The pids of the slices of function `name`. */
function pidsOf(trace: Trace, name: string): Set<number> {
  return new Set(calls(trace, name).map((slice) => slice.pid));
}

/** The flow arrows that join slices of two processes: [from, to]. */
function crossProcessFlows(trace: Trace): [TraceEvent, TraceEvent][] {
  const byId = new Map<string, TraceEvent[]>();
  for (const slice of slices(trace)) {
    if (slice.bind_id === undefined) continue;
    const key = String(slice.bind_id);
    byId.set(key, [...(byId.get(key) ?? []), slice]);
  }
  const flows: [TraceEvent, TraceEvent][] = [];
  for (const chain of byId.values()) {
    const from = chain.find((slice) => slice.flow_out);
    const to = chain.find((slice) => slice.flow_in && slice !== from);
    if (from && to && from.pid !== to.pid) flows.push([from, to]);
  }
  return flows;
}

/** The first process's pid: the one whose slices start earliest. */
function rootPid(trace: Trace): number {
  return [...processes(trace).keys()][0]!;
}

/** The earliest slice of process `pid`. */
function firstSlice(trace: Trace, pid: number): TraceEvent | undefined {
  return slices(trace).filter((slice) => slice.pid === pid && slice.cat !== "panopticon")[0];
}

/** fork_loop.py's calls of `step` in the parent: `work(37 * k % 997)` before each fork. */
const FORK_LOOP_PARENT_STEPS = Array.from({ length: 200 }, (_, k) => 37 * k % 997)
  .reduce((sum, n) => sum + n, 0);

// Every Python present: the start methods and the wrapped calls differ by version.
const PYTHONS = TEST_PYTHONS;

for (const python of PYTHONS) {
  for (const collector of COLLECTORS) {
    const setting = `Python ${python.version}, ${collector} collector`;

    Deno.test(`following processes: a fork (${setting})`, async () => {
      const run = await traceBoth(python, collector, [`${PROGRAMS}forks.py`]);
      assertUnchanged(run);
      const pids = processes(run.trace);
      assert.equal(pids.size, 2, `two processes: ${JSON.stringify([...pids])}`);
      const root = rootPid(run.trace);
      const child = [...pids.keys()].find((pid) => pid !== root)!;
      assert.deepEqual(
        [...pidsOf(run.trace, "child_work")],
        [child],
        "the child's work is the child's",
      );
      assert.deepEqual([...pidsOf(run.trace, "parent_work")], [root]);
      const flows = crossProcessFlows(run.trace);
      assert.equal(flows.length, 1, "one arrow, from the fork to the child");
      const [from, to] = flows[0]!;
      assert.equal(from.name, "posix.fork");
      assert.equal(from.pid, root);
      assert.equal(to.pid, child);
      assert.equal(
        to,
        firstSlice(run.trace, child),
        "the arrow arrives at the child's first slice",
      );
      assert.equal(run.trace.otherData?.complete, true, run.traced.stderr);
    });

    for (const method of ["fork", "spawn", "forkserver"]) {
      Deno.test(`following processes: a multiprocessing pool, ${method} (${setting})`, async () => {
        const run = await traceBoth(python, collector, [`${PROGRAMS}pool.py`, method]);
        // The Python collector's workers end at Pool.terminate() before their
        // stream's end (docs/reliability.md); the native collector's do not.
        assertUnchanged(run, collector === "python" ? [ABRUPT_END] : []);
        const pids = processes(run.trace);
        const root = rootPid(run.trace);
        // Two workers; forkserver adds the server, which forks them. With the
        // Python collector a worker that Pool.terminate() ended before its
        // first batch went may be missing altogether (docs/reliability.md).
        const least = collector === "native" ? 3 : 2;
        assert.ok(pids.size >= least, `the workers are traced: ${JSON.stringify([...pids])}`);
        const squares = pidsOf(run.trace, "square");
        assert.ok(!squares.has(root), "the workers square, not the parent");
        if (collector === "native") {
          // Pool.terminate() ends the workers by SIGTERM: the native
          // collector sends their last batch first.
          assert.equal(calls(run.trace, "square").length, 200, "every square is there");
        } else {
          // The Python collector cannot without a handler the program would
          // see: a worker's unsent events are lost (docs/reliability.md).
          assert.ok(calls(run.trace, "square").length <= 200);
        }
        // Every child came from a call the trace shows. The arrow lands on
        // the child's first slice: a worker that Pool.terminate() ended
        // before it ran a call (a slow start on a busy machine) has none.
        const arrivals = new Set(crossProcessFlows(run.trace).map(([, to]) => to.pid));
        const sliced = new Set(
          run.trace.traceEvents.filter((event) => event.ph === "X").map((event) => event.pid),
        );
        const summaries = JSON.stringify(run.trace.otherData?.processes);
        for (const pid of pids.keys()) {
          if (pid === root || !sliced.has(pid)) continue;
          assert.ok(arrivals.has(pid), `an arrow reaches process ${pid}: ${summaries}`);
        }
        // A worker forked last may be terminated before it runs a call (the
        // other did all the work): it is a process of the trace, cut short.
        // With the Python collector every worker may lose all it recorded
        // (it cannot send at SIGTERM: docs/reliability.md).
        if (collector === "native") assert.ok(sliced.size >= 2, `a worker ran: ${summaries}`);
      });
    }

    Deno.test(`following processes: subprocess children (${setting})`, async () => {
      const run = await traceBoth(python, collector, [`${PROGRAMS}subprocesses.py`]);
      assertUnchanged(run);
      assert.match(run.traced.stdout, /^first: child says 42 0$/m);
      const root = rootPid(run.trace);
      const children = pidsOf(run.trace, "in_child");
      assert.ok(!children.has(root));
      // The child with an environment of its own is traced too.
      assert.equal(children.size, 2, `${[...children]}`);
      assert.equal(processes(run.trace).size, 3, "echo is not a Python process");
      const flows = crossProcessFlows(run.trace);
      assert.deepEqual(
        new Set(flows.map(([, to]) => to.pid)),
        children,
        "an arrow reaches each child",
      );
      for (const [from] of flows) assert.equal(from.pid, root);
    });

    Deno.test(`following processes: os.execv of Python (${setting})`, async () => {
      const run = await traceBoth(python, collector, [`${PROGRAMS}exec.py`]);
      assertUnchanged(run);
      const before = slices(run.trace, "before");
      const after = slices(run.trace, "after");
      assert.equal(before.length, 1);
      assert.equal(after.length, 1, "the new program is traced too");
      assert.equal(after[0]!.pid, before[0]!.pid, "in the same process");
      assert.ok(after[0]!.ts >= before[0]!.ts + (before[0]!.dur ?? 0));
    });

    Deno.test(`following processes: a fork that execs (${setting})`, async () => {
      const run = await traceBoth(python, collector, [`${PROGRAMS}fork_exec.py`]);
      assertUnchanged(run);
      const root = rootPid(run.trace);
      const before = slices(run.trace, "before_exec");
      const after = slices(run.trace, "new_program");
      assert.equal(before.length, 1, "the child's part before the exec");
      assert.equal(after.length, 1, "the program it became");
      assert.notEqual(before[0]!.pid, root);
      assert.equal(after[0]!.pid, before[0]!.pid, "one process, before and after the exec");
      assert.equal(processes(run.trace).size, 2);
      const flows = crossProcessFlows(run.trace);
      assert.deepEqual(
        flows.map(([from, to]) => [from.name, from.pid, to.pid]),
        [["posix.fork", root, before[0]!.pid]],
        "one arrow, from the fork",
      );
      assert.equal(run.trace.otherData?.complete, true, run.traced.stderr);
    });

    Deno.test(`following processes: a child killed by SIGKILL (${setting})`, async () => {
      const run = await traceBoth(python, collector, [`${PROGRAMS}killed_child.py`]);
      // The killed child's stream says so: cut short, its last frame with it.
      assertUnchanged(run, [ABRUPT_END, /the binary frame after line \d+ is incomplete/]);
      assert.equal(run.traced.stdout, "child killed: True\n");
      const root = rootPid(run.trace);
      const doomed = slices(run.trace, "doomed");
      assert.equal(doomed.length, 1, "the child's work up to its death is there");
      assert.notEqual(doomed[0]!.pid, root);
      assert.equal(doomed[0]!.args?.unfinished, true, "and marked unfinished");
      assert.equal(run.trace.otherData?.complete, false, "the trace says a stream was cut short");
      assert.match(
        run.traced.stderr,
        new RegExp(`^panopticon: warning: process ${doomed[0]!.pid}\\b.*`, "m"),
        "the terminal names the process",
      );
    });

    // A child's first events, before its own stream, went into the parent's
    // (counted twice, or a record cut by the parent's writer).
    Deno.test(`following processes: 200 forks in a row (${setting})`, async () => {
      const run = await traceBoth(python, collector, [`${PROGRAMS}fork_loop.py`]);
      assertUnchanged(run);
      const root = rootPid(run.trace);
      const steps = new Map<number, number>();
      for (const slice of calls(run.trace, "step")) {
        steps.set(slice.pid, (steps.get(slice.pid) ?? 0) + 1);
      }
      assert.equal(steps.get(root), FORK_LOOP_PARENT_STEPS, "the parent's own calls, each once");
      steps.delete(root);
      assert.equal(steps.size, 200, "every child is traced");
      assert.deepEqual(new Set(steps.values()), new Set([10]), "each child's 10 calls, once");
    });

    Deno.test(`following processes: 200 forks in a row, --no-follow (${setting})`, async () => {
      const run = await traceBoth(python, collector, [`${PROGRAMS}fork_loop.py`], [
        "--no-follow",
      ]);
      assertUnchanged(run);
      assert.equal(processes(run.trace).size, 1);
      assert.equal(
        calls(run.trace, "step").length,
        FORK_LOOP_PARENT_STEPS,
        "the parent's calls, once",
      );
    });

    Deno.test(`following processes: a child left running (${setting})`, async () => {
      const run = await traceBoth(python, collector, [`${PROGRAMS}left_running.py`]);
      assertUnchanged(run);
      const late = slices(run.trace, "late");
      assert.equal(late.length, 1, "Panopticon waits for the child: nothing is lost");
      assert.notEqual(late[0]!.pid, rootPid(run.trace));
      assert.match(run.traced.stderr, /^panopticon: waiting for 1 traced process/m);
    });

    Deno.test(`following processes: --no-follow (${setting})`, async () => {
      const run = await traceBoth(python, collector, [`${PROGRAMS}pool.py`, "fork"], [
        "--no-follow",
      ]);
      assertUnchanged(run);
      assert.equal(processes(run.trace).size, 1);
      assert.equal(calls(run.trace, "square").length, 0, "the workers are not traced");
      // Each fork says so, inside the posix.fork call that made the worker.
      const marks = run.trace.traceEvents.filter((event) =>
        event.ph === "i" && event.name === "fork: the child process is not traced"
      );
      assert.ok(marks.length >= 2, `a mark at each fork: ${marks.length}`);
    });
  }
}

Deno.test(`following processes: ran on ${PYTHONS.map((p) => p.version).join(", ")}`, () => {
  assert.ok(PYTHONS.length > 0, "no supported Python found");
});
