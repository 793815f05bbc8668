/**
 * CPython's test suite as the peer suite: runs each module of the list
 * (tests/_cpython_tests.ts) under plain `python` and under Panopticon, on
 * each Python present and with both collectors, and compares the two runs
 * per test: the same tests must run, with the same outcome (ok, fail,
 * error, skip, expected failure, unexpected success), and the trace must
 * load (one JSON document, complete, nothing dropped, no collector frame).
 * Prints a table, the differences, and "N same, N differ".
 *
 *     deno task cpython-tests [--python PATH]... [--collector native|python]...
 *                             [--module NAME]... [--quick] [--jobs N] [--rerun N]
 *                             [--timeout SECONDS] [--results DIR]
 *
 * A module whose traced run differs is run again, plainly and traced, up to
 * `--rerun` times (default 1): a difference that does not come back is
 * reported as flaky, with the tests it touched, and the module counts as
 * the same. The results go to `bench/results/cpython-tests-<date>.json`.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { TEST_PYTHONS, type TestPython } from "../tests/_pythons.ts";
import { COLLECTORS, type TestCollector } from "../tests/_collectors.ts";
import {
  compareRuns,
  CPYTHON_MODULES,
  type Difference,
  moduleExists,
  type ModuleRun,
  runModule,
  stdlibOf,
  tally,
} from "../tests/_cpython_tests.ts";
import { count, git, pythonVersion, runBenchmark, seconds, table, UsageError } from "./_common.ts";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");

const HELP = `CPython's own tests, under python and under Panopticon, compared per test.

Usage: deno task cpython-tests [options]

Options:
  --python PATH          an interpreter (repeatable; default: every Python from 3.8 up found,
                         as the end-to-end tests find them)
  --collector C          native or python (repeatable; default both)
  --module NAME          a module under test. (repeatable; default the whole list of
                         tests/_cpython_tests.ts), e.g. test_frame, test_asyncio.test_tasks
  --quick                leave out the modules marked slow (over about 5 s under python)
  --jobs N               modules run at the same time (default 2)
  --rerun N              runs again, up to N times, of a module that differs (default 1)
  --timeout SECONDS      a traced run is stopped after this (default 1800)
  --results DIR          where the JSON results go (default: bench/results)
  -h, --help             show this help`;

interface Options {
  pythons: TestPython[];
  collectors: TestCollector[];
  modules: string[];
  jobs: number;
  rerun: number;
  timeoutMs: number;
  resultsDir: string;
}

function positive(text: string | undefined, name: string, fallback: number, zero = false) {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < (zero ? 0 : 1)) {
    throw new UsageError(
      `${name} wants a ${zero ? "whole" : "positive whole"} number, got "${text}"`,
    );
  }
  return value;
}

function parseOptions(args: string[]): Options | "help" {
  const { values } = parseArgs({
    args,
    options: {
      python: { type: "string", multiple: true },
      collector: { type: "string", multiple: true },
      module: { type: "string", multiple: true },
      quick: { type: "boolean" },
      jobs: { type: "string" },
      rerun: { type: "string" },
      timeout: { type: "string" },
      results: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) return "help";
  const pythons = values.python?.map((path) => ({ path, version: pythonVersion(path) })) ??
    [...TEST_PYTHONS];
  if (pythons.length === 0) {
    throw new Error("Cannot find a Python interpreter: pass --python to choose one");
  }
  const collectors = (values.collector ?? [...COLLECTORS]).map((name) => {
    if (name !== "native" && name !== "python") {
      throw new UsageError(`--collector wants native or python, got "${name}"`);
    }
    return name as TestCollector;
  });
  const known = new Set(CPYTHON_MODULES.map((m) => m.name));
  const modules = values.module?.map((name) => name.replace(/^test\./, "")) ??
    CPYTHON_MODULES.filter((m) => !(values.quick && m.slow)).map((m) => m.name);
  for (const name of modules) {
    if (!known.has(name)) console.error(`note: ${name} is not in the list; running it anyway`);
  }
  return {
    pythons,
    collectors,
    modules,
    jobs: positive(values.jobs, "--jobs", 2),
    rerun: positive(values.rerun, "--rerun", 1, true),
    timeoutMs: positive(values.timeout, "--timeout", 1800) * 1000,
    resultsDir: resolve(values.results ?? join(ROOT, "bench", "results")),
  };
}

// --- one module on one Python -----------------------------------------------------

/** A traced run's verdict against the plain run. */
interface Verdict {
  collector: TestCollector;
  differences: Difference[];
  /** Differences seen on an earlier attempt only. */
  flaky: Difference[];
  attempts: number;
  run: ModuleRun;
}

