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
 * A difference that docs/reliability.md explains (KNOWN_DIFFERENCES in
 * tests/_cpython_tests.ts) is reported as known, apart. A module whose
 * traced run differs otherwise is run again, plainly and traced, up to
 * `--rerun` times (default 1): a difference that does not come back is
 * reported as flaky, with the tests it touched, and the module counts as
 * the same. The results go to `bench/results/cpython-tests-<date>.json`;
 * the exit status is 1 when a module differs.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { TEST_PYTHONS, type TestPython } from "../tests/_pythons.ts";
import { COLLECTORS, type TestCollector } from "../tests/_collectors.ts";
import {
  classify,
  compareRuns,
  CPYTHON_MODULES,
  type Difference,
  knownFor,
  moduleExists,
  type ModuleRun,
  runModule,
  stdlibOf,
  tally,
} from "../tests/_cpython_tests.ts";
import {
  count,
  git,
  pythonVersion,
  runBenchmark,
  saveDatedResults,
  seconds,
  table,
  UsageError,
} from "./_common.ts";

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
  /** What every attempt showed, and docs/reliability.md does not explain. */
  differences: Difference[];
  /** What every attempt showed, and docs/reliability.md explains. */
  known: Difference[];
  /** Differences seen on some attempts only. */
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

/** A difference, the same from one attempt to the next (its figures left out). */
function key(difference: Difference): string {
  const traced = difference.id.startsWith("(")
    ? difference.traced.replace(/\d+/g, "N")
    : difference.traced;
  return `${difference.id}\u0000${difference.plain}\u0000${traced}`;
}

async function runUnit(unit: Unit, options: Options): Promise<void> {
  const { python, module } = unit;
  const plainTimeout = Math.min(options.timeoutMs, 900_000);
  unit.plain = await runModule(python, module, "plain", { timeoutMs: plainTimeout });
  for (const collector of options.collectors) {
    let run = await runModule(python, module, collector, { timeoutMs: options.timeoutMs });
    const unexplained = (differences: Difference[]) =>
      classify(python, collector, module, differences).unexpected.length > 0;
    const attempts = [compareRuns(unit.plain, run)];
    while (unexplained(attempts[attempts.length - 1]!) && attempts.length <= options.rerun) {
      const plain = await runModule(python, module, "plain", { timeoutMs: plainTimeout });
      run = await runModule(python, module, collector, { timeoutMs: options.timeoutMs });
      attempts.push(compareRuns(plain, run));
    }
    // A difference is what every attempt shows; what only some show is flaky.
    const every = attempts.map((differences) => new Set(differences.map(key)));
    const persistent = attempts[0]!.filter((d) => every.every((keys) => keys.has(key(d))));
    const kept = new Set(persistent.map(key));
    const flaky = new Map<string, Difference>();
    for (const d of attempts.flat()) if (!kept.has(key(d))) flaky.set(key(d), d);
    const { known, unexpected } = classify(python, collector, module, persistent);
    unit.verdicts.push({
      collector,
      differences: unexpected,
      known,
      flaky: [...flaky.values()],
      attempts: attempts.length,
      run,
    });
  }
}

function state(v: Verdict): string {
  if (v.differences.length > 0) return `${v.differences.length} differ`;
  const tests = v.known.filter((d) => !d.id.startsWith("(")).length;
  const known = v.known.length > 0 ? `known ${tests || v.known.length}` : "same";
  return v.flaky.length > 0 ? `${known}*` : known;
}

function progress(unit: Unit): string {
  const plain = unit.plain!;
  const parts = [`plain ${tally(plain)} (${seconds(plain.seconds, 1)})`];
  for (const v of unit.verdicts) {
    const events = v.run.trace?.events === undefined ? "" : `, ${count(v.run.trace.events)} events`;
    parts.push(`${v.collector} ${state(v)} (${seconds(v.run.seconds, 1)}${events})`);
  }
  return `${unit.python.version} ${unit.module}: ${parts.join("; ")}`;
}

// --- the report -----------------------------------------------------------------------

function cell(unit: Unit | undefined, collector: TestCollector): string {
  if (unit === undefined) return "-";
  if (unit.absent) return "absent";
  const verdict = unit.verdicts.find((v) => v.collector === collector);
  return verdict === undefined ? "-" : state(verdict);
}

