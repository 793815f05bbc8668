/**
 * End-to-end tests of the in-program API (`panopticon.trace()`, `traced`,
 * `instant`, `counter`, `span`), on the oldest and the newest Python
 * present, in the three ways it is used:
 *
 * - under the command with `--manual`: only the blocks and traced calls are
 *   recorded; the trace is checked for the exact set of the program's
 *   functions inside and outside them;
 * - under the command without it: everything is recorded, and the marks are
 *   in the trace too;
 * - in a plain `python` process, with the module `panopticon python-module`
 *   prints: the records go to `panopticon convert` when the command is on
 *   PATH (here a shell script that runs this checkout's `main.ts`), or to an
 *   NDJSON file, converted afterwards with `panopticon convert`.
 *
 * The programs are in `tests/programs/api/`; `checkout.py` is the example
 * of `docs/python-api.md`, whose code blocks `tests/docs_test.ts` runs.
 */
import assert from "node:assert/strict";
import { oldestAndNewest, type TestPython } from "./_pythons.ts";
import { type Outcome, programStderr, runPanopticon, runPython, tempDir } from "./_run.ts";
import { flowChains, readTrace, slices, type Trace, type TraceEvent } from "./_trace.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const PROGRAMS = `${ROOT}tests/programs/api`;

/** The names of the slices of the program's own functions (those in its file), with counts. */
function ownSlices(trace: Trace, file: string): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const slice of slices(trace)) {
    if (slice.args?.file !== file && slice.cat !== "mark") continue;
    counts[slice.name] = (counts[slice.name] ?? 0) + 1;
  }
  return counts;
}

function marks(trace: Trace): TraceEvent[] {
  // The program's marks: not the CPU counters of the runtime (category "cpu").
  return trace.traceEvents.filter((event) =>
    event.ph === "i" || (event.ph === "C" && event.cat !== "cpu")
  );
}

/** The flow chains of slices named `name`, as lists of their lengths. */
function chainLengths(trace: Trace, name: string): number[] {
  return [...flowChains(trace).values()]
    .filter((chain) => chain[0]!.name === name)
    .map((chain) => chain.length);
}

function threadOf(trace: Trace, tid: number): string | undefined {
  const meta = trace.traceEvents.find((event) =>
    event.ph === "M" && event.name === "thread_name" && event.tid === tid
  );
  return meta?.args?.name as string | undefined;
}

/** A directory with the program, `panopticon.py` from `panopticon python-module`, and a shim. */
async function workspace(program: string) {
  const dir = await tempDir();
  await Deno.copyFile(`${PROGRAMS}/${program}`, `${dir.path}/${program}`);
  const module = await runPanopticon(["python-module"]);
  assert.equal(module.code, 0, module.stderr);
  await Deno.writeTextFile(`${dir.path}/panopticon.py`, module.stdout);
  // `panopticon` on PATH: this checkout, run from source.
  await Deno.mkdir(`${dir.path}/bin`);
  await Deno.writeTextFile(
    `${dir.path}/bin/panopticon`,
    `#!/bin/sh\nexec "${Deno.execPath()}" run -A "${ROOT}main.ts" "$@"\n`,
    { mode: 0o755 },
  );
  return dir;
}

const PATH = Deno.env.get("PATH") ?? "/usr/bin:/bin";
/** A PATH without any `panopticon` command. */
const PATH_WITHOUT = PATH.split(":").filter((entry) => {
  try {
    Deno.statSync(`${entry}/panopticon`);
    return false;
  } catch {
    return true;
  }
}).join(":");

/**
 * The ways of running a program, each yielding its traces by file name:
 * under the command with `--manual` and either collector, and in a plain
 * process (the module's own Python recording).
 */
type Way =
  | "manual, native collector"
  | "manual, python collector"
  | "plain, converter on PATH"
  | "plain, NDJSON then convert";
const WAYS: Way[] = [
  "manual, native collector",
  "manual, python collector",
  "plain, converter on PATH",
  "plain, NDJSON then convert",
];

function isManual(way: Way): boolean {
  return way.startsWith("manual");
}

interface Ran {
  outcome: Outcome;
  plain: Outcome;
  traces: (name: string) => Promise<Trace>;
  file: string;
}

