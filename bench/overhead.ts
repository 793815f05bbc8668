/**
 * Collector overhead: runs each workload of the shared benchmark untraced,
 * traced by Panopticon (the native collector, to a JSON trace and to a
 * Perfetto protobuf trace, and the Python one), under cProfile, with the
 * native collector alone (its stream discarded), and under the floors of
 * `bench/floor.py` (a C callback, bench/floor.c, and two Python ones), in
 * alternating runs, and prints per workload the median times, their ratios,
 * the events, each trace's size and the peak memory of the Python process
 * and of the converter; then runs the converter benchmark once per trace
 * format, and compares every figure with the last committed results. The
 * results go to `bench/results/latest.json` and a dated copy.
 *
 *     deno task bench [--all | --python PATH...] [--workloads a,b] [--runs N]
 *                     [--kinds a,b] [--reps N] [--workloads-dir DIR]
 *                     [--results DIR] [--quick]
 *
 * Every time is the whole process, from spawn to exit, measured by
 * `bench/_measure.py`; a traced time is thus Python, collector and
 * converter together, with the trace complete on disk.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { basename, dirname, join, resolve } from "node:path";
import { buildNative } from "../src/native_build.ts";
import { probePython } from "../src/python.ts";
import { fileURLToPath } from "node:url";
import { PerfettoDecoder } from "../src/perfetto_reader.ts";
import { TEST_PYTHONS, type TestPython } from "../tests/_pythons.ts";
import {
  count,
  git,
  megabytes,
  numberField,
  pythonVersion,
  readOtherData,
  resultsStamp,
  runBenchmark,
  seconds,
  sha256,
  table,
  UsageError,
} from "./_common.ts";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const MAIN = join(ROOT, "main.ts");
const MEASURE = join(ROOT, "bench", "_measure.py");
const FLOOR = join(ROOT, "bench", "floor.py");
const FLOOR_C = join(ROOT, "bench", "floor.c");
const COLLECTOR = join(ROOT, "collector.py");
const CONVERTER_BENCH = join(ROOT, "bench", "converter.ts");

/** The filtered run: only the workload's own file is recorded. */
const FILTERED_WORKLOAD = "stdlib_mix.py";
const FILTER_ARGS = ["--include", "file:*/stdlib_mix.py"];

/** Targets of the native-collector issue, printed next to the figures. */
const TARGET_OVER_C_FLOOR = 2;
const TARGET_FILTERED = 1.15;
/** 3.8 to 3.10, which VizTracer does not support: within this factor of cProfile's whole run. */
const TARGET_OVER_CPROFILE = 1.5;

/**
 * VizTracer 1.1.1's fastest path (in-process C writer, keeping its last 1M
 * entries), traced / untraced, whole run, measured side by side on this
 * kind of machine when the native-collector issue was filed; VizTracer
 * cannot be installed here (no PyPI), so these are the reference figures.
 */
const VIZTRACER: Record<string, Record<string, number>> = {
  "3.11": { calls: 8.2, gens: 7.1, asyncio_tasks: 4.8, threads: 6.4, stdlib_mix: 3.2 },
  "3.12": { calls: 5.8, gens: 6.7, asyncio_tasks: 4.3, threads: 4.4, stdlib_mix: 3.2 },
  "3.13": { calls: 8.1, gens: 4.1, asyncio_tasks: 2.8, threads: 5.0, stdlib_mix: 1.5 },
};

/**
 * The runs alternated in each round, in this order:
 *
 * - `untraced`: `python w.py`;
 * - `traced`: the whole `panopticon -o trace.json w.py`, native collector;
 * - `traced_protobuf`: the same to a protobuf trace (`-o trace.pftrace`);
 * - `traced_python`: the same with `--collector python`;
 * - `native_alone`: the native collector in the Python process, its stream
 *   read and discarded by this benchmark (no converter): its own cost;
 * - `floor_c`: bench/floor.c's callback, which stores a timestamp;
 * - `floor_append`, `floor_noop`: bench/floor.py's Python callbacks;
 * - `cprofile`: `python -m cProfile -o /dev/null w.py` (C, aggregates only);
 * - `filtered`: `traced` with FILTER_ARGS (only the workload's own file), on stdlib_mix.
 */
type Kind =
  | "untraced"
  | "traced"
  | "traced_protobuf"
  | "traced_python"
  | "native_alone"
  | "floor_c"
  | "floor_append"
  | "floor_noop"
  | "cprofile"
  | "filtered";

const ALL_KINDS: readonly Kind[] = [
  "untraced",
  "traced",
  "traced_protobuf",
  "traced_python",
  "native_alone",
  "floor_c",
  "floor_append",
  "floor_noop",
  "cprofile",
  "filtered",
];
const QUICK_KINDS: readonly Kind[] = ["untraced", "traced", "native_alone", "floor_c"];
/** JSON bytes per slice over protobuf bytes per slice, at least. */
const TARGET_PROTOBUF_SMALLER = 5;

const HELP = `Collector overhead benchmark.

Usage: deno task bench [options]

Options:
  --all                 every Python found (default: the oldest and the newest)
  --python PATH         benchmark this interpreter (repeatable)
  --workloads a,b       only these workloads (names with or without .py)
  --runs N              alternating runs of each kind; the median is reported (default 5)
  --kinds a,b           only these kinds of run (default all: ${ALL_KINDS.join(", ")})
  --reps N              BENCH_REPS for every workload (default: each workload's own)
  --workloads-dir DIR   where the workloads are (default: ../shared/bench/workloads)
  --results DIR         where the JSON results go (default: bench/results)
  --quick               smoke test: 1 run, BENCH_REPS=1, one workload (calls unless
                        --workloads), the quick kinds (${QUICK_KINDS.join(", ")}), a
                        small converter run; writes quick.json only
  -h, --help            show this help`;

// --- options -----------------------------------------------------------------

/** What to run, from the command line. */
interface Options {
  pythons: string[];
  all: boolean;
  workloads: string[] | undefined;
  runs: number;
  reps: string | undefined;
  workloadsDir: string;
  resultsDir: string;
  quick: boolean;
  /** Events for the converter benchmark; undefined: its own default. */
  converterEvents: number | undefined;
  /** The kinds of run. */
  kinds: Kind[];
}

function positiveInteger(text: string | undefined, name: string): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new UsageError(`${name} wants a positive whole number, got "${text}"`);
  }
  return value;
}

