/**
 * Scale: traces one program that makes a chosen number of events (by
 * default 5, 20 and 50 million, each a separate run) and reports, per size,
 * the events the collector recorded, sent and dropped against the events
 * the program is known to make, the wall time, the trace's size, the peak
 * memory of the traced Python and of the converter, and the trace's size
 * on disk sampled while the program runs. The results go to
 * `bench/results/scale-<date>.json`; the traces are deleted.
 *
 *     deno run -A bench/scale.ts [--python PATH] [--events N[,N...]]
 *                                [--interval SECONDS] [--results DIR] [--keep]
 *
 * What it shows, per the reliability issue:
 * - the converter's memory is bounded: its peak RSS should not grow with
 *   the number of events;
 * - the trace is written as it streams: the file grows between samples
 *   taken while the Python process is alive;
 * - no event is lost without a word: the program makes a known number of
 *   events (measured by tracing it with 0 and 1000 iterations first), and
 *   that number must equal the collector's `recorded` and, less `dropped`,
 *   the events the converter received.
 *
 * Each traced run is `deno run -A main.ts` under `bench/_measure.py`, as
 * in `bench/overhead.ts`: the wall time is the whole command, trace
 * complete on disk; the converter is that deno process (it converts in
 * process), its peak RSS is wait4's when that exceeds the Python's known
 * peak, else the VmHWM `_measure.py` samples every 10 ms. Meanwhile this
 * script reads, every `--interval` seconds, the trace's size and the
 * VmRSS and VmHWM of deno and of the Python it started.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { TEST_PYTHONS, type TestPython } from "../tests/_pythons.ts";
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
  sha256,
  table,
  UsageError,
} from "./_common.ts";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const DEFAULT_MAIN = join(ROOT, "main.ts");
const MEASURE = join(ROOT, "bench", "_measure.py");

const DEFAULT_EVENTS = [5_000_000, 20_000_000, 50_000_000];

/**
 * The workload: `main(k)` calls `f` k times and `f` calls `len`, so each
 * iteration is 4 events (a Python call and return, a C call and return).
 * Start-up and the loop's own calls add a fixed number, measured.
 */
const WORKLOAD = `import sys


def f(s):
    return len(s)


def main(k):
    s = "x"
    for _ in range(k):
        f(s)


main(int(sys.argv[1]))
`;

/** Iterations of the calibration run that measures events per iteration. */
const CALIBRATION_ITERATIONS = 1000;

const HELP = `Converter and collector at scale.

Usage: deno run -A bench/scale.ts [options]

Options:
  --python PATH        the interpreter to trace (default: the newest found)
  --events N[,N...]    events per run, one run each (default ${DEFAULT_EVENTS.join(",")})
  --interval SECONDS   how often the trace's size and RSS are sampled (default 1)
  --results DIR        where the JSON results go (default: bench/results)
  --main PATH          the main.ts to trace with (default: this tree's; e.g. a clean
                       copy from \`git archive HEAD\` while others edit the tree)
  --keep               keep the traces (in a temporary directory) instead of deleting them
  -h, --help           show this help`;

// --- options -----------------------------------------------------------------

interface Options {
  python: string | undefined;
  main: string;
  events: number[];
  intervalMs: number;
  resultsDir: string;
  keep: boolean;
}

