/**
 * End-to-end tests of `panopticon summary` and `--summary`: a program of
 * many functions, generators, coroutines and async generators, traced on
 * every Python with both collectors, whose call counts must be those of
 * CPython's own profiler (`python -m cProfile`), but where documented:
 * a generator-like frame is one call, its resumptions are slices. The
 * figures are also checked against the trace's own slices, and against
 * each other in every format.
 */
import assert from "node:assert/strict";
import { collectorOptions, COLLECTORS, type TestCollector } from "./_collectors.ts";
import { oldestAndNewest, TEST_PYTHONS, type TestPython } from "./_pythons.ts";
import { runPanopticon, runPython, tempDir } from "./_run.ts";
import { byKey, keptFromTrace, reference } from "./_summary_reference.ts";
import { readTrace } from "./_trace.ts";
import { isGeneratorLike, type SummaryReport } from "../src/summary.ts";
import { summarizeTrace } from "../src/trace_reader.ts";

const PROGRAMS = new URL("./programs/", import.meta.url).pathname;
const MIX = `${PROGRAMS}summary_mix.py`;
const COUNTS = `${PROGRAMS}cprofile_counts.py`;

/** cProfile's counts: by first line for the program's functions, by name for C functions. */
interface Counts {
  python: Record<string, number>;
  c: Record<string, number>;
}

/** cProfile's name of a C function we check, by ours. */
const C_FUNCTIONS: Record<string, string> = {
  "math.gcd": "<built-in method math.gcd>",
  "zlib.crc32": "<built-in method zlib.crc32>",
  print: "<built-in method builtins.print>",
};

async function summaryOf(path: string): Promise<SummaryReport> {
  return (await summarizeTrace((await Deno.open(path)).readable)).report;
}

/** Traces `args` with `python` and `collector` into `output`; returns what Panopticon said. */
async function trace(
  python: TestPython,
  collector: TestCollector,
  output: string,
  args: string[],
  options: string[] = [],
) {
  const outcome = await runPanopticon([
    "--python",
    python.path,
    ...collectorOptions(collector),
    "-o",
    output,
    ...options,
    ...args,
  ]);
  assert.equal(outcome.code, 0, outcome.stderr);
  return outcome;
}

for (const python of TEST_PYTHONS) {
  for (const collector of COLLECTORS) {
    const on = `on Python ${python.version} (${collector} collector)`;

    Deno.test(`summary counts calls as cProfile does ${on}`, async () => {
      const dir = await tempDir();
      try {
        const countsFile = `${dir.path}/counts.json`;
        const profiled = await runPython(python.path, [COUNTS, MIX, countsFile]);
        assert.equal(profiled.code, 0, profiled.stderr);
        const counts = JSON.parse(await Deno.readTextFile(countsFile)) as Counts;
        const output = `${dir.path}/mix.json`;
        const traced = await trace(python, collector, output, [MIX]);
        assert.equal(traced.stdout, profiled.stdout, "the program's output differs");
        const report = await summaryOf(output);

        // Every function of the program, and nothing else from its file.
        const ours = report.functions.filter((f) => f.file === MIX);
        assert.deepEqual(
          ours.map((f) => String(f.line)).sort(),
          Object.keys(counts.python).sort(),
          "the program's functions differ from cProfile's",
        );
        for (const f of ours) {
          // cProfile counts a generator-like frame's every resumption as a
          // call: those are its slices.
          const calls = isGeneratorLike(f.kind) ? f.slices : f.calls;
          assert.equal(
            calls,
            counts.python[String(f.line)],
            `${f.name} (line ${f.line}, ${f.kind})`,
          );
          assert.equal(f.unfinished, 0, `${f.name} unfinished`);
        }
        for (const [name, theirs] of Object.entries(C_FUNCTIONS)) {
          const f = report.functions.find((f) => f.name === name && f.kind === "c_function");
          assert.equal(f?.calls, counts.c[theirs], name);
        }
        // The instances and slices of the program's generator-like frames.
        const figures = (name: string) => {
          const f = ours.find((f) => f.name === name)!;
          return [f.kind, f.calls, f.slices, f.maxSlices];
        };
        assert.deepEqual(figures("count"), ["generator", 2, 9, 5]);
        assert.deepEqual(figures("delegate"), ["generator", 1, 5, 5]);
        assert.deepEqual(figures("accumulate"), ["generator", 1, 4, 4]);
        assert.deepEqual(figures("leaf"), ["coroutine", 8, 16, 2]);
        assert.deepEqual(figures("branch"), ["coroutine", 2, 10, 6]);
        assert.deepEqual(figures("ticks"), ["async_generator", 1, 9, 9]);
        for (const name of ["leaf", "branch", "ticks", "consume", "main"]) {
          const f = ours.find((f) => f.name === name)!;
          assert.ok(f.livedNs! >= f.ranNs!, `${name} lived less than it ran`);
        }

        // Every figure, of every function, as the trace's slices give it.
        assert.deepEqual(byKey(report), reference(keptFromTrace(await readTrace(output))));

        // Exceptions are recorded by default from 3.12: the program's own,
        // each swallowed by its handler.
        const [, minor] = python.version.split(".").map(Number);
        const own = report.exceptions.filter((e) => e.raisedAt.startsWith(`${MIX}:`));
        assert.deepEqual(
          own,
          minor! >= 12
            ? [
              {
                type: "ValueError",
                raisedAt: `${MIX}:42`,
                raised: 3,
                caught: 0,
                swallowed: 3,
                swallowedAt: [`${MIX}:49`],
              },
              {
                type: "KeyError",
                raisedAt: `${MIX}:74`,
                raised: 1,
                caught: 0,
                swallowed: 1,
                swallowedAt: [`${MIX}:76`],
              },
            ]
            : [],
        );
      } finally {
        await dir.remove();
      }
    });
  }
}