async function runWay(python: TestPython, program: string, way: Way): Promise<Ran> {
  const dir = await workspace(program);
  const file = `${dir.path}/${program}`;
  try {
    // The program's behaviour without any recording: the module imported,
    // no trace() block able to write (a read-only directory would be
    // another program); compared on stdout, stderr and status.
    const plain = await runPython(python.path, [file], {
      cwd: dir.path,
      env: { PATH: PATH_WITHOUT },
    });
    for await (const entry of Deno.readDir(dir.path)) {
      if (/\.(json|ndjson)$/.test(entry.name)) await Deno.remove(`${dir.path}/${entry.name}`);
    }
    let outcome: Outcome;
    if (isManual(way)) {
      const collector = way === "manual, native collector" ? "native" : "python";
      outcome = await runPanopticon(
        [
          "--python",
          python.path,
          "--collector",
          collector,
          "--manual",
          "-o",
          `${dir.path}/cli.json`,
          file,
        ],
        { cwd: dir.path },
      );
    } else if (way === "plain, converter on PATH") {
      outcome = await runPython(python.path, [file], {
        cwd: dir.path,
        env: { PATH: `${dir.path}/bin:${PATH}` },
      });
    } else {
      outcome = await runPython(python.path, [file], {
        cwd: dir.path,
        env: { PATH: PATH_WITHOUT },
      });
    }
    const files = new Map<string, Trace>();
    const traces = async (name: string) => {
      const target = isManual(way) ? "cli.json" : name;
      if (way === "plain, NDJSON then convert" && !files.has(target)) {
        const ndjson = `${dir.path}/${target.replace(/\.json$/, ".ndjson")}`;
        const converted = await runPanopticon(["convert", ndjson], { cwd: dir.path });
        assert.equal(converted.code, 0, converted.stderr);
      }
      if (!files.has(target)) files.set(target, await readTrace(`${dir.path}/${target}`));
      return files.get(target)!;
    };
    // Read every trace now: the directory goes away.
    const names = new Set<string>();
    for await (const entry of Deno.readDir(dir.path)) {
      if (entry.name.endsWith(".json")) names.add(entry.name);
      if (entry.name.endsWith(".ndjson")) names.add(entry.name.replace(/\.ndjson$/, ".json"));
    }
    for (const name of names) await traces(name).catch(() => {});
    return {
      outcome,
      plain,
      file,
      traces: (name) => {
        const trace = files.get(isManual(way) ? "cli.json" : name);
        return trace === undefined
          ? Promise.reject(new Error(`no trace ${name}: ${outcome.stderr}`))
          : Promise.resolve(trace);
      },
    };
  } finally {
    await dir.remove();
  }
}

function assertUnchanged(ran: Ran, way: Way): void {
  assert.equal(ran.outcome.code, ran.plain.code, ran.outcome.stderr);
  assert.equal(ran.outcome.stdout, ran.plain.stdout);
  // The NDJSON way says where the records are and how to convert them,
  // as does the plain run it is compared with.
  assert.equal(programStderr(ran.outcome.stderr), programStderr(ran.plain.stderr));
  if (way === "plain, NDJSON then convert") {
    assert.match(ran.outcome.stderr, /panopticon convert \S+\.ndjson -o \S+\.json/);
  }
}