function parseOptions(args: string[]): Options | "help" {
  const { values } = parseArgs({
    args,
    options: {
      python: { type: "string" },
      events: { type: "string" },
      interval: { type: "string" },
      results: { type: "string" },
      main: { type: "string" },
      keep: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) return "help";
  const events = values.events === undefined ? DEFAULT_EVENTS : values.events.split(",").map(
    (text) => {
      const value = Number(text.trim().replaceAll("_", ""));
      if (!Number.isSafeInteger(value) || value < 1) {
        throw new UsageError(`--events wants positive whole numbers, got "${text}"`);
      }
      return value;
    },
  );
  const interval = values.interval === undefined ? 1 : Number(values.interval);
  if (!(interval > 0)) {
    throw new UsageError(`--interval wants a positive number, got "${values.interval}"`);
  }
  return {
    python: values.python,
    main: resolve(values.main ?? DEFAULT_MAIN),
    events,
    intervalMs: interval * 1000,
    resultsDir: resolve(values.results ?? join(ROOT, "bench", "results")),
    keep: values.keep ?? false,
  };
}

function choosePython(path: string | undefined): TestPython {
  if (path !== undefined) return { path, version: pythonVersion(path) };
  const newest = TEST_PYTHONS[TEST_PYTHONS.length - 1];
  if (newest === undefined) {
    throw new Error("Cannot find a Python interpreter: pass --python to choose one");
  }
  return newest;
}

// --- /proc ------------------------------------------------------------------

/** VmRSS, its anonymous part and VmHWM of a process, in bytes; undefined once it has exited. */
interface Memory {
  rss: number;
  anon: number | undefined;
  hwm: number;
}

function readMemory(pid: number): Memory | undefined {
  let status: string;
  try {
    status = Deno.readTextFileSync(`/proc/${pid}/status`);
  } catch {
    return undefined;
  }
  const field = (name: string) => {
    const found = new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status)?.[1];
    return found === undefined ? undefined : Number(found) * 1024;
  };
  const rss = field("VmRSS");
  const hwm = field("VmHWM");
  // A zombie has no memory map any more.
  return rss === undefined || hwm === undefined ? undefined : { rss, anon: field("RssAnon"), hwm };
}

/** The children of `pid`, from every one of its threads (any may have spawned one). */
function childrenOf(pid: number): number[] {
  const children: number[] = [];
  try {
    for (const task of Deno.readDirSync(`/proc/${pid}/task`)) {
      try {
        const text = Deno.readTextFileSync(`/proc/${pid}/task/${task.name}/children`);
        children.push(...text.split(/\s+/).filter(Boolean).map(Number));
      } catch {
        // The thread ended meanwhile.
      }
    }
  } catch {
    // The process ended meanwhile.
  }
  return children;
}

function fileSize(path: string): number | undefined {
  try {
    return Deno.statSync(path).size;
  } catch {
    return undefined;
  }
}

// --- one measured run ---------------------------------------------------------

/** What `_measure.py` reports (see there). */
interface Measurement {
  wall_s: number;
  status: number;
  max_rss: number;
  own_peak_rss: number | null;
}

/** One look at the run in progress. */
interface Sample {
  /** Seconds since the run started. */
  t: number;
  /** The trace's size on disk; null before it exists. */
  trace_bytes: number | null;
  converter_rss: number | null;
  /** RssAnon: the heap and buffers, without the mapped deno binary and libraries. */
  converter_rss_anon: number | null;
  converter_hwm: number | null;
  /** Null when the Python process is not (or no longer) there. */
  python_rss: number | null;
  python_hwm: number | null;
}

interface Observed {
  measurement: Measurement;
  samples: Sample[];
  log: string;
}

/**
 * Runs `command` under `_measure.py` and samples, every `intervalMs`, the
 * size of `watch` and the memory of the measured process (`_measure.py`'s
 * child) and of its child.
 */
async function observe(
  wrapper: string,
  command: string[],
  watch: string | undefined,
  intervalMs: number,
): Promise<Observed> {
  const child = new Deno.Command(wrapper, {
    args: [MEASURE, ...command],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const start = performance.now();
  const output = child.output();
  const samples: Sample[] = [];
  let finished = false;
  output.finally(() => finished = true).catch(() => {});
  let measured: number | undefined;
  let traced: number | undefined;
  while (!finished) {
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      output,
      new Promise((wake) => timer = setTimeout(wake, intervalMs)),
    ]);
    clearTimeout(timer);
    if (finished || watch === undefined) continue;
    measured ??= childrenOf(child.pid)[0];
    if (measured !== undefined) traced ??= childrenOf(measured)[0];
    const converter = measured === undefined ? undefined : readMemory(measured);
    const python = traced === undefined ? undefined : readMemory(traced);
    samples.push({
      t: (performance.now() - start) / 1000,
      trace_bytes: fileSize(watch) ?? null,
      converter_rss: converter?.rss ?? null,
      converter_rss_anon: converter?.anon ?? null,
      converter_hwm: converter?.hwm ?? null,
      python_rss: python?.rss ?? null,
      python_hwm: python?.hwm ?? null,
    });
  }
  const result = await output;
  const log = new TextDecoder().decode(result.stderr);
  const line = new TextDecoder().decode(result.stdout).trim();
  if (!result.success || line === "") {
    throw new Error(`Cannot measure ${command.join(" ")}:\n${log}`);
  }
  const measurement = JSON.parse(line) as Measurement;
  if (measurement.status !== 0) {
    throw new Error(`${command.join(" ")} exited with status ${measurement.status}:\n${log}`);
  }
  return { measurement, samples, log };
}

// --- reading a trace ------------------------------------------------------------

// --- the checkpoints ------------------------------------------------------------

interface Context {
  wrapper: string;
  main: string;
  python: TestPython;
  workload: string;
  trace: string;
  intervalMs: number;
  /** Leave the trace on disk after the run. */
  keepTrace: boolean;
}

function tracedCommand(context: Context, iterations: number): string[] {
  const { python, trace, workload, main } = context;
  return [
    Deno.execPath(),
    "run",
    "-A",
    main,
    "--python",
    python.path,
    "-o",
    trace,
    workload,
    String(iterations),
  ];
}

/** The events the workload makes: `base + perIteration × k`. */
interface Calibration {
  base: number;
  per_iteration: number;
}

async function recordedEvents(context: Context, iterations: number): Promise<number> {
  await observe(context.wrapper, tracedCommand(context, iterations), undefined, 1000);
  const recorded = numberField(await readOtherData(context.trace), "recorded");
  if (recorded === undefined) throw new Error(`no otherData.recorded in ${context.trace}`);
  return recorded;
}

async function calibrate(context: Context): Promise<Calibration> {
  const base = await recordedEvents(context, 0);
  const more = await recordedEvents(context, CALIBRATION_ITERATIONS);
  const perIteration = (more - base) / CALIBRATION_ITERATIONS;
  if (!Number.isInteger(perIteration) || perIteration < 1) {
    throw new Error(`the workload makes ${base} events at 0 iterations, ${more} at 1000`);
  }
  return { base, per_iteration: perIteration };
}

/** One size's figures. */
interface Checkpoint {
  target_events: number;
  iterations: number;
  /** {@linkcode codeHash} just before the traced run. */
  code_sha256: string;
  /** What the program makes, from the calibration. */
  expected_events: number;
  /** What the collector says it recorded (`end.events`). */
  recorded?: number;
  /** What it says it recorded but could not send. */
  dropped?: number;
  /** What reached the converter. */
  received?: number;
  /** expected − received − dropped: events lost without a word. */
  unaccounted?: number;
  complete?: boolean;
  reason?: unknown;
  slices?: number;
  unfinished?: number;
  wall_s: number;
  untraced_s: number;
  events_per_s?: number;
  trace_bytes: number;
  bytes_per_event?: number;
  python_peak_rss?: number;
  converter_peak_rss?: number;
  converter_peak_rss_source: string;
  /** The largest VmHWM of deno seen by this script's own, coarser, sampling. */
  converter_peak_rss_sampled?: number;
  /** The largest RssAnon of deno sampled: its peak without the mapped binary. */
  converter_peak_rss_anon_sampled?: number;
  wait4_max_rss: number;
  /** Of the samples taken while Python ran: how many, and the trace's size at the last. */
  samples_while_python_ran: number;
  trace_bytes_at_last_sample_while_python_ran?: number;
  /** Its share of the final size: the part written while the program still ran. */
  share_written_while_python_ran?: number;
  /** Whether the size never shrank and rose between consecutive samples while Python ran. */
  grew_while_python_ran: boolean;
  warnings: string[];
  samples: Sample[];
}

function grewWhileRunning(sizes: number[]): boolean {
  if (sizes.length < 2) return false;
  let rose = false;
  for (let i = 1; i < sizes.length; i++) {
    if (sizes[i]! < sizes[i - 1]!) return false;
    if (sizes[i]! > sizes[i - 1]!) rose = true;
  }
  return rose;
}

async function runCheckpoint(
  context: Context,
  calibration: Calibration,
  target: number,
): Promise<Checkpoint> {
  const iterations = Math.max(
    0,
    Math.round((target - calibration.base) / calibration.per_iteration),
  );
  const expected = calibration.base + calibration.per_iteration * iterations;
  console.error(
    `${count(target)} events: ${count(iterations)} iterations, ${count(expected)} expected…`,
  );
  const untraced = await observe(
    context.wrapper,
    [context.python.path, context.workload, String(iterations)],
    undefined,
    context.intervalMs,
  );
  const codeBefore = await codeHash(context.main);
  const { measurement, samples, log } = await observe(
    context.wrapper,
    tracedCommand(context, iterations),
    context.trace,
    context.intervalMs,
  );
  const codeAfter = await codeHash(context.main);
  const { size } = await Deno.stat(context.trace);
  const data = await readOtherData(context.trace);
  const recorded = numberField(data, "recorded");
  const dropped = numberField(data, "dropped");
  const received = numberField(data, "events");
  const pythonPeak = numberField(data, "python_max_rss");
  const converter = pythonPeak !== undefined && measurement.max_rss > pythonPeak
    ? { bytes: measurement.max_rss, source: "wait4" }
    : { bytes: measurement.own_peak_rss ?? undefined, source: "sampled VmHWM (10 ms)" };
  const sampledHwm = samples.map((s) => s.converter_hwm).filter((v): v is number => v !== null);
  const sampledAnon = samples.map((s) => s.converter_rss_anon).filter((v): v is number =>
    v !== null
  );
  const whileRunning = samples.filter((s) => s.python_rss !== null && s.trace_bytes !== null);
  const lastWhileRunning = whileRunning[whileRunning.length - 1]?.trace_bytes ?? undefined;
  const unaccounted = received === undefined ? undefined : expected - received - (dropped ?? 0);

  const warnings = log.split("\n").filter((line) => line.startsWith("panopticon: warning:"));
  if (data === undefined) warnings.push("no readable otherData at the end of the trace");
  if (data !== undefined && data.complete !== true) {
    warnings.push(`trace not complete (reason ${data.reason})`);
  }
  if (recorded !== expected) {
    warnings.push(`the program makes ${expected} events, the collector recorded ${recorded}`);
  }
  if (unaccounted !== 0) {
    warnings.push(`${unaccounted} events neither received nor reported dropped`);
  }
  if (dropped) warnings.push(`${dropped} events dropped (and reported)`);
  if (numberField(data, "unfinished")) warnings.push(`${data?.unfinished} unfinished slices`);
  if (codeBefore !== codeAfter) {
    warnings.push("the converter's or collector's source changed during the run");
  }

  if (!context.keepTrace) await Deno.remove(context.trace);
  return {
    target_events: target,
    iterations,
    code_sha256: codeBefore,
    expected_events: expected,
    recorded,
    dropped,
    received,
    unaccounted,
    complete: data?.complete === true,
    reason: data?.reason,
    slices: numberField(data, "slices"),
    unfinished: numberField(data, "unfinished"),
    wall_s: measurement.wall_s,
    untraced_s: untraced.measurement.wall_s,
    events_per_s: received === undefined ? undefined : received / measurement.wall_s,
    trace_bytes: size,
    bytes_per_event: received ? size / received : undefined,
    python_peak_rss: pythonPeak,
    converter_peak_rss: converter.bytes,
    converter_peak_rss_source: converter.source,
    converter_peak_rss_sampled: sampledHwm.length > 0 ? Math.max(...sampledHwm) : undefined,
    converter_peak_rss_anon_sampled: sampledAnon.length > 0 ? Math.max(...sampledAnon) : undefined,
    wait4_max_rss: measurement.max_rss,
    samples_while_python_ran: whileRunning.length,
    trace_bytes_at_last_sample_while_python_ran: lastWhileRunning,
    share_written_while_python_ran: lastWhileRunning === undefined
      ? undefined
      : lastWhileRunning / size,
    grew_while_python_ran: grewWhileRunning(whileRunning.map((s) => s.trace_bytes!)),
    warnings,
    samples,
  };
}

// --- printing ------------------------------------------------------------

function formatTable(checkpoints: Checkpoint[]): string {
  const rows = [[
    "expected",
    "recorded",
    "received",
    "dropped",
    "unaccounted",
    "untraced",
    "traced",
    "events/s",
    "trace",
    "B/event",
    "Python peak",
    "converter peak",
    "written while running",
  ]];
  for (const c of checkpoints) {
    rows.push([
      count(c.expected_events),
      count(c.recorded),
      count(c.received),
      count(c.dropped),
      count(c.unaccounted),
      seconds(c.untraced_s, 2),
      seconds(c.wall_s, 2),
      count(c.events_per_s),
      megabytes(c.trace_bytes),
      c.bytes_per_event?.toFixed(1) ?? "n/a",
      megabytes(c.python_peak_rss),
      megabytes(c.converter_peak_rss),
      c.share_written_while_python_ran === undefined
        ? "n/a"
        : `${(c.share_written_while_python_ran * 100).toFixed(0)}%`,
    ]);
  }
  return table(rows);
}

/** Up to `most` samples, evenly spread, as `t: size, converter RSS`. */
function formatSamples(c: Checkpoint, most = 8): string {
  const samples = c.samples.filter((s) => s.trace_bytes !== null);
  const step = Math.max(1, Math.ceil(samples.length / most));
  const shown = samples.filter((_, i) => i % step === 0 || i === samples.length - 1);
  const rss = c.samples.map((s) => s.converter_rss).filter((v): v is number => v !== null);
  const anon = c.samples.map((s) => s.converter_rss_anon).filter((v): v is number => v !== null);
  if (samples.length === 0) {
    return `${count(c.expected_events)} events: no sample (the run was shorter than the interval)`;
  }
  const lines = [
    `${count(c.expected_events)} events: ${samples.length} samples, ` +
    `${c.samples_while_python_ran} while Python ran; the trace ` +
    `${c.grew_while_python_ran ? "grew at every step" : "did NOT grow steadily"} while it ran, ` +
    `to ${megabytes(c.trace_bytes_at_last_sample_while_python_ran)} of ` +
    `${megabytes(c.trace_bytes)}; converter VmRSS ${megabytes(Math.min(...rss))}–` +
    `${megabytes(Math.max(...rss))} over the run (RssAnon ${megabytes(Math.min(...anon))}–` +
    `${megabytes(Math.max(...anon))})`,
    "  " + shown.map((s) =>
      `${s.t.toFixed(1)} s: ${megabytes(s.trace_bytes!)}` +
      ` (deno ${megabytes(s.converter_rss ?? undefined)}` +
      `${s.python_rss === null ? ", Python gone" : `, py ${megabytes(s.python_rss)}`})`
    ).join("; "),
  ];
  return lines.join("\n");
}

/** The converter's peak against the events: slope by least squares, and the ratio end to end. */
function boundedness(checkpoints: Checkpoint[]) {
  const points = checkpoints
    .filter((c) => c.converter_peak_rss !== undefined && c.received !== undefined)
    .map((c) => ({ x: c.received!, y: c.converter_peak_rss! }));
  if (points.length < 2) return undefined;
  const mx = points.reduce((a, p) => a + p.x, 0) / points.length;
  const my = points.reduce((a, p) => a + p.y, 0) / points.length;
  const sxx = points.reduce((a, p) => a + (p.x - mx) ** 2, 0);
  const sxy = points.reduce((a, p) => a + (p.x - mx) * (p.y - my), 0);
  const slope = sxx === 0 ? 0 : sxy / sxx;
  const first = points[0]!;
  const last = points[points.length - 1]!;
  return {
    bytes_per_million_events: slope * 1e6,
    peak_ratio_last_to_first: last.y / first.y,
    events_ratio_last_to_first: last.x / first.x,
  };
}

// --- main ------------------------------------------------------------

function hex(digest: ArrayBuffer): string {
  return Array.from(new Uint8Array(digest), (byte) => byte.toString(16).padStart(2, "0")).join("");
}

/**
 * One hash of what a traced run loads: main.ts, deno.json, collector.py and
 * src/*.ts next to `main`. Others edit the tree while benchmarks run; a run
 * whose hash differs before and after may have loaded either version.
 */
async function codeHash(main: string): Promise<string> {
  const dir = dirname(main);
  const sources = [...Deno.readDirSync(join(dir, "src"))]
    .filter((entry) => entry.isFile && entry.name.endsWith(".ts"))
    .map((entry) => join("src", entry.name))
    .sort();
  const parts: Uint8Array[] = [];
  for (const name of [main, "deno.json", "collector.py", ...sources]) {
    parts.push(new TextEncoder().encode(`${name}\n`), await Deno.readFile(resolve(dir, name)));
  }
  const whole = new Uint8Array(parts.reduce((n, part) => n + part.length, 0));
  let at = 0;
  for (const part of parts) {
    whole.set(part, at);
    at += part.length;
  }
  return hex(await crypto.subtle.digest("SHA-256", whole));
}

async function benchmark(options: Options): Promise<number> {
  const python = choosePython(options.python);
  // _measure.py wants 3.9+ for an exact time of exit; it only waits.
  const wrapper = (TEST_PYTHONS[TEST_PYTHONS.length - 1] ?? python).path;
  const loadStart = Deno.loadavg();
  const code = {
    commit: git(["rev-parse", "HEAD"]),
    // --no-optional-locks: status must not rewrite the index of a shared tree.
    changed_files: git(["--no-optional-locks", "status", "--porcelain"])?.split("\n")
      .filter(Boolean),
    collector_sha256: await sha256(join(dirname(options.main), "collector.py")),
    main: options.main,
    code_sha256: await codeHash(options.main),
  };
  const tempDir = await Deno.makeTempDir({ prefix: "panopticon-scale-" });
  const workload = join(tempDir, "scale_workload.py");
  await Deno.writeTextFile(workload, WORKLOAD);
  const context = {
    wrapper,
    main: options.main,
    python,
    workload,
    trace: join(tempDir, "scale.json"),
    intervalMs: options.intervalMs,
    keepTrace: options.keep,
  };
  console.error(
    `Python ${python.version} (${python.path}); load average ` +
      `${loadStart.map((v) => v.toFixed(2)).join(" ")} on ${navigator.hardwareConcurrency} cores`,
  );
  const checkpoints: Checkpoint[] = [];
  let calibration: Calibration;
  try {
    calibration = await calibrate({ ...context, keepTrace: false });
    console.error(
      `workload: ${calibration.base} + ${calibration.per_iteration} events per iteration`,
    );
    for (const target of options.events) {
      const trace = join(tempDir, `scale-${target}.json`);
      checkpoints.push(await runCheckpoint({ ...context, trace }, calibration, target));
    }
  } finally {
    if (!options.keep) await Deno.remove(tempDir, { recursive: true });
  }
  const loadEnd = Deno.loadavg();
  const bounded = boundedness(checkpoints);

  console.log(`\nPython ${python.version} (${python.path}), one traced run per size\n`);
  console.log(formatTable(checkpoints));
  console.log(
    "\ntrace size while the program ran (sampled every " +
      `${(options.intervalMs / 1000).toString()} s):`,
  );
  for (const c of checkpoints) console.log(formatSamples(c));
  if (bounded) {
    console.log(
      `\nconverter peak RSS vs events: ${
        (bounded.bytes_per_million_events / 1e6).toFixed(3)
      } MB per million events (least squares); ` +
        `${bounded.peak_ratio_last_to_first.toFixed(2)}× the peak for ` +
        `${bounded.events_ratio_last_to_first.toFixed(1)}× the events`,
    );
  }
  const warnings = checkpoints.flatMap((c) =>
    c.warnings.map((w) => `${count(c.expected_events)} events: ${w}`)
  );
  if (new Set([code.code_sha256, ...checkpoints.map((c) => c.code_sha256)]).size > 1) {
    warnings.push("the source changed between runs: the sizes were not all run on the same code");
  }
  if (warnings.length > 0) {
    console.log("\nwarnings:\n" + warnings.map((w) => `  - ${w}`).join("\n"));
  }
  console.log(
    `\nload average: ${loadStart.map((v) => v.toFixed(2)).join(" ")} at start, ` +
      `${loadEnd.map((v) => v.toFixed(2)).join(" ")} at end`,
  );

  const path = await saveDatedResults(options.resultsDir, "scale", {
    benchmark: "scale",
    date: new Date().toISOString(),
    command: ["deno", "run", "-A", "bench/scale.ts", ...Deno.args].join(" "),
    machine: {
      cores: navigator.hardwareConcurrency,
      memory_bytes: Deno.systemMemoryInfo().total,
      os: `${Deno.build.os} ${Deno.osRelease()}`,
      deno: Deno.version.deno,
      load_average_start: loadStart,
      load_average_end: loadEnd,
    },
    code,
    python: { ...python },
    workload: WORKLOAD,
    calibration,
    sample_interval_s: options.intervalMs / 1000,
    converter_rss_vs_events: bounded,
    checkpoints,
    warnings,
  });
  console.log(`\nresults: ${path}`);
  return warnings.length > 0 ? 1 : 0;
}

if (import.meta.main) Deno.exit(await runBenchmark(Deno.args, parseOptions, HELP, benchmark));