interface Unit {
  python: TestPython;
  module: string;
  absent: boolean;
  plain?: ModuleRun;
  verdicts: Verdict[];
}

function key(difference: Difference): string {
  return `${difference.id}\u0000${difference.plain}\u0000${difference.traced}`;
}

async function runUnit(unit: Unit, options: Options): Promise<void> {
  const { python, module } = unit;
  const plainTimeout = Math.min(options.timeoutMs, 900_000);
  unit.plain = await runModule(python, module, "plain", { timeoutMs: plainTimeout });
  for (const collector of options.collectors) {
    let run = await runModule(python, module, collector, { timeoutMs: options.timeoutMs });
    const attempts = [compareRuns(unit.plain, run)];
    while (attempts[attempts.length - 1]!.length > 0 && attempts.length <= options.rerun) {
      const plain = await runModule(python, module, "plain", { timeoutMs: plainTimeout });
      run = await runModule(python, module, collector, { timeoutMs: options.timeoutMs });
      attempts.push(compareRuns(plain, run));
    }
    // A difference is what every attempt shows; what only some show is flaky.
    const every = attempts.map((differences) => new Set(differences.map(key)));
    const differences = attempts[0]!.filter((d) => every.every((keys) => keys.has(key(d))));
    const persistent = new Set(differences.map(key));
    const flaky = new Map<string, Difference>();
    for (const d of attempts.flat()) if (!persistent.has(key(d))) flaky.set(key(d), d);
    unit.verdicts.push({
      collector,
      differences,
      flaky: [...flaky.values()],
      attempts: attempts.length,
      run,
    });
  }
}

function progress(unit: Unit): string {
  const plain = unit.plain!;
  const parts = [`plain ${tally(plain)} (${seconds(plain.seconds, 1)})`];
  for (const v of unit.verdicts) {
    const events = v.run.trace?.events === undefined ? "" : `, ${count(v.run.trace.events)} events`;
    const state = v.differences.length > 0
      ? `${v.differences.length} differ`
      : v.flaky.length > 0
      ? "same on a rerun"
      : "same";
    parts.push(`${v.collector} ${state} (${seconds(v.run.seconds, 1)}${events})`);
  }
  return `${unit.python.version} ${unit.module}: ${parts.join("; ")}`;
}

// --- the report -----------------------------------------------------------------------

function cell(unit: Unit | undefined, collector: TestCollector): string {
  if (unit === undefined) return "-";
  if (unit.absent) return "absent";
  const verdict = unit.verdicts.find((v) => v.collector === collector);
  if (verdict === undefined) return "-";
  if (verdict.differences.length > 0) return `${verdict.differences.length} differ`;
  return verdict.flaky.length > 0 ? "same*" : "same";
}

function report(units: Unit[], options: Options): string {
  const header = ["module"];
  for (const python of options.pythons) {
    for (const collector of options.collectors) {
      header.push(`${python.version.split(".").slice(0, 2).join(".")} ${collector}`);
    }
  }
  const rows = [header];
  for (const module of options.modules) {
    const row = [module];
    for (const python of options.pythons) {
      const unit = units.find((u) => u.module === module && u.python === python);
      for (const collector of options.collectors) row.push(cell(unit, collector));
    }
    rows.push(row);
  }
  const lines = [table(rows)];
  const differing = units.flatMap((u) =>
    u.verdicts.filter((v) => v.differences.length > 0)
      .map((v) => ({ u, v }))
  );
  if (differing.length > 0) {
    lines.push("", "Differences (plain → traced):");
    for (const { u, v } of differing) {
      lines.push(`  ${u.python.version} ${v.collector} ${u.module}:`);
      for (const d of v.differences.slice(0, 20)) {
        lines.push(`    ${d.id}: ${d.plain} → ${d.traced}${d.detail ? ` (${d.detail})` : ""}`);
      }
      if (v.differences.length > 20) lines.push(`    … ${v.differences.length - 20} more`);
    }
  }
  const flaky = units.flatMap((u) =>
    u.verdicts.filter((v) => v.flaky.length > 0)
      .map((v) => ({ u, v }))
  );
  if (flaky.length > 0) {
    lines.push("", "* Flaky: differed on one attempt, not on the next:");
    for (const { u, v } of flaky) {
      const ids = v.flaky.map((d) => `${d.id} (${d.plain} → ${d.traced})`);
      lines.push(`  ${u.python.version} ${v.collector} ${u.module}: ${ids.join(", ")}`);
    }
  }
  const plainFailures = units.filter((u) =>
    u.plain && [...u.plain.tests.values()].some((t) => t.status === "fail" || t.status === "error")
  );
  if (plainFailures.length > 0) {
    lines.push("", "Failing under plain python too (compared all the same):");
    for (const u of plainFailures) {
      const bad = [...u.plain!.tests.values()].filter((t) =>
        t.status === "fail" || t.status === "error"
      );
      lines.push(`  ${u.python.version} ${u.module}: ${bad.map((t) => t.id).join(", ")}`);
    }
  }
  const verdicts = units.flatMap((u) => u.verdicts);
  const same = verdicts.filter((v) => v.differences.length === 0).length;
  const differ = verdicts.length - same;
  const absent = units.filter((u) => u.absent).length;
  const totals = verdicts.reduce(
    (sum, v) => ({
      tests: sum.tests + v.run.tests.size,
      events: sum.events + (v.run.trace?.events ?? 0),
      bytes: sum.bytes + (v.run.trace?.bytes ?? 0),
    }),
    { tests: 0, events: 0, bytes: 0 },
  );
  lines.push(
    "",
    `${verdicts.length} traced runs of ${totals.tests.toLocaleString("en-US")} tests, ` +
      `${count(totals.events)} events, ${(totals.bytes / 1e9).toFixed(1)} GB of traces` +
      (absent > 0 ? `; ${absent} module×Python pairs absent` : ""),
    `${same} same, ${differ} differ` +
      (flaky.length > 0 ? ` (${flaky.length} of the same only on a rerun, marked *)` : ""),
  );
  return lines.join("\n");
}