for (const python of oldestAndNewest()) {
  Deno.test(`the in-program API on Python ${python.version}`, async (t) => {
    for (const way of WAYS) {
      await t.step(`${way}: a block, a traced coroutine and marks (checkout.py)`, async () => {
        const ran = await runWay(python, "checkout.py", way);
        assertUnchanged(ran, way);
        assert.match(ran.outcome.stdout, /^total 16 attempts 2$/m);
        const checkout = await ran.traces("checkout.json");
        const retry = await ran.traces("retry.json");
        const expected: Record<string, number> = {
          handle_request: 1,
          load_cart: 1,
          "phase 2": 1,
        };
        if (isManual(way)) expected.retry = 4; // one trace for all
        assert.deepEqual(ownSlices(checkout, ran.file), expected);
        // The span holds the sum, and carries its arguments.
        const [phase] = slices(checkout, "phase 2");
        assert.deepEqual(phase!.args, { items: 3 });
        const [sum] = slices(checkout, "sum");
        assert.ok(sum!.ts >= phase!.ts && sum!.ts + sum!.dur! <= phase!.ts + phase!.dur! + 1e-3);
        assert.deepEqual(
          marks(checkout).map((m) => [m.ph, m.name, m.args]),
          [["i", "cache miss", { key: "cart:42" }], ["C", "queue depth", { value: 3 }]],
        );
        // Every resumption of the coroutine, one flow chain; nothing else of
        // the program, neither before the block nor between resumptions.
        assert.deepEqual(ownSlices(retry, ran.file).retry, 4);
        assert.deepEqual(chainLengths(retry, "retry"), [4]);
        assert.equal(ownSlices(retry, ran.file).background, undefined);
        assert.equal(slices(retry, "asyncio.runners.run").length, 0);
        assert.equal(slices(retry, "run").length, 0);
      });

      await t.step(`${way}: trace() blocks on several threads (threads.py)`, async () => {
        const ran = await runWay(python, "threads.py", way);
        assertUnchanged(ran, way);
        const trace = await ran.traces("threads.json");
        const work = slices(trace, "work");
        assert.deepEqual(work.map((slice) => threadOf(trace, slice.tid)).sort(), ["t1", "t2"]);
        assert.equal(slices(trace, "bystander").length, 0);
        assert.equal(slices(trace, "worker").length, 0, "worker starts before its block");
      });

      await t.step(`${way}: nested blocks, an exception leaving one (nested.py)`, async () => {
        const ran = await runWay(python, "nested.py", way);
        assertUnchanged(ran, way);
        // Re-raised unchanged: the same traceback as without Panopticon,
        // with no frame of ours in it.
        assert.match(ran.outcome.stderr, /^(__main__\.)?Boom: from inside the block$/m);
        assert.doesNotMatch(programStderr(ran.outcome.stderr), /panopticon\.py|sitecustomize/);
        assert.match(ran.outcome.stdout, /^caught Boom from inside the block fails$/m);
        const nested = await ran.traces("nested.json");
        const raised = await ran.traces("raised.json");
        if (isManual(way)) {
          assert.deepEqual(ownSlices(nested, ran.file), { outer: 2, inner: 1, fails: 2 });
        } else {
          assert.deepEqual(ownSlices(nested, ran.file), { outer: 2, inner: 1 });
          assert.deepEqual(ownSlices(raised, ran.file), { fails: 1 });
        }
        const exceptions = marks(raised).filter((m) => m.name === "exception");
        assert.deepEqual(exceptions.at(-1)?.args, {
          exception: "Boom('from inside the block')",
        });
        assert.equal(slices(nested, "after").length, 0);
      });

      await t.step(`${way}: traced generators and coroutines (gens.py)`, async () => {
        const ran = await runWay(python, "gens.py", way);
        assertUnchanged(ran, way);
        const trace = await ran.traces("gens.json");
        assert.deepEqual(ownSlices(trace, ran.file), { numbers: 4, fetch: 2, ticks: 5, total: 1 });
        assert.deepEqual(chainLengths(trace, "numbers"), [4]);
        assert.deepEqual(chainLengths(trace, "fetch"), [2]);
        assert.deepEqual(chainLengths(trace, "ticks"), [5]);
      });

      await t.step(`${way}: a fork inside a block (forks.py)`, async () => {
        const ran = await runWay(python, "forks.py", way);
        assertUnchanged(ran, way);
        assert.equal(ran.outcome.stdout, "block ended\nchild released\ndone\n");
        const trace = await ran.traces("forks.json");
        // Under the command (manual ways), the forked child is followed:
        // it is inside the block too. The plain ways record this process only.
        const followed = isManual(way);
        assert.deepEqual(
          ownSlices(trace, ran.file),
          followed ? { in_child: 1, in_parent: 1 } : { in_parent: 1 },
        );
        if (followed) {
          const pids = new Set(slices(trace).map((slice) => slice.pid));
          assert.equal(pids.size, 2, "the child is a process of its own");
        }
        assert.equal(trace.otherData?.complete, true);
      });

      await t.step(`${way}: the profile function replaced inside a block (guard.py)`, async () => {
        const ran = await runWay(python, "guard.py", way);
        assertUnchanged(ran, way);
        const trace = await ran.traces("guard.json");
        assert.deepEqual(ownSlices(trace, ran.file), { before: 1 });
        assert.deepEqual(
          marks(trace).map((m) => [m.name, m.args]),
          [["recording stopped: profile function replaced", { by: `${ran.file}:17 (<module>)` }]],
        );
        const warnings = ran.outcome.stderr.split("\n").filter((line) =>
          line.startsWith("panopticon: warning: the program replaced the profile function at ")
        );
        assert.equal(warnings.length, 1, ran.outcome.stderr);
      });
    }

    await t.step("without --manual: everything, and the marks too", async () => {
      const dir = await workspace("checkout.py");
      try {
        const output = `${dir.path}/full.json`;
        const outcome = await runPanopticon(
          ["--python", python.path, "-o", output, `${dir.path}/checkout.py`],
          { cwd: dir.path },
        );
        assert.equal(outcome.code, 0, outcome.stderr);
        const trace = await readTrace(output);
        const file = `${dir.path}/checkout.py`;
        assert.deepEqual(ownSlices(trace, file), {
          "<module>": 1,
          background: 1,
          handle_request: 1,
          load_cart: 1,
          "phase 2": 1,
          retry: 4,
        });
        assert.deepEqual(marks(trace).map((m) => m.name), ["cache miss", "queue depth"]);
        // The collector's own frames are followed but never shown.
        for (const slice of slices(trace)) {
          assert.ok(!String(slice.args?.file ?? "").endsWith("sitecustomize.py"), slice.name);
          assert.ok(!["_enter", "_leave", "__enter__", "__exit__"].includes(slice.name));
        }
      } finally {
        await dir.remove();
      }
    });
  });
}