for (const python of oldestAndNewest()) {
  const on = `on Python ${python.version}`;

  Deno.test(`summary reads every format to the same figures ${on}`, async (t) => {
    const dir = await tempDir();
    try {
      const json = `${dir.path}/mix.json`;
      const traced = await trace(python, "native", json, [MIX], ["--summary"]);
      const expected = await summaryOf(json);

      await t.step("--summary prints the top rows on stderr after the run's line", () => {
        const lines = traced.stderr.split("\n");
        const wrote = lines.findIndex((line) => line.startsWith("panopticon: wrote "));
        assert.ok(wrote >= 0, traced.stderr);
        assert.match(lines[wrote + 1]!, /^Functions by self time \(top 10 of [\d,]+\):$/);
        assert.match(
          lines[wrote + 2]!,
          /^ {2}calls +total +self +mean +max +kind +function +defined at$/,
        );
        const rows = lines.slice(wrote + 3, wrote + 13);
        assert.equal(rows.length, 10);
        // The same functions as the summary of the trace, in the same order.
        expected.functions.slice(0, 10).forEach((f, i) =>
          assert.ok(rows[i]!.includes(f.name), rows[i])
        );
        assert.ok(traced.stderr.includes("Generators, coroutines and async generators"));
      });

      await t.step("gzipped JSON", async () => {
        const gzip = `${json}.gz`;
        await Deno.writeFile(
          gzip,
          (await Deno.open(json)).readable.pipeThrough(new CompressionStream("gzip")),
        );
        assert.deepEqual(await summaryOf(gzip), expected);
      });

      await t.step("protobuf, gzipped or not, from runs of their own: the same calls", async () => {
        // The program's functions and the C functions it calls itself.
        const counts = (report: SummaryReport) =>
          report.functions
            .filter((f) => f.file === MIX || Object.hasOwn(C_FUNCTIONS, f.name))
            .map((f) => `${f.name}:${f.line ?? ""} ${f.calls} ${f.slices} ${f.maxSlices ?? ""}`)
            .sort();
        for (const name of ["mix.pftrace", "mix.pftrace.gz"]) {
          const path = `${dir.path}/${name}`;
          await trace(python, "native", path, [MIX]);
          const result = await summarizeTrace((await Deno.open(path)).readable);
          assert.deepEqual(
            [result.format, result.gzip, result.warnings],
            ["perfetto", name.endsWith(".gz"), []],
          );
          const { run } = result.report;
          assert.deepEqual(
            [run.python, run.collector, run.engine, run.complete, run.pids.length],
            [expected.run.python, "native", expected.run.engine, true, 1],
          );
          assert.deepEqual(counts(result.report), counts(expected));
        }
      });

      await t.step("the command's --json has the same numbers", async () => {
        const outcome = await runPanopticon(["summary", json, "--json"]);
        assert.equal(outcome.code, 0, outcome.stderr);
        const { format, gzip, warnings, ...report } = JSON.parse(outcome.stdout);
        assert.deepEqual([format, gzip, warnings], ["json", false, []]);
        assert.deepEqual(report, expected);
      });
    } finally {
      await dir.remove();
    }
  });

  Deno.test(`summary --thread counts one thread's slices ${on}`, async () => {
    const dir = await tempDir();
    try {
      const output = `${dir.path}/threads.json`;
      await trace(python, "native", output, [`${PROGRAMS}threads_named.py`]);
      const outcome = await runPanopticon(["summary", output, "--json", "--thread", "worker-1"]);
      assert.equal(outcome.code, 0, outcome.stderr);
      const report = JSON.parse(outcome.stdout) as SummaryReport;
      assert.equal(report.thread, "worker-1");
      const square = report.functions.find((f) => f.name === "square");
      assert.equal(square?.calls, 50);
      assert.equal(report.functions.find((f) => f.name === "<module>"), undefined);
      const tids = new Set(
        report.run.threads.filter((t) => t.name === "worker-1").map((t) => t.tid),
      );
      assert.deepEqual(
        byKey(report),
        reference(keptFromTrace(await readTrace(output)), tids),
      );
      const text = await runPanopticon(["summary", output, "--thread", "worker-1"]);
      assert.match(text.stdout, /^Functions on thread "worker-1" by self time/m);
    } finally {
      await dir.remove();
    }
  });
}