function serialise(run: ModuleRun | undefined) {
  if (run === undefined) return undefined;
  return {
    code: run.code,
    signal: run.signal,
    timed_out: run.timedOut,
    seconds: run.seconds,
    done: run.done,
    tally: tally(run),
    trace: run.trace,
  };
}

// --- main ------------------------------------------------------------------------------

async function benchmark(options: Options): Promise<number> {
  const loadStart = Deno.loadavg();
  const started = performance.now();
  const units: Unit[] = [];
  for (const python of options.pythons) {
    const lib = stdlibOf(python.path);
    for (const module of options.modules) {
      units.push({ python, module, absent: !moduleExists(lib, module), verdicts: [] });
    }
  }
  console.error(
    `${units.filter((u) => !u.absent).length} module runs on ${options.pythons.length} ` +
      `Pythons, collectors ${options.collectors.join(", ")}, ${options.jobs} at a time; ` +
      `load average ${loadStart.map((v) => v.toFixed(2)).join(" ")}`,
  );
  const queue = units.filter((u) => !u.absent);
  const workers = Array.from({ length: options.jobs }, async () => {
    for (let unit = queue.shift(); unit !== undefined; unit = queue.shift()) {
      await runUnit(unit, options);
      console.error(progress(unit));
    }
  });
  await Promise.all(workers);
  const text = report(units, options);
  console.log("\n" + text);
  const wall = (performance.now() - started) / 1000;
  const loadEnd = Deno.loadavg();
  console.log(
    `\n${seconds(wall, 0)} in all; load average ${loadStart.map((v) => v.toFixed(2)).join(" ")} ` +
      `at the start, ${loadEnd.map((v) => v.toFixed(2)).join(" ")} at the end`,
  );

  await Deno.mkdir(options.resultsDir, { recursive: true });
  const stamp = new Date().toISOString().slice(0, 19).replaceAll(":", "-");
  const path = join(options.resultsDir, `cpython-tests-${stamp}Z.json`);
  await Deno.writeTextFile(
    path,
    JSON.stringify(
      {
        benchmark: "cpython-tests",
        date: new Date().toISOString(),
        command: ["deno", "task", "cpython-tests", ...Deno.args].join(" "),
        commit: git(["rev-parse", "HEAD"]),
        changed_files: git(["--no-optional-locks", "status", "--porcelain"])?.split("\n")
          .filter(Boolean),
        machine: {
          cores: navigator.hardwareConcurrency,
          load_average_start: loadStart,
          load_average_end: Deno.loadavg(),
        },
        wall_s: wall,
        units: units.map((u) => ({
          python: u.python.version,
          module: u.module,
          absent: u.absent,
          plain: serialise(u.plain),
          traced: u.verdicts.map((v) => ({
            collector: v.collector,
            attempts: v.attempts,
            differences: v.differences,
            flaky: v.flaky,
            run: serialise(v.run),
          })),
        })),
        report: text,
      },
      null,
      2,
    ) + "\n",
  );
  console.log(`results: ${path}`);
  return units.some((u) => u.verdicts.some((v) => v.differences.length > 0)) ? 1 : 0;
}

if (import.meta.main) Deno.exit(await runBenchmark(Deno.args, parseOptions, HELP, benchmark));