function parseOptions(args: string[]): Options | "help" {
  const { values } = parseArgs({
    args,
    options: {
      all: { type: "boolean" },
      python: { type: "string", multiple: true },
      workloads: { type: "string" },
      runs: { type: "string" },
      reps: { type: "string" },
      kinds: { type: "string" },
      "workloads-dir": { type: "string" },
      results: { type: "string" },
      quick: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) return "help";
  const quick = values.quick ?? false;
  const runs = positiveInteger(values.runs, "--runs") ?? (quick ? 1 : 5);
  const reps = positiveInteger(values.reps, "--reps") ?? (quick ? 1 : undefined);
  const workloads = values.workloads?.split(",").map((name) => name.trim()).filter(Boolean);
  const kinds = values.kinds?.split(",").map((name) => name.trim()).filter(Boolean);
  for (const kind of kinds ?? []) {
    if (!(ALL_KINDS as readonly string[]).includes(kind)) {
      throw new UsageError(`no kind of run "${kind}" (there are ${ALL_KINDS.join(", ")})`);
    }
  }
  return {
    pythons: values.python ?? [],
    all: values.all ?? false,
    workloads: workloads ?? (quick ? ["calls"] : undefined),
    runs,
    reps: reps?.toString(),
    workloadsDir: resolve(
      values["workloads-dir"] ?? join(ROOT, "..", "shared", "bench", "workloads"),
    ),
    resultsDir: resolve(values.results ?? join(ROOT, "bench", "results")),
    quick,
    converterEvents: quick ? 200_000 : undefined,
    // "untraced" always runs: every ratio is to it.
    kinds: ["untraced", ...((kinds as Kind[] | undefined) ?? (quick ? QUICK_KINDS : ALL_KINDS))]
      .filter((kind, i, all) => all.indexOf(kind) === i) as Kind[],
  };
}

// --- what to run on ------------------------------------------------------------

/** The interpreters to benchmark: those asked for, else all or the oldest and newest found. */
function choosePythons(options: Options, found: TestPython[]): TestPython[] {
  if (options.pythons.length > 0) {
    return options.pythons.map((path) => ({ path, version: pythonVersion(path) }));
  }
  if (found.length === 0) {
    throw new Error("Cannot find a Python interpreter: pass --python to choose one");
  }
  if (options.all || found.length === 1) return found;
  return [found[0]!, found[found.length - 1]!];
}

/**
 * The interpreter that runs `_measure.py`: the newest found, since 3.9+
 * has `os.pidfd_open` for an exact time of exit. It only waits, so which
 * one it is does not change the figures.
 */
function chooseWrapper(found: TestPython[], benchmarked: TestPython[]): string {
  return (found[found.length - 1] ?? benchmarked[benchmarked.length - 1]!).path;
}

/** The engine the collector picks by default (`auto`), which the floor imitates. */
function engineFor(version: string): "monitoring" | "setprofile" {
  const [major = 0, minor = 0] = version.split(".").map(Number);
  return major > 3 || (major === 3 && minor >= 12) ? "monitoring" : "setprofile";
}

function listWorkloads(dir: string, wanted: string[] | undefined): string[] {
  let names: string[];
  try {
    names = [...Deno.readDirSync(dir)]
      .filter((entry) => entry.isFile && entry.name.endsWith(".py"))
      .map((entry) => entry.name)
      .sort();
  } catch (error) {
    throw new Error(`Cannot read the workloads in ${dir}: pass --workloads-dir (${error})`);
  }
  if (wanted === undefined) return names.map((name) => join(dir, name));
  return wanted.map((want) => {
    const name = want.endsWith(".py") ? want : `${want}.py`;
    if (!names.includes(name)) {
      throw new UsageError(`no workload "${want}" in ${dir} (there are ${names.join(", ")})`);
    }
    return join(dir, name);
  });
}

// --- machine and code ------------------------------------------------------------

interface MachineInfo {
  cpu: string;
  cores: number;
  memory_bytes: number;
  os: string;
  deno: string;
  load_average_start: number[];
  load_average_end?: number[];
}

function cpuModel(): string {
  try {
    const cpuinfo = Deno.readTextFileSync("/proc/cpuinfo");
    return /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? "unknown";
  } catch {
    return "unknown";
  }
}

function machineInfo(): MachineInfo {
  return {
    cpu: cpuModel(),
    cores: navigator.hardwareConcurrency,
    memory_bytes: Deno.systemMemoryInfo().total,
    os: `${Deno.build.os} ${Deno.osRelease()}`,
    deno: Deno.version.deno,
    load_average_start: Deno.loadavg(),
  };
}

/**
 * The code measured. Others edit the tree while benchmarks run, so the
 * commit alone does not say what ran: the changed files and the collector's
 * hash do.
 */
async function codeInfo() {
  return {
    commit: git(["rev-parse", "HEAD"]),
    // --no-optional-locks: status must not rewrite the index of a shared tree.
    changed_files: git(["--no-optional-locks", "status", "--porcelain"])?.split("\n")
      .filter(Boolean),
    collector_sha256: await sha256(COLLECTOR),
    native_sha256: await sha256(join(ROOT, "native", "panopticon_native.c")),
  };
}

// --- one measured run ------------------------------------------------------------

/** What `_measure.py` reports. */
interface Measurement {
  wall_s: number;
  status: number;
  /** `ru_maxrss` from wait4: the child's peak or a waited-for descendant's, whichever is larger. */
  max_rss: number;
  /** The child's own VmHWM, sampled every 10 ms; null if never sampled. */
  own_peak_rss: number | null;
}

interface Context {
  wrapper: string;
  python: TestPython;
  engine: "monitoring" | "setprofile";
  workload: string;
  tracePath: string;
  /** Where the protobuf trace goes. */
  protobufPath: string;
  env: Record<string, string>;
  /** The native collector, built for this Python. */
  native: string;
  /** bench/floor.c, built for this Python. */
  floor: string;
  /** Where the native collector alone streams to; see DiscardingChannel. */
  channel: DiscardingChannel;
}

function commandFor(kind: Kind, context: Context): string[] {
  const { python, workload, tracePath, engine } = context;
  const traced = [Deno.execPath(), "run", "-A", MAIN, "--python", python.path, "-o", tracePath];
  switch (kind) {
    case "untraced":
    case "native_alone":
      return [python.path, workload];
    case "traced":
      return [...traced, workload];
    case "traced_python":
      return [...traced, "--collector", "python", workload];
    case "traced_protobuf":
      return [...traced.slice(0, -1), context.protobufPath, workload];
    case "filtered":
      return [...traced, ...FILTER_ARGS, workload];
    case "floor_c":
      return [python.path, FLOOR, "c", engine, workload];
    case "floor_append":
      return [python.path, FLOOR, "append", engine, workload];
    case "floor_noop":
      return [python.path, FLOOR, "noop", engine, workload];
    case "cprofile":
      return [python.path, "-m", "cProfile", "-o", "/dev/null", workload];
  }
}

/**
 * The variables a run's command gets besides the workload's (`_measure.py
 * --env`: not the wrapper, which would run the collector itself).
 */
function envFor(kind: Kind, context: Context): Record<string, string> {
  switch (kind) {
    case "floor_c":
      return { PANOPTICON_FLOOR_MODULE: context.floor };
    case "native_alone":
      return context.channel.env(context.native);
    default:
      return {};
  }
}

/**
 * A socket the native collector streams to, read and thrown away as fast
 * as it comes: the collector's own cost, without the converter's. The
 * collector runs as under the command (collector.py as `sitecustomize`,
 * the environment of src/runner.ts), and is admitted without a secret.
 */
class DiscardingChannel {
  readonly dir: string;
  readonly path: string;
  #listener: Deno.UnixListener;
  bytes = 0;

  constructor(dir: string) {
    this.dir = dir;
    this.path = join(dir, "channel.sock");
    Deno.copyFileSync(COLLECTOR, join(dir, "sitecustomize.py"));
    this.#listener = Deno.listen({ transport: "unix", path: this.path });
    this.#serve();
  }

  env(native: string): Record<string, string> {
    return {
      PYTHONPATH: this.dir,
      PANOPTICON_CHANNEL: this.path,
      PANOPTICON_SECRET: "benchmark",
      PANOPTICON_ENGINE: "auto",
      PANOPTICON_NATIVE: native,
    };
  }

  async #serve(): Promise<void> {
    try {
      for await (const conn of this.#listener) {
        (async () => {
          for await (const chunk of conn.readable) this.bytes += chunk.length;
        })().catch(() => {});
      }
    } catch {
      // Closed.
    }
  }

  close(): void {
    this.#listener.close();
  }
}

/**
 * Runs `command` under `_measure.py`, with `env` in the workload's
 * environment and `only` in the command's alone; its output (stdout and
 * stderr) is returned as `log`.
 */
async function measure(
  wrapper: string,
  command: string[],
  env: Record<string, string>,
  only: Record<string, string> = {},
): Promise<{ measurement: Measurement; log: string }> {
  const flags = Object.entries(only).flatMap(([name, value]) => ["--env", `${name}=${value}`]);
  const output = await new Deno.Command(wrapper, {
    args: [MEASURE, ...flags, ...command],
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const log = new TextDecoder().decode(output.stderr);
  const line = new TextDecoder().decode(output.stdout).trim();
  if (!output.success || line === "") {
    throw new Error(`Cannot measure ${command.join(" ")}:\n${log}`);
  }
  const measurement = JSON.parse(line) as Measurement;
  if (measurement.status !== 0) {
    throw new Error(`${command.join(" ")} exited with status ${measurement.status}:\n${log}`);
  }
  return { measurement, log };
}

// --- reading a trace ------------------------------------------------------------

/** What the benchmark reads from a finished trace. */
interface TraceFacts {
  bytes: number;
  /** Complete events (`ph:"X"`) counted in the file. */
  slices_counted: number;
  /** The trace's `otherData`, or undefined if it could not be read. */
  other_data: Record<string, unknown> | undefined;
}

const SLICE_MARK = new TextEncoder().encode('\n{"ph":"X"');
/**
 * The ends of the asyncio arrows (from a task's creation, from a future's
 * completion to its waiter): no slices of the machine's.
 */
const ARROW_MARKS = ["create_task", "await"].map((name) =>
  new TextEncoder().encode(`\n{"ph":"X","name":"${name}","cat":"asyncio"`)
);
const LONGEST_MARK = Math.max(...ARROW_MARKS.map((mark) => mark.length));

/** Whether `mark`'s bytes from `from` on are at `at` in `data` (the bytes before are known). */
function bytesAt(data: Uint8Array, at: number, mark: Uint8Array, from: number): boolean {
  for (let i = from; i < mark.length; i++) {
    if (data[at + i] !== mark[i]) return false;
  }
  return true;
}

/**
 * Counts the lines that start with `{"ph":"X"`, but for the ends of
 * asyncio arrows. The writer puts each event on its own line; a
 * trace can be over 1 GB, so it is read in chunks, never
 * parsed whole. A newline too close to a chunk's end to be checked is
 * carried, with what follows it, into the next chunk.
 */
async function countSlices(path: string): Promise<number> {
  using file = await Deno.open(path);
  let count = 0;
  let carry = new Uint8Array(0);
  for await (const chunk of file.readable) {
    const data = carry.length === 0 ? chunk : concat(carry, chunk);
    const last = data.length - LONGEST_MARK;
    let at = data.indexOf(10);
    while (at !== -1 && at <= last) {
      // The newline is known; a slice's line may be an arrow's, past its mark.
      if (
        bytesAt(data, at, SLICE_MARK, 1) &&
        !ARROW_MARKS.some((mark) => bytesAt(data, at, mark, SLICE_MARK.length))
      ) {
        count++;
      }
      at = data.indexOf(10, at + 1);
    }
    carry = at === -1 ? new Uint8Array(0) : data.slice(at);
  }
  return count;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const joined = new Uint8Array(a.length + b.length);
  joined.set(a);
  joined.set(b, a.length);
  return joined;
}

/**
 * Reads a protobuf trace as a stream: counts its slices (BEGIN events) and
 * takes its summary from the metadata, the analog of `otherData`.
 */
async function readProtobufTrace(path: string): Promise<TraceFacts> {
  const { size } = await Deno.stat(path);
  using file = await Deno.open(path);
  const decoder = new PerfettoDecoder();
  let slices = 0;
  let otherData: Record<string, unknown> | undefined;
  // The slices of threads' tracks: an asyncio task's track (its life and
  // steps) is not one of the machine's slices.
  const asyncTracks = new Set<number>();
  for await (const chunk of file.readable) {
    decoder.push(chunk, (packet) => {
      if (packet.kind === "event" && packet.event.type === "begin") {
        if (!asyncTracks.has(packet.event.track)) slices++;
      } else if (packet.kind === "track") {
        const track = packet.track;
        if (track.thread === undefined && track.process === undefined && !track.counter) {
          asyncTracks.add(track.uuid);
        }
      } else if (packet.kind === "metadata") otherData = { ...otherData, ...packet.metadata };
    });
  }
  decoder.finish();
  return { bytes: size, slices_counted: slices, other_data: otherData };
}

async function readTrace(path: string): Promise<TraceFacts> {
  const { size } = await Deno.stat(path);
  return {
    bytes: size,
    slices_counted: await countSlices(path),
    other_data: await readOtherData(path),
  };
}

// --- a workload's rounds ------------------------------------------------------------

interface Run {
  kind: Kind;
  round: number;
  measurement: Measurement;
  trace?: TraceFacts;
  /** Panopticon's warnings printed during a traced run. */
  warnings?: string[];
}

function kindsFor(workload: string, kinds: Kind[]): Kind[] {
  return kinds.filter((kind) => kind !== "filtered" || basename(workload) === FILTERED_WORKLOAD);
}

/**
 * Panopticon's warnings in a run's output, but for the one that says the
 * trace is big (the workloads make JSON traces past 500 MB on purpose):
 * that one is advice, not a sign of a broken run.
 */
function panopticonWarnings(log: string): string[] {
  return log.split("\n").filter((line) =>
    line.startsWith("panopticon: warning:") &&
    !line.includes("more than viewers open comfortably") &&
    !line.includes("more than Perfetto's UI opens comfortably")
  );
}

async function runOnce(kind: Kind, round: number, context: Context): Promise<Run> {
  const command = commandFor(kind, context);
  const { measurement, log } = await measure(
    context.wrapper,
    command,
    context.env,
    envFor(kind, context),
  );
  if (
    kind !== "traced" && kind !== "filtered" && kind !== "traced_python" &&
    kind !== "traced_protobuf"
  ) {
    return { kind, round, measurement };
  }
  const path = kind === "traced_protobuf" ? context.protobufPath : context.tracePath;
  const trace = kind === "traced_protobuf" ? await readProtobufTrace(path) : await readTrace(path);
  await Deno.remove(path);
  return { kind, round, measurement, trace, warnings: panopticonWarnings(log) };
}

/**
 * The runs of one workload: `runs` rounds, each running every kind once in
 * the same order, so that a slow spell of the machine hits all kinds alike.
 */
async function runWorkload(context: Context, kinds: Kind[], runs: number): Promise<Run[]> {
  const results: Run[] = [];
  const label = `${context.python.version} ${basename(context.workload)}`;
  for (let round = 1; round <= runs; round++) {
    for (const kind of kinds) {
      const run = await runOnce(kind, round, context);
      results.push(run);
      console.error(
        `[${label} ${round}/${runs}] ${kind.padEnd(12)} ${seconds(run.measurement.wall_s)}`,
      );
    }
  }
  return results;
}

// --- figures ------------------------------------------------------------

function median(values: number[]): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

function ratio(a: number | undefined, b: number | undefined): number | undefined {
  return a === undefined || b === undefined || b <= 0 ? undefined : a / b;
}

/**
 * The converter's own peak. wait4's ru_maxrss is the larger of deno's peak
 * and the traced Python's (Linux counts reaped descendants), so it is deno's
 * exactly when it exceeds Python's known peak; otherwise the sampled VmHWM,
 * which can miss only the last 10 ms.
 */
function converterRss(run: Run): { bytes: number | undefined; source: string } {
  const { max_rss, own_peak_rss } = run.measurement;
  const python = numberField(run.trace?.other_data, "python_max_rss");
  if (python !== undefined && max_rss > python) return { bytes: max_rss, source: "wait4" };
  return { bytes: own_peak_rss ?? undefined, source: "sampled VmHWM" };
}

/** The figures of one workload on one Python, from its runs. */
interface Summary {
  untraced_s?: number;
  traced_s?: number;
  traced_python_s?: number;
  native_alone_s?: number;
  floor_c_s?: number;
  /** The whole run with a protobuf trace (`-o trace.pftrace`). */
  traced_protobuf_s?: number;
  traced_protobuf_ratio?: number;
  protobuf_trace_bytes?: number;
  protobuf_bytes_per_slice?: number;
  /** JSON bytes per slice over protobuf bytes per slice. */
  json_over_protobuf?: number;
  floor_append_s?: number;
  floor_noop_s?: number;
  cprofile_s?: number;
  filtered_s?: number;
  /** Each kind's time over the untraced one. */
  traced_ratio?: number;
  traced_python_ratio?: number;
  native_alone_ratio?: number;
  floor_c_ratio?: number;
  floor_append_ratio?: number;
  floor_noop_ratio?: number;
  cprofile_ratio?: number;
  filtered_ratio?: number;
  /** (native alone − untraced) / (C floor − untraced): the target is ≤ 2. */
  over_c_floor?: number;
  /** (traced − untraced) / (append floor − untraced), for the Python collector. */
  python_over_append_floor?: number;
  /** The whole-run target of this workload: VizTracer's figure, or 1.5 × cProfile's. */
  target_ratio?: number;
  target_source?: string;
  events?: number;
  events_distinct: number[];
  dropped?: number;
  slices?: number;
  filtered_events?: number;
  events_per_s?: number;
  /** Whole run, traced − untraced, per event. */
  ns_per_event?: number;
  /** The native collector alone, per event. */
  native_ns_per_event?: number;
  trace_bytes?: number;
  bytes_per_event?: number;
  bytes_per_slice?: number;
  python_rss_untraced?: number;
  python_rss_traced?: number;
  converter_rss?: number;
  converter_rss_source?: string;
  floor_append_rss?: number;
}

function medianOf(runs: Run[], kind: Kind, pick: (run: Run) => number | undefined) {
  return median(
    runs.filter((run) => run.kind === kind).map(pick).filter((v): v is number => v !== undefined),
  );
}

/** The whole-run target for `workload` on `version`: VizTracer's fastest path, else 1.5× cProfile. */
function targetFor(
  version: string,
  workload: string,
  cprofileRatio: number | undefined,
): { ratio?: number; source?: string } {
  const viztracer = VIZTRACER[version.split(".").slice(0, 2).join(".")]?.[workload];
  if (viztracer !== undefined) return { ratio: viztracer, source: "VizTracer's fastest path" };
  if (cprofileRatio === undefined) return {};
  return { ratio: cprofileRatio * TARGET_OVER_CPROFILE, source: "1.5 × cProfile" };
}

function summarize(runs: Run[], version: string, workload: string): Summary {
  const wall = (kind: Kind) => medianOf(runs, kind, (run) => run.measurement.wall_s);
  const other = (kind: Kind, key: string) =>
    medianOf(runs, kind, (run) => numberField(run.trace?.other_data, key));
  const untraced = wall("untraced");
  const traced = wall("traced");
  const alone = wall("native_alone");
  const floorC = wall("floor_c");
  const floorAppend = wall("floor_append");
  const tracedPython = wall("traced_python");
  const events = other("traced", "recorded") ?? other("traced", "events");
  const slices = medianOf(runs, "traced", (run) => run.trace?.slices_counted);
  const bytes = medianOf(runs, "traced", (run) => run.trace?.bytes);
  const tracedRuns = runs.filter((run) => run.kind === "traced");
  const protobuf = wall("traced_protobuf");
  const protobufBytes = medianOf(runs, "traced_protobuf", (run) => run.trace?.bytes);
  const protobufSlices = medianOf(runs, "traced_protobuf", (run) => run.trace?.slices_counted);
  const over = (a: number | undefined, floor: number | undefined) =>
    untraced === undefined || a === undefined || floor === undefined
      ? undefined
      : ratio(a - untraced, floor - untraced);
  const perEvent = (time: number | undefined) =>
    events && time !== undefined && untraced !== undefined
      ? (time - untraced) / events * 1e9
      : undefined;
  const cprofileRatio = ratio(wall("cprofile"), untraced);
  const target = targetFor(version, basename(workload, ".py"), cprofileRatio);
  return {
    untraced_s: untraced,
    traced_s: traced,
    traced_python_s: tracedPython,
    native_alone_s: alone,
    floor_c_s: floorC,
    traced_protobuf_s: protobuf,
    traced_protobuf_ratio: ratio(protobuf, untraced),
    protobuf_trace_bytes: protobufBytes,
    protobuf_bytes_per_slice: ratio(protobufBytes, protobufSlices),
    json_over_protobuf: ratio(ratio(bytes, slices), ratio(protobufBytes, protobufSlices)),
    floor_append_s: floorAppend,
    floor_noop_s: wall("floor_noop"),
    cprofile_s: wall("cprofile"),
    filtered_s: wall("filtered"),
    traced_ratio: ratio(traced, untraced),
    traced_python_ratio: ratio(tracedPython, untraced),
    native_alone_ratio: ratio(alone, untraced),
    floor_c_ratio: ratio(floorC, untraced),
    floor_append_ratio: ratio(floorAppend, untraced),
    floor_noop_ratio: ratio(wall("floor_noop"), untraced),
    cprofile_ratio: cprofileRatio,
    filtered_ratio: ratio(wall("filtered"), untraced),
    over_c_floor: over(alone, floorC),
    python_over_append_floor: over(tracedPython, floorAppend),
    target_ratio: target.ratio,
    target_source: target.source,
    events,
    events_distinct: [
      ...new Set(tracedRuns.map((run) => numberField(run.trace?.other_data, "recorded") ?? -1)),
    ],
    dropped: other("traced", "dropped"),
    slices,
    filtered_events: other("filtered", "recorded") ?? other("filtered", "events"),
    events_per_s: ratio(events, traced),
    ns_per_event: perEvent(traced),
    native_ns_per_event: perEvent(alone),
    trace_bytes: bytes,
    bytes_per_event: ratio(bytes, events),
    bytes_per_slice: ratio(bytes, slices),
    python_rss_untraced: medianOf(runs, "untraced", (run) => run.measurement.max_rss),
    python_rss_traced: other("traced", "python_max_rss"),
    converter_rss: medianOf(runs, "traced", (run) => converterRss(run).bytes),
    converter_rss_source: tracedRuns[0] && converterRss(tracedRuns[0]).source,
    floor_append_rss: medianOf(runs, "floor_append", (run) => run.measurement.max_rss),
  };
}

/** What looked wrong in the traces: inconsistent counts, missing fields, drops. */
function checkTraces(label: string, runs: Run[], summary: Summary, engine: string): string[] {
  const problems: string[] = [];
  if (summary.events_distinct.length > 1) {
    problems.push(
      `${label}: recorded events differ between runs: ${summary.events_distinct.join(", ")}`,
    );
  }
  for (const run of runs) {
    const data = run.trace?.other_data;
    if (run.trace === undefined) continue;
    const where = `${label} ${run.kind} run ${run.round}`;
    if (data === undefined) {
      problems.push(`${where}: no readable otherData at the end of the trace`);
      continue;
    }
    const slices = numberField(data, "slices");
    if (slices !== undefined && slices !== run.trace.slices_counted) {
      problems.push(
        `${where}: otherData.slices ${slices} but ${run.trace.slices_counted} ${
          run.kind === "traced_protobuf" ? "BEGIN events" : 'ph:"X" lines'
        }`,
      );
    }
    if (data.complete !== true) {
      problems.push(`${where}: trace not complete (reason ${data.reason})`);
    }
    if (numberField(data, "dropped")) problems.push(`${where}: ${data.dropped} events dropped`);
    if (numberField(data, "events") !== numberField(data, "recorded")) {
      problems.push(`${where}: events ${data.events} received but ${data.recorded} recorded`);
    }
    if (numberField(data, "unfinished")) {
      problems.push(`${where}: ${data.unfinished} unfinished slices`);
    }
    if (data.engine !== engine) {
      problems.push(`${where}: engine ${data.engine}, expected ${engine}`);
    }
    for (const warning of run.warnings ?? []) problems.push(`${where}: ${warning}`);
  }
  return problems;
}

// --- the converter benchmark ------------------------------------------------------------

/** One size of bench/converter.ts: it converts a synthetic stream held in memory. */
interface ConverterRun {
  events?: number;
  /** Protocol records (a batch of up to 8192 events and its flush record each). */
  records?: number;
  seconds?: number;
  events_per_s?: number;
  records_per_s?: number;
  mb_per_s_in?: number;
  mb_per_s_out?: number;
  bytes_per_slice?: number;
  peak_rss_mb?: number;
  /** RSS growth while converting: the peak less the RSS with the input already in memory. */
  rss_growth_mb?: number;
}

interface ConverterFigures {
  runs: ConverterRun[];
  /** The benchmark's own output, kept whole in case its format changes. */
  output: string;
}

function matchNumber(text: string, pattern: RegExp): number | undefined {
  const found = pattern.exec(text)?.[1];
  return found === undefined ? undefined : Number(found.replaceAll(",", ""));
}

/** The figures of one size's paragraph, which starts "N events in R records". */
function parseConverterRun(text: string): ConverterRun {
  const events = matchNumber(text, /^([\d,]+) events in/);
  const records = matchNumber(text, /events in ([\d,]+) records/);
  const seconds = matchNumber(text, /converted in ([\d.]+) s/);
  const peak = matchNumber(text, /peak RSS ([\d.]+) MB/);
  const before = matchNumber(text, /peak RSS [\d.]+ MB \(([\d.]+) MB before/);
  return {
    events,
    records,
    seconds,
    events_per_s: matchNumber(text, /throughput: ([\d,.]+) events\/s/),
    records_per_s: ratio(records, seconds),
    mb_per_s_in: matchNumber(text, /([\d.]+) MB\/s in/),
    mb_per_s_out: matchNumber(text, /([\d.]+) MB\/s out/),
    bytes_per_slice: matchNumber(text, /([\d.]+) bytes per slice/),
    peak_rss_mb: peak,
    rss_growth_mb: peak === undefined || before === undefined ? undefined : peak - before,
  };
}

/**
 * Reads bench/converter.ts's printed figures: it exports no function (its
 * JSON `--child` mode is internal), so its text is the interface.
 */
function parseConverterOutput(output: string): ConverterFigures {
  const paragraphs = output.split(/\n(?=[\d,]+ events in )/).slice(1);
  return { runs: paragraphs.map(parseConverterRun), output };
}

async function runConverterBench(
  events: number | undefined,
  format: "json" | "perfetto",
): Promise<ConverterFigures> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      CONVERTER_BENCH,
      // The native collector's batches (the default input), into this writer.
      "--writer",
      format,
      ...(events === undefined ? [] : [String(events)]),
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(output.stdout).trim();
  if (!output.success) {
    return { runs: [], output: `${text}\n${new TextDecoder().decode(output.stderr)}`.trim() };
  }
  return parseConverterOutput(text);
}

// --- printing ------------------------------------------------------------

function times(value: number | undefined): string {
  if (value === undefined) return "n/a";
  return value >= 10 ? `${value.toFixed(1)}×` : `${value.toFixed(2)}×`;
}

interface WorkloadResult {
  python: TestPython;
  engine: string;
  workload: string;
  runs: Run[];
  summary: Summary;
}

function spread(runs: Run[], kind: Kind): [string, string] {
  const walls = runs.filter((run) => run.kind === kind).map((run) => run.measurement.wall_s);
  if (walls.length === 0) return ["", ""];
  return [seconds(Math.min(...walls)), seconds(Math.max(...walls))];
}

function filteredLine(result: WorkloadResult): string | undefined {
  if (result.summary.filtered_s === undefined) return undefined;
  const command = `--include ${FILTER_ARGS[1]}`;
  const { filtered_ratio, filtered_events, filtered_s } = result.summary;
  const target = engineFor(result.python.version) === "monitoring"
    ? ` (target ≤ ${TARGET_FILTERED}× on 3.12+)`
    : "";
  return `filtered (${command}): ${seconds(filtered_s)}, ${
    times(filtered_ratio)
  } untraced${target}, ` +
    `${count(filtered_events)} events`;
}

const KIND_LABELS: Record<Kind, string> = {
  untraced: "untraced",
  traced: "traced (native)",
  traced_protobuf: "traced, protobuf",
  traced_python: "traced (python)",
  native_alone: "native, no converter",
  floor_c: "floor: C",
  floor_append: "floor: Py append",
  floor_noop: "floor: Py no-op",
  cprofile: "cProfile",
  filtered: "filtered (native)",
};

function formatWorkload(result: WorkloadResult, reps: string): string {
  const { summary: s, runs } = result;
  const rows = [["", "median", "min", "max", "× untraced"]];
  const untraced = s.untraced_s;
  for (const kind of ALL_KINDS) {
    if (!runs.some((run) => run.kind === kind)) continue;
    const wall = medianOf(runs, kind, (run) => run.measurement.wall_s);
    rows.push([
      KIND_LABELS[kind],
      seconds(wall),
      ...spread(runs, kind),
      times(ratio(wall, untraced)),
    ]);
  }
  const rounds = Math.max(...runs.map((run) => run.round));
  const sameEvents = s.events_distinct.length > 1
    ? "DIFFER between runs"
    : rounds === 1
    ? "1 run"
    : `same in all ${rounds} runs`;
  const target = s.target_ratio === undefined
    ? "no target figure"
    : `target ≤ ${times(s.target_ratio)} (${s.target_source})${
      s.traced_ratio === undefined ? "" : s.traced_ratio <= s.target_ratio ? ": met" : ": MISSED"
    }`;
  const lines = [
    `${basename(result.workload)} · Python ${result.python.version} (${result.engine}) · ` +
    `${rounds} run${rounds === 1 ? "" : "s"} · BENCH_REPS ${reps}`,
    table(rows).replace(/^/gm, "  "),
    `  whole run, native: ${times(s.traced_ratio)} untraced; ${target}`,
    `  native collector alone: ${times(s.over_c_floor)} the C floor's cost (target ≤ ` +
    `${TARGET_OVER_C_FLOOR}×); ${s.native_ns_per_event?.toFixed(1) ?? "n/a"} ns per event, ` +
    `${s.ns_per_event?.toFixed(1) ?? "n/a"} ns per event for the whole run`,
    `  python collector: ${times(s.traced_python_ratio)} untraced, ` +
    `${times(s.python_over_append_floor)} the Python append floor's cost`,
    `  events: ${count(s.events)} recorded (${sameEvents}), ${count(s.dropped)} dropped, ` +
    `${count(s.events_per_s)} events/s traced`,
    `  trace: ${megabytes(s.trace_bytes)}, ${count(s.slices)} slices, ` +
    `${s.bytes_per_event?.toFixed(1) ?? "n/a"} B/event, ${
      s.bytes_per_slice?.toFixed(1) ?? "n/a"
    } B/slice`,
    `  protobuf trace: ${megabytes(s.protobuf_trace_bytes)}, ${
      s.protobuf_bytes_per_slice?.toFixed(1) ?? "n/a"
    } B/slice, ${
      times(s.json_over_protobuf)
    } smaller than JSON (target ≥ ${TARGET_PROTOBUF_SMALLER}×)`,
    `  peak RSS: Python ${megabytes(s.python_rss_untraced)} untraced, ` +
    `${
      s.python_rss_traced === undefined
        ? "n/a (no otherData.python_max_rss)"
        : megabytes(s.python_rss_traced)
    } traced; ` +
    `converter ${megabytes(s.converter_rss)} (${s.converter_rss_source ?? "n/a"}); ` +
    `append floor ${megabytes(s.floor_append_rss)}`,
  ];
  const filtered = filteredLine(result);
  if (filtered) lines.push(`  ${filtered}`);
  return lines.join("\n");
}

function formatSummary(results: WorkloadResult[]): string {
  const rows = [[
    "Python",
    "workload",
    "untraced",
    "native",
    "target",
    "cProfile",
    "python",
    "alone",
    "C floor",
    "over C floor",
    "events/s",
    "B/slice",
    "pf traced",
    "pf B/slice",
    "JSON/pf",
    "Py RSS",
    "deno RSS",
  ]];
  for (const { python, workload, summary: s } of results) {
    rows.push([
      python.version,
      basename(workload, ".py"),
      seconds(s.untraced_s),
      times(s.traced_ratio),
      times(s.target_ratio),
      times(s.cprofile_ratio),
      times(s.traced_python_ratio),
      times(s.native_alone_ratio),
      times(s.floor_c_ratio),
      times(s.over_c_floor),
      count(s.events_per_s),
      s.bytes_per_slice?.toFixed(0) ?? "n/a",
      seconds(s.traced_protobuf_s),
      s.protobuf_bytes_per_slice?.toFixed(1) ?? "n/a",
      times(s.json_over_protobuf),
      s.python_rss_traced === undefined ? "n/a" : megabytes(s.python_rss_traced),
      megabytes(s.converter_rss),
    ]);
  }
  return table(rows);
}

// --- against the last committed results ------------------------------------------------

/** A figure of the summary where higher is worse, with its name in the report. */
const COMPARED: [keyof Summary, string][] = [
  ["traced_ratio", "whole run, native"],
  ["traced_python_ratio", "whole run, python collector"],
  ["native_alone_ratio", "native collector alone"],
  ["filtered_ratio", "filtered run"],
  ["bytes_per_slice", "bytes per slice"],
  ["converter_rss", "converter peak RSS"],
];

/** How much worse a figure must be to be reported: the machines are noisy. */
const WORSE_BY = 0.15;

/**
 * The summaries of the last committed results (`git show HEAD:…/latest.json`),
 * by "version workload". Results from before the native collector have one
 * traced run, the Python collector's: their `traced_ratio` is compared with
 * `traced_python_ratio`.
 */
function committedSummaries(): Map<string, Partial<Summary>> {
  const text = git(["show", "HEAD:bench/results/latest.json"]);
  const byKey = new Map<string, Partial<Summary>>();
  if (text === undefined) return byKey;
  let data: { schema?: number; results?: { python: string; workload: string; summary: Summary }[] };
  try {
    data = JSON.parse(text);
  } catch {
    return byKey;
  }
  for (const result of data.results ?? []) {
    const summary: Partial<Summary> = { ...result.summary };
    if ((data.schema ?? 1) < 2) {
      summary.traced_python_ratio = summary.traced_ratio;
      delete summary.traced_ratio;
    }
    byKey.set(`${result.python} ${basename(result.workload, ".py")}`, summary);
  }
  return byKey;
}

/** Where this run is worse than the last committed one, by more than WORSE_BY. */
function regressions(results: WorkloadResult[], before: Map<string, Partial<Summary>>): string[] {
  const lines: string[] = [];
  for (const { python, workload, summary } of results) {
    const key = `${python.version} ${basename(workload, ".py")}`;
    const old = before.get(key);
    if (old === undefined) continue;
    for (const [field, name] of COMPARED) {
      const now = summary[field];
      const then = old[field];
      if (typeof now !== "number" || typeof then !== "number" || then <= 0) continue;
      if (now > then * (1 + WORSE_BY)) {
        const format = field.endsWith("_rss") ? megabytes : field.endsWith("ratio") ? times : (
          (v: number) => v.toFixed(0)
        );
        lines.push(
          `${key}: ${name} ${format(then)} → ${format(now)} (+${
            ((now / then - 1) * 100).toFixed(0)
          }%)`,
        );
      }
    }
  }
  return lines;
}

function formatConverterRun(run: ConverterRun): string {
  return `  ${count(run.events)} events: ${count(run.events_per_s)} events/s, ` +
    `${count(run.records_per_s)} records/s, ${run.mb_per_s_in ?? "n/a"} MB/s in, ` +
    `${run.mb_per_s_out ?? "n/a"} MB/s out, ${run.bytes_per_slice ?? "n/a"} B/slice, ` +
    `peak RSS ${run.peak_rss_mb ?? "n/a"} MB (+${run.rss_growth_mb?.toFixed(1) ?? "n/a"} MB ` +
    `while converting; the rest is the input held in memory)`;
}

function formatConverter(figures: ConverterFigures, format: string): string {
  const readable = figures.runs.filter((run) => run.events_per_s !== undefined);
  if (readable.length === 0) {
    return `converter benchmark (${format}): could not read its figures:\n${figures.output}`;
  }
  return `converter alone, writing ${format} (bench/converter.ts --writer ${format}):\n` +
    readable.map(formatConverterRun).join("\n");
}

// --- saving ------------------------------------------------------------

/** Writes the results as `latest.json` and a dated copy (a quick run only as `quick.json`). */
async function saveResults(dir: string, quick: boolean, results: unknown): Promise<string[]> {
  await Deno.mkdir(dir, { recursive: true });
  const text = JSON.stringify(results, null, 2) + "\n";
  const names = quick ? ["quick.json"] : ["latest.json", `overhead-${resultsStamp()}Z.json`];
  for (const name of names) await Deno.writeTextFile(join(dir, name), text);
  return names.map((name) => join(dir, name));
}

/**
 * The collector is being edited while benchmarks run: a run that spans an
 * edit mixes two collectors, and says so.
 */
async function checkCollectorUnchanged(before: string): Promise<string[]> {
  const after = await sha256(join(ROOT, "collector.py"));
  if (after === before) return [];
  return [
    `collector.py changed during the run (sha256 ${before.slice(0, 12)}… → ` +
    `${after.slice(0, 12)}…): the runs may mix two versions`,
  ];
}

// --- main ------------------------------------------------------------

/** Fills the caches (deno's transpiled modules) so that the first traced run is not slower. */
function warmUp(): void {
  new Deno.Command(Deno.execPath(), { args: ["run", "-A", MAIN, "--version"], stdout: "null" })
    .outputSync();
}

/**
 * The fixed cost in every traced time: deno starting and loading main.ts
 * (`--version`), the median of `runs` runs. It weighs on short workloads.
 */
async function measureStartup(wrapper: string, runs: number): Promise<number | undefined> {
  const walls: number[] = [];
  for (let i = 0; i < runs; i++) {
    const command = [Deno.execPath(), "run", "-A", MAIN, "--version"];
    walls.push((await measure(wrapper, command, {})).measurement.wall_s);
  }
  return median(walls);
}

/** The native collector and the C floor, built for `python` (cached after the first time). */
async function buildModules(python: TestPython): Promise<{ native: string; floor: string }> {
  const info = await probePython(python.path);
  const native = await buildNative(info);
  const floor = await buildNative(info, {
    source: await Deno.readTextFile(FLOOR_C),
    moduleName: "_panopticon_floor",
  });
  return { native: native.path, floor: floor.path };
}

async function benchmark(options: Options): Promise<number> {
  const machine = machineInfo();
  // Found once, when tests/_pythons.ts is loaded.
  const found = [...TEST_PYTHONS];
  const pythons = choosePythons(options, found);
  const wrapper = chooseWrapper(found, pythons);
  const workloads = listWorkloads(options.workloadsDir, options.workloads);
  const code = await codeInfo();
  const committed = committedSummaries();
  const reps = options.reps ?? Deno.env.get("BENCH_REPS") ?? "default";
  const env: Record<string, string> = options.reps ? { BENCH_REPS: options.reps } : {};
  warmUp();
  console.error(
    `load average at start: ${machine.load_average_start.map((v) => v.toFixed(2)).join(" ")} ` +
      `on ${machine.cores} cores`,
  );

  const tempDir = await Deno.makeTempDir({ prefix: "panopticon-bench-" });
  const channel = new DiscardingChannel(tempDir);
  const results: WorkloadResult[] = [];
  const warnings: string[] = [];
  try {
    for (const python of pythons) {
      const engine = engineFor(python.version);
      const modules = await buildModules(python);
      for (const workload of workloads) {
        const context = {
          wrapper,
          python,
          engine,
          workload,
          env,
          tracePath: join(tempDir, "trace.json"),
          protobufPath: join(tempDir, "trace.pftrace"),
          channel,
          ...modules,
        };
        const runs = await runWorkload(context, kindsFor(workload, options.kinds), options.runs);
        const summary = summarize(runs, python.version, workload);
        const result = { python, engine, workload, runs, summary };
        results.push(result);
        warnings.push(
          ...checkTraces(`${python.version} ${basename(workload)}`, runs, summary, engine),
        );
        console.log(formatWorkload(result, reps) + "\n");
      }
    }
  } finally {
    channel.close();
    await Deno.remove(tempDir, { recursive: true });
  }
  if (results.some((result) => result.summary.python_rss_traced === undefined)) {
    warnings.push("otherData.python_max_rss is missing: the traced Python's peak RSS is n/a");
  }
  warnings.push(...await checkCollectorUnchanged(code.collector_sha256));

  console.error("converter benchmark…");
  const converter = await runConverterBench(options.converterEvents, "json");
  const converterProtobuf = await runConverterBench(options.converterEvents, "perfetto");
  const startup = await measureStartup(wrapper, options.runs);
  machine.load_average_end = Deno.loadavg();
  const worse = regressions(results, committed);

  console.log(formatSummary(results));
  console.log("\n" + formatConverter(converter, "json"));
  console.log("\n" + formatConverter(converterProtobuf, "perfetto"));
  console.log(`\ndeno start-up (main.ts --version), in every traced time: ${seconds(startup)}`);
  console.log(
    `\nload average: ${machine.load_average_start.map((v) => v.toFixed(2)).join(" ")} at start, ` +
      `${
        machine.load_average_end.map((v) => v.toFixed(2)).join(" ")
      } at end (${machine.cores} cores)`,
  );
  console.log(
    committed.size === 0
      ? "\nno committed results to compare with (bench/results/latest.json at HEAD)"
      : worse.length === 0
      ? `\nagainst the committed results: nothing worse by more than ${WORSE_BY * 100}%`
      : `\nWORSE than the committed results (by more than ${WORSE_BY * 100}%):\n` +
        worse.map((line) => `  - ${line}`).join("\n"),
  );
  if (warnings.length > 0) {
    console.log("\nwarnings:\n" + warnings.map((w) => `  - ${w}`).join("\n"));
  }

  const saved = await saveResults(options.resultsDir, options.quick, {
    benchmark: "overhead",
    schema: 2,
    date: new Date().toISOString(),
    command: ["deno", "task", "bench", ...Deno.args].join(" "),
    machine,
    code,
    settings: {
      runs: options.runs,
      bench_reps: reps,
      workloads_dir: options.workloadsDir,
      kinds: options.kinds,
      filter_args: FILTER_ARGS,
      quick: options.quick,
    },
    pythons: pythons.map(({ path, version }) => ({ path, version, engine: engineFor(version) })),
    results: results.map(({ python, engine, workload, runs, summary }) => ({
      python: python.version,
      engine,
      workload: basename(workload),
      summary,
      runs,
    })),
    regressions: worse,
    converter,
    converter_protobuf: converterProtobuf,
    deno_startup_s: startup,
    warnings,
  });
  console.log(`\nresults: ${saved.join(", ")}`);
  return 0;
}

if (import.meta.main) Deno.exit(await runBenchmark(Deno.args, parseOptions, HELP, benchmark));