function differenceLines(differences: Difference[], most = 20): string[] {
  const lines = differences.slice(0, most).map((d) =>
    `    ${d.id}: ${d.plain} → ${d.traced}${d.detail ? ` (${d.detail.slice(0, 300)})` : ""}`
  );
  if (differences.length > most) lines.push(`    … ${differences.length - most} more`);
  return lines;
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
  const lines = [
    table(rows),
    "",
    "same: every test has the outcome it has under python, and the trace loads; " +
    "known N: N tests differ as docs/reliability.md explains; * flaky (below)",
  ];
  const pick = (has: (v: Verdict) => boolean) =>
    units.flatMap((u) => u.verdicts.filter(has).map((v) => ({ u, v })));
  const differing = pick((v) => v.differences.length > 0);
  if (differing.length > 0) {
    lines.push("", "Differences (plain → traced):");
    for (const { u, v } of differing) {
      lines.push(
        `  ${u.python.version} ${v.collector} ${u.module}:`,
        ...differenceLines(v.differences),
      );
    }
  }
  const known = pick((v) => v.known.length > 0);
  if (known.length > 0) {
    lines.push("", 'Known differences (docs/reliability.md, "CPython\'s own tests"):');
    for (const { u, v } of known) {
      const why = [...new Set(knownFor(u.python, v.collector, u.module).map((k) => k.why))];
      lines.push(`  ${u.python.version} ${v.collector} ${u.module} (${why.join("; ")}):`);
      lines.push(...differenceLines(v.known.filter((d) => d.id !== "(the run)"), 8));
    }
  }
  const flaky = pick((v) => v.flaky.length > 0);
  if (flaky.length > 0) {
    lines.push("", "* Flaky: differed on one attempt, not on another:");
    for (const { u, v } of flaky) {
      const ids = v.flaky.map((d) => `${d.id} (${d.plain} → ${d.traced})`);
      lines.push(`  ${u.python.version} ${v.collector} ${u.module}: ${ids.join(", ")}`);
    }
  }
  const warned = pick((v) => (v.run.trace?.warnings.length ?? 0) > 0);
  if (warned.length > 0) {
    lines.push(
      "",
      "Panopticon's warnings (the program is unchanged; the trace says what it misses):",
    );
    for (const { u, v } of warned) {
      const warnings = [
        ...new Set(v.run.trace!.warnings.map((w) => w.replace(/^panopticon: warning: /, ""))),
      ];
      lines.push(
        `  ${u.python.version} ${v.collector} ${u.module}: ${warnings.join(" / ").slice(0, 400)}`,
      );
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
  const differ = verdicts.filter((v) => v.differences.length > 0).length;
  const withKnown = verdicts.filter((v) => v.differences.length === 0 && v.known.length > 0).length;
  const onRerun = verdicts.filter((v) => v.differences.length === 0 && v.flaky.length > 0).length;
  const absent = units.filter((u) => u.absent).length;
  const totals = verdicts.reduce(
    (sum, v) => ({
      tests: sum.tests + v.run.tests.size,
      events: sum.events + (v.run.trace?.events ?? 0),
      bytes: sum.bytes + (v.run.trace?.bytes ?? 0),
    }),
    { tests: 0, events: 0, bytes: 0 },
  );
  const notes = [
    withKnown > 0 ? `${withKnown} of the same with known differences` : "",
    onRerun > 0 ? `${onRerun} flaky, marked *` : "",
  ].filter(Boolean);
  lines.push(
    "",
    `${verdicts.length} traced runs of ${totals.tests.toLocaleString("en-US")} tests, ` +
      `${count(totals.events)} events, ${(totals.bytes / 1e9).toFixed(1)} GB of traces` +
      (absent > 0 ? `; ${absent} module×Python pairs absent` : ""),
    `${verdicts.length - differ} same, ${differ} differ` +
      (notes.length > 0 ? ` (${notes.join("; ")})` : ""),
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

  const path = await saveDatedResults(options.resultsDir, "cpython-tests", {
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
        known: v.known,
        flaky: v.flaky,
        run: serialise(v.run),
      })),
    })),
    report: text,
  });
  console.log(`results: ${path}`);
  return units.some((u) => u.verdicts.some((v) => v.differences.length > 0)) ? 1 : 0;
}

if (import.meta.main) Deno.exit(await runBenchmark(Deno.args, parseOptions, HELP, benchmark));
