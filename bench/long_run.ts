/**
 * A long run: `python -m test` on a dozen CPython test modules in one
 * process (no -j), untraced and under Panopticon, on the oldest and the
 * newest Python (or those given), as a test suite or a server traced for
 * minutes would be. Reports, per Python and collector: the events, the
 * traced and untraced wall time, the trace's size, the converter's peak
 * memory and how it moved over the run (sampled every second), the traced
 * Python's peak, and whether regrtest said the same. Nothing may be dropped
 * and the converter's memory must stay flat: a run that drops events, or
 * whose converter RSS in the last quarter of the run exceeds its peak in
 * the second quarter by more than 25%, is reported, and the exit status is
 * 1. The traces are deleted; the results go to
 * `bench/results/long-run-<date>.json`.
 *
 *     deno task bench:long-run [--python PATH]... [--collector native|python]...
 *                              [--modules a,b,...] [--results DIR] [--keep]
 *
 * @module
 */

import { parseArgs } from "node:util";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { oldestAndNewest, type TestPython } from "../tests/_pythons.ts";
import type { TestCollector } from "../tests/_collectors.ts";
import { checkTrace } from "../tests/_cpython_tests.ts";
import {
  count,
  git,
  megabytes,
  numberField,
  pythonVersion,
  readOtherData,
  runBenchmark,
  saveDatedResults,
  seconds,
  table,
  UsageError,
} from "./_common.ts";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const MAIN = join(ROOT, "main.ts");

/** A dozen modules of the cpython-tests list that run on 3.8 to 3.13, about a minute untraced. */
const DEFAULT_MODULES = [
  "test_generators",
  "test_coroutines",
  "test_contextlib",
  "test_frame",
  "test_gc",
  "test_weakref",
  "test_traceback",
  "test_exceptions",
  "test_threading",
  "test_collections",
  "test_pickle",
  "test_asyncio.test_tasks",
];

const HELP = `A long run: python -m test on a dozen modules in one process, untraced and traced.

Usage: deno task bench:long-run [options]

Options:
  --python PATH        an interpreter (repeatable; default: the oldest and the newest found)
  --collector C        native or python (repeatable; default native)
  --modules a,b        the test modules (default: ${DEFAULT_MODULES.join(",")})
  --results DIR        where the JSON results go (default: bench/results)
  --keep               keep the traces (their paths are printed)
  -h, --help           show this help`;

interface Options {
  pythons: TestPython[];
  collectors: TestCollector[];
  modules: string[];
  resultsDir: string;
  keep: boolean;
}

function parseOptions(args: string[]): Options | "help" {
  const { values } = parseArgs({
    args,
    options: {
      python: { type: "string", multiple: true },
      collector: { type: "string", multiple: true },
      modules: { type: "string" },
      results: { type: "string" },
      keep: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) return "help";
  const pythons = values.python?.map((path) => ({ path, version: pythonVersion(path) })) ??
    oldestAndNewest();
  if (pythons.length === 0) {
    throw new Error("Cannot find a Python interpreter: pass --python to choose one");
  }
  const collectors = (values.collector ?? ["native"]).map((name) => {
    if (name !== "native" && name !== "python") {
      throw new UsageError(`--collector wants native or python, got "${name}"`);
    }
    return name as TestCollector;
  });
  return {
    pythons,
    collectors,
    modules: values.modules?.split(",").map((m) => m.trim()).filter(Boolean) ?? DEFAULT_MODULES,
    resultsDir: resolve(values.results ?? join(ROOT, "bench", "results")),
    keep: values.keep ?? false,
  };
}

// --- watching a run ----------------------------------------------------------------

interface Sample {
  t: number;
  converter_rss: number | null;
  python_rss: number | null;
  trace_bytes: number | null;
}

function statusField(pid: number, name: string): number | null {
  try {
    const text = Deno.readTextFileSync(`/proc/${pid}/status`);
    const found = new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(text)?.[1];
    return found === undefined ? null : Number(found) * 1024;
  } catch {
    return null;
  }
}

function firstChild(pid: number): number | undefined {
  try {
    for (const task of Deno.readDirSync(`/proc/${pid}/task`)) {
      const text = Deno.readTextFileSync(`/proc/${pid}/task/${task.name}/children`);
      const child = text.split(/\s+/).find(Boolean);
      if (child) return Number(child);
    }
  } catch {
    // Gone.
  }
  return undefined;
}

function size(path: string | undefined): number | null {
  if (path === undefined) return null;
  try {
    return Deno.statSync(path).size;
  } catch {
    return null;
  }
}

interface Watched {
  code: number;
  wall: number;
  samples: Sample[];
  /** The converter's own peak (VmHWM), read at the last sample before it exits. */
  converterPeak: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs the command; every second, samples its RSS (for a traced run, the
 * converter's: deno's), its child's (the traced Python) and the trace's size.
 */
async function watch(command: string, args: string[], cwd: string, trace?: string) {
  const start = performance.now();
  const child = new Deno.Command(command, {
    args,
    cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const output = child.output();
  let finished = false;
  output.finally(() => finished = true).catch(() => {});
  const samples: Sample[] = [];
  let converterPeak: number | null = null;
  let python: number | undefined;
  while (!finished) {
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([output, new Promise((wake) => timer = setTimeout(wake, 1000))]);
    clearTimeout(timer);
    if (finished) break;
    if (trace !== undefined) python ??= firstChild(child.pid);
    const hwm = statusField(child.pid, "VmHWM");
    if (hwm !== null) converterPeak = Math.max(converterPeak ?? 0, hwm);
    samples.push({
      t: (performance.now() - start) / 1000,
      converter_rss: trace === undefined ? null : statusField(child.pid, "VmRSS"),
      python_rss: statusField(trace === undefined ? child.pid : python ?? -1, "VmRSS"),
      trace_bytes: size(trace),
    });
  }
  const result = await output;
  const decoder = new TextDecoder();
  return {
    code: result.code,
    wall: (performance.now() - start) / 1000,
    samples,
    converterPeak,
    stdout: decoder.decode(result.stdout),
    stderr: decoder.decode(result.stderr),
  } satisfies Watched;
}

/** regrtest's verdict: its "Result: …" line, or its last line. */
function verdict(stdout: string): string {
  const lines = stdout.trimEnd().split("\n");
  return lines.filter((line) => line.startsWith("Result: ")).pop() ?? lines.pop() ?? "";
}

/** The largest converter RSS sampled between two fractions of the run. */
function peakBetween(samples: Sample[], from: number, to: number): number | undefined {
  const end = samples[samples.length - 1]?.t ?? 0;
  const values = samples.filter((s) => s.t >= from * end && s.t <= to * end)
    .map((s) => s.converter_rss).filter((v): v is number => v !== null);
  return values.length > 0 ? Math.max(...values) : undefined;
}

// --- one Python, one collector ---------------------------------------------------------------

interface Figures {
  python: string;
  collector: TestCollector;
  modules: string[];
  untraced_s: number;
  traced_s: number;
  untraced_result: string;
  traced_result: string;
  same_result: boolean;
  events?: number;
  recorded?: number;
  dropped?: number;
  complete?: boolean;
  trace_bytes: number;
  trace_problems: string[];
  warnings: string[];
  converter_peak_rss: number | null;
  /** The converter's largest RSS in the second quarter of the run, and in the last. */
  converter_rss_q2?: number;
  converter_rss_q4?: number;
  python_peak_rss?: number;
  samples: Sample[];
  problems: string[];
}

async function longRun(python: TestPython, collector: TestCollector, options: Options) {
  const dir = await Deno.makeTempDir({ prefix: "panopticon-long-run-" });
  const trace = join(dir, "trace.json");
  const program = ["-m", "test", ...options.modules];
  console.error(`${python.version}: python -m test ${options.modules.join(" ")}…`);
  const untraced = await watch(python.path, program, dir);
  console.error(`${python.version}: untraced ${seconds(untraced.wall, 1)}; traced (${collector})…`);
  const traced = await watch(
    Deno.execPath(),
    ["run", "-A", MAIN, "--python", python.path, "--collector", collector, "-o", trace, ...program],
    dir,
    trace,
  );
  const check = await checkTrace(trace, traced.stderr);
  const other = await readOtherData(trace);
  if (options.keep) console.error(`trace: ${trace}`);
  else await Deno.remove(dir, { recursive: true });
  const figures: Figures = {
    python: python.version,
    collector,
    modules: options.modules,
    untraced_s: untraced.wall,
    traced_s: traced.wall,
    untraced_result: verdict(untraced.stdout),
    traced_result: verdict(traced.stdout),
    same_result: verdict(untraced.stdout) === verdict(traced.stdout) &&
      untraced.code === traced.code,
    events: numberField(other, "events"),
    recorded: numberField(other, "recorded"),
    dropped: numberField(other, "dropped"),
    complete: other?.complete === true,
    trace_bytes: check.bytes,
    trace_problems: check.problems,
    warnings: check.warnings,
    converter_peak_rss: traced.converterPeak,
    converter_rss_q2: peakBetween(traced.samples, 0.25, 0.5),
    converter_rss_q4: peakBetween(traced.samples, 0.75, 1),
    python_peak_rss: numberField(other, "python_max_rss"),
    samples: traced.samples,
    problems: [...check.problems],
  };
  if (!figures.same_result) {
    figures.problems.push(
      `regrtest said "${figures.untraced_result}" (status ${untraced.code}) untraced, ` +
        `"${figures.traced_result}" (status ${traced.code}) traced`,
    );
  }
  const { converter_rss_q2: q2, converter_rss_q4: q4 } = figures;
  if (q2 !== undefined && q4 !== undefined && q4 > 1.25 * q2) {
    figures.problems.push(
      `the converter's memory grew: ${megabytes(q2)} in the second quarter, ` +
        `${megabytes(q4)} in the last`,
    );
  }
  return figures;
}

// --- main ---------------------------------------------------------------------------------

function formatTable(all: Figures[]): string {
  const rows = [[
    "Python",
    "collector",
    "untraced",
    "traced",
    "events",
    "dropped",
    "trace",
    "converter peak",
    "RSS Q2 → Q4",
    "Python peak",
    "regrtest",
  ]];
  for (const f of all) {
    rows.push([
      f.python,
      f.collector,
      seconds(f.untraced_s, 1),
      seconds(f.traced_s, 1),
      count(f.events),
      count(f.dropped),
      megabytes(f.trace_bytes),
      megabytes(f.converter_peak_rss ?? undefined),
      `${megabytes(f.converter_rss_q2)} → ${megabytes(f.converter_rss_q4)}`,
      megabytes(f.python_peak_rss),
      f.same_result ? "same" : "differs",
    ]);
  }
  return table(rows);
}

async function benchmark(options: Options): Promise<number> {
  const loadStart = Deno.loadavg();
  const all: Figures[] = [];
  for (const python of options.pythons) {
    for (const collector of options.collectors) {
      const figures = await longRun(python, collector, options);
      all.push(figures);
      console.error(
        `${python.version} ${collector}: ${count(figures.events)} events in ` +
          `${seconds(figures.traced_s, 1)}, ${megabytes(figures.trace_bytes)}` +
          (figures.problems.length > 0 ? `; ${figures.problems.join("; ")}` : ""),
      );
    }
  }
  const loadEnd = Deno.loadavg();
  console.log(`\npython -m test ${options.modules.join(" ")}\n`);
  console.log(formatTable(all));
  for (const f of all) {
    console.log(`\n${f.python} ${f.collector}: regrtest "${f.traced_result}"`);
    const step = Math.max(1, Math.ceil(f.samples.length / 10));
    const shown = f.samples.filter((_, i) => i % step === 0 || i === f.samples.length - 1);
    console.log(
      "  converter RSS: " +
        shown.map((s) => `${s.t.toFixed(0)} s ${megabytes(s.converter_rss ?? undefined)}`)
          .join(", "),
    );
    for (const line of [...f.problems, ...f.warnings]) console.log(`  - ${line}`);
  }
  console.log(
    `\nload average: ${loadStart.map((v) => v.toFixed(2)).join(" ")} at start, ` +
      `${
        loadEnd.map((v) => v.toFixed(2)).join(" ")
      } at end (${navigator.hardwareConcurrency} cores)`,
  );
  const path = await saveDatedResults(options.resultsDir, "long-run", {
    benchmark: "long-run",
    date: new Date().toISOString(),
    command: ["deno", "task", "bench:long-run", ...Deno.args].join(" "),
    commit: git(["rev-parse", "HEAD"]),
    machine: {
      cores: navigator.hardwareConcurrency,
      load_average_start: loadStart,
      load_average_end: loadEnd,
    },
    runs: all,
  });
  console.log(`results: ${path}`);
  return all.some((f) => f.problems.length > 0) ? 1 : 0;
}

if (import.meta.main) Deno.exit(await runBenchmark(Deno.args, parseOptions, HELP, benchmark));
