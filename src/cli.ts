/**
 * The command-line model: {@linkcode parseCommandLine} turns `argv` into a
 * {@linkcode CliCommand}, and {@linkcode HELP_TEXT} documents it.
 *
 * Panopticon's own options come first. The program to trace (a script path,
 * `-c CODE` or `-m MODULE`) ends them, exactly as for `python` itself, and
 * every argument after it belongs to the program, even one that looks like
 * one of ours: `panopticon -o t.json script.py -o x` passes `-o x` to
 * `script.py`. `--` also ends our options; the argument after it is the
 * script.
 *
 * @module
 */

import { SUMMARY_SORT_KEYS, type SummarySortKey } from "./summary.ts";
import { VIEW_PORT } from "./view.ts";
import {
  extensionOf,
  formatOfPath,
  type OutputFormat,
  TRACE_FORMATS,
  type TraceFormat,
} from "./trace_format.ts";

/** Which hook the collector uses to see the program's calls. */
export type Engine = "auto" | "setprofile" | "monitoring";

/** Every value `--engine` accepts, in the order the help text lists them. */
export const ENGINES: readonly Engine[] = ["auto", "setprofile", "monitoring"];

/**
 * Which collector records: the native one (a C module built for the
 * interpreter), the Python one, or `auto`: native where it can be built.
 */
export type Collector = "auto" | "native" | "python";

/** Every value `--collector` accepts, in the order the help text lists them. */
export const COLLECTORS: readonly Collector[] = ["auto", "native", "python"];

/** What the traced interpreter runs, as `python` would be told to run it. */
export type Target =
  /** `panopticon script.py args…`: a file (or `-` for standard input). */
  | { kind: "script"; path: string; args: string[] }
  /** `panopticon -c CODE args…`: a program passed as a string. */
  | { kind: "code"; code: string; args: string[] }
  /** `panopticon -m module args…`: a module run as `__main__`. */
  | { kind: "module"; module: string; args: string[] };

/** What a filter pattern is matched against. */
export type PatternKind = "module" | "file" | "function";

/** Every kind of filter pattern, in the order the help text lists them. */
export const PATTERN_KINDS: readonly PatternKind[] = ["module", "file", "function"];

/**
 * A filter pattern in its explicit form, `KIND:GLOB`: `module:` matches the
 * module's `__name__`, `file:` the code's file name and `function:` its
 * qualified name; GLOB is fnmatch-style (`*`, `?`, `[...]`) and
 * case-sensitive.
 */
export type FilterPattern = `${PatternKind}:${string}`;

/**
 * What the collector records. A Python function is recorded when it matches
 * one of `include` (or `include` is empty) and none of `exclude`; a C call
 * is recorded when the Python code that makes it is.
 */
export interface Filters {
  /**
   * `--include`: record only the code these patterns select.
   *
   * @default {[]} (all code)
   */
  include: FilterPattern[];
  /**
   * `--exclude`: never record the code these patterns select.
   *
   * @default {[]}
   */
  exclude: FilterPattern[];
  /**
   * `--exclude-stdlib`: do not record the standard library and the import
   * machinery (the collector decides what that is).
   *
   * @default {false}
   */
  excludeStdlib: boolean;
  /**
   * Record calls of C functions; `--no-c-calls` turns this off.
   *
   * @default {true}
   */
  cCalls: boolean;
}

/**
 * What the collector records of the runtime's own work, besides calls
 * (docs/protocol.md, "The runtime").
 */
export interface RuntimeOptions {
  /**
   * A slice for each garbage collection (`--gc`, the default; `--no-gc`
   * leaves them out).
   *
   * @default {true}
   */
  gc: boolean;
  /**
   * A counter track of each thread's CPU time (`--no-cpu-counters` leaves
   * them out).
   *
   * @default {true}
   */
  cpuCounters: boolean;
  /**
   * asyncio tasks: their names on their coroutine's slices, a track each,
   * and an arrow from where each was created (`--no-tasks` leaves them
   * out).
   *
   * @default {true}
   */
  tasks: boolean;
  /**
   * Each slice's thread CPU time (`--cpu-time`): `tts` and `tdur` in JSON,
   * `thread_time_absolute_us` in Perfetto protobuf.
   *
   * @default {false}
   */
  threadTime?: boolean;
}

/**
 * What the collector records beyond the calls (`docs/protocol.md`,
 * "Exceptions and values"): exceptions, arguments and return values.
 */
export interface Details {
  /**
   * `--exceptions` (`true`) or `--no-exceptions` (`false`): record each
   * exception raised in recorded code, where it was caught, and whether it
   * was swallowed.
   *
   * @default {undefined} (on with the monitoring engine, Python 3.12+; off before)
   */
  exceptions?: boolean;
  /**
   * `--repr`: show values (an exception's message) by the program's own
   * `__str__` and `__repr__`, guarded, rather than only those Panopticon can
   * render without running the program's code.
   *
   * @default {false}
   */
  repr: boolean;
  /**
   * `--args`: record the arguments of the calls of the code these patterns
   * (those of `--include`) select, by parameter name.
   *
   * @default {[]}
   */
  args?: FilterPattern[];
  /**
   * `--returns`: record what the code these patterns select returns or
   * yields.
   *
   * @default {[]}
   */
  returns?: FilterPattern[];
  /**
   * `--lines`: record each line that the code these patterns select runs,
   * as an instant in its slice.
   *
   * @default {[]}
   */
  lines?: FilterPattern[];
}

/** Run a program under the collector and write its trace. */
export interface TraceCommand {
  kind: "trace";
  /** The program and its arguments. */
  target: Target;
  /** Where the trace goes: `--output`, or {@linkcode defaultOutput}. */
  output: string;
  /**
   * The trace's format, when it is not JSON: from `--format`, or from the
   * output's name (`.pftrace`, `.perfetto-trace`).
   *
   * @default {undefined} (a Catapult JSON trace)
   */
  format?: TraceFormat;
  /**
   * Whether the trace is gzipped as it is written: `--gzip`, or an output
   * named `….gz`.
   *
   * @default {undefined} (not compressed)
   */
  gzip?: boolean;
  /** The interpreter from `--python`, if given. */
  python?: string;
  /**
   * The collector's hook.
   *
   * @default {"auto"}
   */
  engine: Engine;
  /**
   * `--collector`: which collector records.
   *
   * @default {"auto"}
   */
  collector?: Collector;
  /**
   * The collector's filters, present only when one is given (`--include`,
   * `--exclude`, `--exclude-stdlib`, `--no-c-calls`).
   *
   * @default {undefined} (every call is recorded)
   */
  filters?: Filters;
  /**
   * What is recorded beyond the calls, present only when an option asks
   * for something (`--exceptions`, `--no-exceptions`, `--repr`).
   *
   * @default {undefined} (exceptions where they cost little)
   */
  details?: Details;
  /**
   * `--max-depth`: the converter leaves out slices nested deeper than this.
   *
   * @default {undefined} (no limit)
   */
  maxDepth?: number;
  /**
   * `--max-events`: the collector stops recording after this many events
   * (and says so); the program runs on.
   *
   * @default {undefined} (no limit)
   */
  maxEvents?: number;
  /**
   * `--manual`: record only inside the program's `panopticon.trace()`
   * blocks and `panopticon.traced` calls.
   *
   * @default {false}
   */
  manual?: boolean;
  /**
   * `--no-follow` sets it to false: trace the program's own process only,
   * not the Python processes it starts.
   *
   * @default {true}
   */
  follow?: boolean;
  /**
   * `--summary`: print the top rows of the trace's summary on stderr after
   * the run's line.
   *
   * @default {false}
   */
  summary?: boolean;
  /**
   * `--view`: open the trace in the Perfetto UI when the run ends.
   *
   * @default {false}
   */
  view?: boolean;
  /**
   * What is recorded of the runtime's own work, present only when an
   * option changes it (`--no-gc`, `--no-cpu-counters`, `--no-tasks`,
   * `--cpu-time`).
   *
   * @default {undefined} (garbage collections and CPU counters)
   */
  runtime?: RuntimeOptions;
}

/** `panopticon convert`: turn a recorded NDJSON record stream into a trace. */
export interface ConvertCommand {
  kind: "convert";
  /** The record stream's file; `-` is standard input. */
  input: string;
  /** Where the trace goes: `--output`, or the input's name with `.json` (`.pftrace`, `.json.gz`). */
  output: string;
  /** `--format`, or the output's name, as for tracing. */
  format?: TraceFormat;
  /** `--gzip`, or an output named `….gz`, as for tracing. */
  gzip?: boolean;
  /** `--max-depth`, as for tracing. */
  maxDepth?: number;
}

/** `panopticon summary TRACE`: print a table of the trace's functions. */
export interface SummaryCommand {
  kind: "summary";
  /** The trace or recording; `-` is standard input. */
  input: string;
  /**
   * `--sort`: what the function table is sorted by.
   *
   * @default {"self"}
   */
  sort: SummarySortKey;
  /** `--top N`: the most rows of each table. */
  top?: number;
  /** `--thread NAME`: only that thread's slices. */
  thread?: string;
  /**
   * `--json`: the report as JSON on stdout, for scripts.
   *
   * @default {false}
   */
  json: boolean;
}

/** `panopticon view TRACE`: serve the trace to the Perfetto UI and open it. */
export interface ViewCommand {
  kind: "view";
  /** The trace file. */
  input: string;
  /**
   * `--port N`: where it is served, on 127.0.0.1.
   *
   * @default {9001} (the one port ui.perfetto.dev fetches traces from)
   */
  port: number;
  /**
   * Start a browser (`--no-open`: only print the address).
   *
   * @default {true}
   */
  open: boolean;
}

/** `panopticon build-native`: build the native collector ahead of time, and report. */
export interface BuildNativeCommand {
  kind: "build-native";
  /** The interpreter from `--python`, if given. */
  python?: string;
}

/** Everything the command line can ask for. */
export type CliCommand =
  | TraceCommand
  | ConvertCommand
  | SummaryCommand
  | ViewCommand
  | BuildNativeCommand
  /** `panopticon python-module`: print the collector, importable as `panopticon`. */
  | { kind: "python-module" }
  /** `-h`, `--help`: print {@linkcode HELP_TEXT}. */
  | { kind: "help" }
  /** `-V`, `--version`: print the version. */
  | { kind: "version" };

/** A command line that cannot be understood; `main.ts` exits with status 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** The trace file name used when `-c CODE` or a script read from stdin runs. */
export const FALLBACK_OUTPUT = "panopticon.trace.json";

/**
 * The trace file used when `--output` is not given: in the current
 * directory, named after the program: `<script stem>.trace.json`
 * (`src/app.py` → `app.trace.json`), `<module>.trace.json` for `-m`
 * (`-m http.server` → `http.server.trace.json`), and
 * `panopticon.trace.json` for `-c` and for a script read from stdin (`-`).
 * Another format ends the name as it should: `app.pftrace`,
 * `app.trace.json.gz`.
 */
export function defaultOutput(
  target: Target,
  format: OutputFormat = { format: "json", gzip: false },
): string {
  const name = jsonOutput(target);
  if (format.format === "json") return format.gzip ? `${name}.gz` : name;
  return name.replace(/\.trace\.json$/, extensionOf(format));
}

function jsonOutput(target: Target): string {
  switch (target.kind) {
    case "script": {
      const base = target.path.replace(/[\\/]+$/, "").split(/[\\/]/).pop() ?? "";
      const stem = base.replace(/\.pyw?$|\.pyc$|\.pyz$|\.zip$/i, "");
      if (target.path === "-" || stem === "" || stem === "." || stem === "..") {
        return FALLBACK_OUTPUT;
      }
      return `${stem}.trace.json`;
    }
    case "module":
      return `${target.module}.trace.json`;
    case "code":
      return FALLBACK_OUTPUT;
  }
}

const SEE_HELP = "see panopticon --help";

/** Our options that take a value, by every spelling. */
const VALUE_OPTIONS: Record<
  string,
  | "output"
  | "python"
  | "engine"
  | "collector"
  | "include"
  | "exclude"
  | "maxDepth"
  | "format"
  | "maxEvents"
  | "args"
  | "returns"
  | "lines"
> = {
  "-o": "output",
  "--output": "output",
  "--python": "python",
  "--engine": "engine",
  "--collector": "collector",
  "--include": "include",
  "--exclude": "exclude",
  "--max-depth": "maxDepth",
  "--format": "format",
  "--max-events": "maxEvents",
  "--args": "args",
  "--returns": "returns",
  "--lines": "lines",
};

/** The options of {@linkcode RuntimeOptions}: each sets one of them. */
const RUNTIME_FLAGS = ["--gc", "--no-gc", "--no-cpu-counters", "--no-tasks", "--cpu-time"];

/** Our options that take no value. */
const FLAGS = [
  "--help",
  "--version",
  "--exclude-stdlib",
  "--no-c-calls",
  "--manual",
  "--no-follow",
  "--summary",
  "--view",
  "--gzip",
  "--exceptions",
  "--no-exceptions",
  "--repr",
  ...RUNTIME_FLAGS,
];

const PATTERN_FORMS = "use module:GLOB, file:GLOB or function:GLOB";

const EXAMPLE_PATTERNS: Record<PatternKind, FilterPattern> = {
  module: "module:myapp.*",
  file: "file:*/src/*.py",
  function: "function:Handler.*",
};

/**
 * The explicit form of the `--include`/`--exclude` pattern `pattern`: a
 * `KIND:` prefix is checked and kept; a bare pattern is a file pattern when
 * it contains `/` or ends in `.py`, else a module pattern.
 */
function filterPattern(option: string, pattern: string): FilterPattern {
  const colon = pattern.indexOf(":");
  // Text before the first colon is a prefix unless it holds a "/": then the
  // colon is part of a bare file path ("*/a:b/*.py").
  if (colon !== -1 && !pattern.slice(0, colon).includes("/")) {
    const kind = pattern.slice(0, colon);
    const glob = pattern.slice(colon + 1);
    if (!(PATTERN_KINDS as readonly string[]).includes(kind)) {
      throw new UsageError(
        `unknown pattern kind "${kind}" in ${option} "${pattern}": ${PATTERN_FORMS}`,
      );
    }
    if (glob === "") {
      throw new UsageError(
        `empty pattern in ${option} "${pattern}": give a glob after "${kind}:", ` +
          `e.g. ${EXAMPLE_PATTERNS[kind as PatternKind]}`,
      );
    }
    return `${kind as PatternKind}:${glob}`;
  }
  if (pattern === "") throw new UsageError(`empty pattern in ${option}: ${PATTERN_FORMS}`);
  if (pattern.includes("\n")) {
    throw new UsageError(
      `a pattern in ${option} cannot hold a newline: ${JSON.stringify(pattern)}`,
    );
  }
  return pattern.includes("/") || pattern.endsWith(".py") ? `file:${pattern}` : `module:${pattern}`;
}

/** `--format`'s value: one of {@linkcode TRACE_FORMATS}. */
function formatOf(value: string): TraceFormat {
  if (!(TRACE_FORMATS as readonly string[]).includes(value)) {
    throw new UsageError(
      `unknown format "${value}": choose one of ${TRACE_FORMATS.join(", ")} ` +
        "(--gzip compresses either)",
    );
  }
  return value as TraceFormat;
}

const FORMAT_NAMES: Record<TraceFormat, string> = {
  json: "a JSON trace",
  perfetto: "a Perfetto protobuf trace",
};

/**
 * The format of a trace written to `output` (undefined: the default name)
 * with `--format` (`requested`) and `--gzip`: a name ending in `.json`,
 * `.pftrace`, `.perfetto-trace` (and `.gz`) decides, and must agree with
 * the options; any other name takes the options, JSON by default.
 */
function outputFormat(
  output: string | undefined,
  requested: TraceFormat | undefined,
  gzip: boolean,
): OutputFormat {
  const named = output === undefined ? undefined : formatOfPath(output);
  if (output === undefined || named === undefined) {
    return { format: requested ?? "json", gzip };
  }
  if (requested !== undefined && requested !== named.format) {
    throw new UsageError(
      `--format ${requested} does not match the output "${output}", a name for ` +
        `${FORMAT_NAMES[named.format]}: name it ….${
          extensionOf({ format: requested, gzip: named.gzip }).slice(1)
        } or leave out --format`,
    );
  }
  if (gzip && !named.gzip) {
    throw new UsageError(
      `--gzip compresses the trace, but the output "${output}" is not named ….gz: ` +
        `name it "${output}.gz"`,
    );
  }
  return named;
}

/** Sets a command's `format` and `gzip` fields, present only when they are not the default. */
function setFormat(command: { format?: TraceFormat; gzip?: boolean }, format: OutputFormat): void {
  if (format.format !== "json") command.format = format.format;
  if (format.gzip) command.gzip = true;
}

/** The value of `--max-depth` or `--max-events`: a positive whole number. */
function wholeNumberOf(option: string, value: string): number {
  const depth = Number(value);
  if (!/^[0-9]+$/.test(value) || !Number.isSafeInteger(depth) || depth < 1) {
    throw new UsageError(`option "${option}" needs a positive whole number, not "${value}"`);
  }
  return depth;
}

/**
 * Parses Panopticon's command line (without the executable's own name).
 *
 * Throws {@linkcode UsageError} for an unknown option, an option without its
 * value, a bad `--engine`, `--include`/`--exclude` pattern or `--max-depth`,
 * or a missing program.
 *
 * @example Options before the script, the program's arguments after it
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseCommandLine } from "./cli.ts";
 *
 * assert.deepEqual(parseCommandLine(["-o", "t.json", "app.py", "-o", "x"]), {
 *   kind: "trace",
 *   target: { kind: "script", path: "app.py", args: ["-o", "x"] },
 *   output: "t.json",
 *   engine: "auto",
 * });
 * ```
 *
 * @example Filters: bare patterns get their explicit kind
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseCommandLine } from "./cli.ts";
 *
 * const command = parseCommandLine([
 *   "--include", "myapp.*", "--exclude=tests/test_*.py", "--exclude-stdlib", "app.py",
 * ]);
 * assert.equal(command.kind, "trace");
 * assert.deepEqual(command.filters, {
 *   include: ["module:myapp.*"],
 *   exclude: ["file:tests/test_*.py"],
 *   excludeStdlib: true,
 *   cCalls: true,
 * });
 * ```
 */
export function parseCommandLine(argv: readonly string[]): CliCommand {
  // A subcommand is only ever the first argument: a script of that name
  // runs as `panopticon ./convert` or `panopticon -- convert`.
  if (argv[0] === "convert") return parseConvert(argv.slice(1));
  if (argv[0] === "build-native") return parseBuildNative(argv.slice(1));
  if (argv[0] === "summary") return parseSummary(argv.slice(1));
  if (argv[0] === "view") return parseView(argv.slice(1));
  if (argv[0] === "python-module") {
    if (argv[1] === "-h" || argv[1] === "--help") return { kind: "help" };
    if (argv.length > 1) {
      throw new UsageError(`"python-module" takes no arguments, got "${argv[1]}": ${SEE_HELP}`);
    }
    return { kind: "python-module" };
  }
  let output: string | undefined;
  let python: string | undefined;
  let engine: Engine = "auto";
  let collector: Collector = "auto";
  let target: Target | undefined;
  const include: FilterPattern[] = [];
  const exclude: FilterPattern[] = [];
  let excludeStdlib = false;
  let cCalls = true;
  let maxDepth: number | undefined;
  let maxEvents: number | undefined;
  let format: TraceFormat | undefined;
  let gzip = false;
  let manual = false;
  const runtime: RuntimeOptions = { gc: true, cpuCounters: true, tasks: true };
  let exceptions: boolean | undefined;
  let repr = false;
  const args: FilterPattern[] = [];
  const returns: FilterPattern[] = [];
  const lines: FilterPattern[] = [];
  let follow = true;
  let summary = false;
  let view = false;

  let i = 0;
  const takeValue = (option: string): string => {
    const value = argv[i + 1];
    // A following option is far more likely a forgotten value than a file
    // name; `--output=-x` or `-o./-x` still name such a file. A negative
    // number after --max-depth is its value, so the error says what is wrong.
    const negative = (option === "--max-depth" || option === "--max-events") &&
      /^-[0-9]/.test(value ?? "");
    if (value === undefined || (value.startsWith("-") && !negative)) {
      throw new UsageError(`option "${option}" needs a value: ${SEE_HELP}`);
    }
    i++;
    return value;
  };
  const takeProgram = (option: string, attached: string): string => {
    if (attached !== "") return attached;
    const value = argv[i + 1];
    if (value === undefined) {
      const what = option === "-c" ? "the code to run" : "a module name";
      throw new UsageError(`option "${option}" needs ${what}: ${SEE_HELP}`);
    }
    i++;
    return value;
  };

  for (; i < argv.length && target === undefined; i++) {
    const arg = argv[i]!;
    if (arg === "--") {
      const path = argv[i + 1];
      if (path === undefined) {
        throw new UsageError(`no program to trace after "--": ${SEE_HELP}`);
      }
      target = { kind: "script", path, args: argv.slice(i + 2) };
      break;
    }
    if (arg === "-" || !arg.startsWith("-")) {
      target = { kind: "script", path: arg, args: argv.slice(i + 1) };
      break;
    }
    if (arg === "-h" || arg === "--help") return { kind: "help" };
    if (arg === "-V" || arg === "--version") return { kind: "version" };
    if (arg === "--exclude-stdlib") {
      excludeStdlib = true;
      continue;
    }
    if (arg === "--no-c-calls") {
      cCalls = false;
      continue;
    }
    if (arg === "--manual") {
      manual = true;
      continue;
    }
    if (arg === "--no-follow") {
      follow = false;
      continue;
    }
    if (arg === "--summary") {
      summary = true;
      continue;
    }
    if (arg === "--view") {
      view = true;
      continue;
    }
    if (arg === "--gzip") {
      gzip = true;
      continue;
    }
    if (arg === "--exceptions" || arg === "--no-exceptions") {
      exceptions = arg === "--exceptions";
      continue;
    }
    if (arg === "--repr") {
      repr = true;
      continue;
    }
    if (RUNTIME_FLAGS.includes(arg)) {
      if (arg === "--no-cpu-counters") runtime.cpuCounters = false;
      else if (arg === "--cpu-time") runtime.threadTime = true;
      else if (arg === "--no-tasks") runtime.tasks = false;
      else runtime.gc = arg === "--gc";
      continue;
    }
    if (arg.startsWith("-c") || arg.startsWith("-m")) {
      const option = arg.slice(0, 2);
      const value = takeProgram(option, arg.slice(2));
      const args = argv.slice(i + 1);
      target = option === "-c"
        ? { kind: "code", code: value, args }
        : { kind: "module", module: value, args };
      break;
    }

    let name: string;
    let value: string;
    const eq = arg.indexOf("=");
    if (arg.startsWith("--") && eq !== -1) {
      name = arg.slice(0, eq);
      value = arg.slice(eq + 1);
      if (!(name in VALUE_OPTIONS)) {
        const known = FLAGS.includes(name);
        throw new UsageError(
          known
            ? `option "${name}" takes no value: ${SEE_HELP}`
            : `unknown option "${name}": ${SEE_HELP}`,
        );
      }
      if (value === "") throw new UsageError(`option "${name}" needs a value: ${SEE_HELP}`);
    } else if (arg.startsWith("-o") && arg.length > 2) {
      name = "-o";
      value = arg.slice(2);
    } else if (arg in VALUE_OPTIONS) {
      name = arg;
      value = takeValue(arg);
    } else {
      throw new UsageError(`unknown option "${arg}": ${SEE_HELP}`);
    }

    switch (VALUE_OPTIONS[name]) {
      case "output":
        output = value;
        break;
      case "python":
        python = value;
        break;
      case "engine":
        if (!(ENGINES as readonly string[]).includes(value)) {
          throw new UsageError(
            `unknown engine "${value}": choose one of ${ENGINES.join(", ")}`,
          );
        }
        engine = value as Engine;
        break;
      case "collector":
        if (!(COLLECTORS as readonly string[]).includes(value)) {
          throw new UsageError(
            `unknown collector "${value}": choose one of ${COLLECTORS.join(", ")}`,
          );
        }
        collector = value as Collector;
        break;
      case "include":
        include.push(filterPattern(name, value));
        break;
      case "exclude":
        exclude.push(filterPattern(name, value));
        break;
      case "args":
        args.push(filterPattern(name, value));
        break;
      case "returns":
        returns.push(filterPattern(name, value));
        break;
      case "lines":
        lines.push(filterPattern(name, value));
        break;
      case "maxDepth":
        maxDepth = wholeNumberOf(name, value);
        break;
      case "maxEvents":
        maxEvents = wholeNumberOf(name, value);
        break;
      case "format":
        format = formatOf(value);
        break;
    }
  }

  if (target === undefined) {
    throw new UsageError(
      `no program to trace: give a script, -c CODE or -m MODULE (${SEE_HELP})`,
    );
  }
  if (target.kind === "module" && target.module === "") {
    throw new UsageError(`option "-m" needs a module name: ${SEE_HELP}`);
  }
  const chosen = outputFormat(output, format, gzip);
  const command: TraceCommand = {
    kind: "trace",
    target,
    output: output ?? defaultOutput(target, chosen),
    engine,
  };
  setFormat(command, chosen);
  if (python !== undefined) command.python = python;
  if (collector !== "auto") command.collector = collector;
  if (include.length > 0 || exclude.length > 0 || excludeStdlib || !cCalls) {
    command.filters = { include, exclude, excludeStdlib, cCalls };
  }
  if (
    exceptions !== undefined || repr || args.length > 0 || returns.length > 0 || lines.length > 0
  ) {
    const details: Details = { repr };
    if (exceptions !== undefined) details.exceptions = exceptions;
    if (args.length > 0) details.args = args;
    if (returns.length > 0) details.returns = returns;
    if (lines.length > 0) details.lines = lines;
    command.details = details;
  }
  if (maxDepth !== undefined) command.maxDepth = maxDepth;
  if (!follow) command.follow = false;
  if (summary) command.summary = true;
  if (view) command.view = true;
  if (maxEvents !== undefined) command.maxEvents = maxEvents;
  if (!runtime.gc || !runtime.cpuCounters || !runtime.tasks || runtime.threadTime) {
    command.runtime = runtime;
  }
  if (manual) {
    if (engine === "monitoring") {
      throw new UsageError(
        `--manual records with the setprofile engine: leave out --engine monitoring (${SEE_HELP})`,
      );
    }
    command.manual = true;
  }
  return command;
}

/**
 * `panopticon convert [INPUT] [-o OUTPUT] [--format FORMAT] [--gzip]
 * [--max-depth N]`. INPUT is a file of NDJSON records (`-`, or nothing, for
 * standard input); OUTPUT defaults to INPUT with `.ndjson` replaced by
 * `.json` (`.pftrace` for `--format perfetto`, `.json.gz` with `--gzip`),
 * and is needed for stdin. The format follows OUTPUT's name as for tracing.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseCommandLine } from "./cli.ts";
 *
 * assert.deepEqual(parseCommandLine(["convert", "run.ndjson"]), {
 *   kind: "convert",
 *   input: "run.ndjson",
 *   output: "run.json",
 * });
 * ```
 */
export function parseConvert(argv: readonly string[]): CliCommand {
  let input: string | undefined;
  let output: string | undefined;
  let maxDepth: number | undefined;
  let format: TraceFormat | undefined;
  let gzip = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const eq = arg.startsWith("--") ? arg.indexOf("=") : -1;
    const name = eq === -1 ? arg : arg.slice(0, eq);
    const value = () => {
      if (eq !== -1) return arg.slice(eq + 1);
      const next = argv[++i];
      if (next === undefined || next === "") {
        throw new UsageError(`option "${name}" needs a value: ${SEE_HELP}`);
      }
      return next;
    };
    if (arg === "-h" || arg === "--help") return { kind: "help" };
    if (arg.startsWith("-o") && arg.length > 2) {
      output = arg.slice(2);
    } else if (name === "-o" || name === "--output") {
      output = value();
    } else if (name === "--max-depth") {
      maxDepth = wholeNumberOf(name, value());
    } else if (name === "--format") {
      format = formatOf(value());
    } else if (arg === "--gzip") {
      gzip = true;
    } else if (arg === "-" || !arg.startsWith("-")) {
      if (input !== undefined) {
        throw new UsageError(
          `convert takes one input file, got "${input}" and "${arg}": ${SEE_HELP}`,
        );
      }
      input = arg;
    } else {
      throw new UsageError(`unknown option "${arg}" for convert: ${SEE_HELP}`);
    }
  }
  input ??= "-";
  const chosen = outputFormat(output, format, gzip);
  if (output === undefined) {
    if (input === "-") {
      throw new UsageError(`convert needs -o OUTPUT when it reads standard input: ${SEE_HELP}`);
    }
    output = `${input.replace(/\.ndjson$|\.jsonl$/, "")}${extensionOf(chosen)}`;
  }
  if (output === input) {
    throw new UsageError(`the trace would overwrite its input "${input}": choose another -o`);
  }
  const command: ConvertCommand = { kind: "convert", input, output };
  setFormat(command, chosen);
  if (maxDepth !== undefined) command.maxDepth = maxDepth;
  return command;
}

/**
 * Reads `--name VALUE` and `--name=VALUE` options and positional
 * arguments for a subcommand: `options` maps each option to whether it
 * takes a value. Returns `help` for `-h` or `--help`.
 */
function subcommandArgs(
  subcommand: string,
  argv: readonly string[],
  options: Record<string, boolean>,
): { values: Map<string, string>; positional: string[] } | "help" {
  const values = new Map<string, string>();
  const positional: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "-h" || arg === "--help") return "help";
    if (arg === "-" || !arg.startsWith("-")) {
      positional.push(arg);
      continue;
    }
    const eq = arg.startsWith("--") ? arg.indexOf("=") : -1;
    const name = eq === -1 ? arg : arg.slice(0, eq);
    if (!(name in options)) {
      throw new UsageError(`unknown option "${name}" for ${subcommand}: ${SEE_HELP}`);
    }
    if (!options[name]) {
      if (eq !== -1) throw new UsageError(`option "${name}" takes no value: ${SEE_HELP}`);
      values.set(name, "");
      continue;
    }
    const value = eq !== -1 ? arg.slice(eq + 1) : argv[++i];
    if (value === undefined || value === "") {
      throw new UsageError(`option "${name}" needs a value: ${SEE_HELP}`);
    }
    values.set(name, value);
  }
  return { values, positional };
}

/** The one trace a subcommand reads. */
function oneInput(subcommand: string, positional: string[], stdin: boolean): string {
  if (positional.length === 0) {
    throw new UsageError(
      `${subcommand} needs a trace file${stdin ? ' (or "-" for standard input)' : ""}: ${SEE_HELP}`,
    );
  }
  if (positional.length > 1) {
    throw new UsageError(
      `${subcommand} takes one trace, got "${positional[0]}" and "${positional[1]}": ${SEE_HELP}`,
    );
  }
  if (!stdin && positional[0] === "-") {
    throw new UsageError(`${subcommand} serves a file, not standard input: ${SEE_HELP}`);
  }
  return positional[0]!;
}

/**
 * `panopticon summary TRACE [--sort KEY] [--top N] [--thread NAME] [--json]`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseCommandLine } from "./cli.ts";
 *
 * assert.deepEqual(parseCommandLine(["summary", "run.json", "--sort", "calls", "--top=5"]), {
 *   kind: "summary",
 *   input: "run.json",
 *   sort: "calls",
 *   top: 5,
 *   json: false,
 * });
 * ```
 */
export function parseSummary(argv: readonly string[]): CliCommand {
  const args = subcommandArgs("summary", argv, {
    "--sort": true,
    "--top": true,
    "--thread": true,
    "--json": false,
  });
  if (args === "help") return { kind: "help" };
  const { values, positional } = args;
  const sort = values.get("--sort") ?? "self";
  if (!(SUMMARY_SORT_KEYS as readonly string[]).includes(sort)) {
    throw new UsageError(
      `unknown sort key "${sort}" for --sort: choose one of ${SUMMARY_SORT_KEYS.join(", ")}`,
    );
  }
  const command: SummaryCommand = {
    kind: "summary",
    input: oneInput("summary", positional, true),
    sort: sort as SummarySortKey,
    json: values.has("--json"),
  };
  const top = values.get("--top");
  if (top !== undefined) command.top = positiveNumber("--top", top);
  const thread = values.get("--thread");
  if (thread !== undefined) command.thread = thread;
  return command;
}

/**
 * `panopticon view TRACE [--port N] [--no-open]`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseCommandLine } from "./cli.ts";
 *
 * assert.deepEqual(parseCommandLine(["view", "run.pftrace"]), {
 *   kind: "view",
 *   input: "run.pftrace",
 *   port: 9001,
 *   open: true,
 * });
 * ```
 */
export function parseView(argv: readonly string[]): CliCommand {
  const args = subcommandArgs("view", argv, { "--port": true, "--no-open": false });
  if (args === "help") return { kind: "help" };
  const { values, positional } = args;
  const port = values.get("--port");
  const number = port === undefined ? VIEW_PORT : Number(port);
  if (port !== undefined && (!/^[0-9]+$/.test(port) || number > 65535)) {
    throw new UsageError(`option "--port" needs a port number, 0 to 65535, not "${port}"`);
  }
  return {
    kind: "view",
    input: oneInput("view", positional, false),
    port: number,
    open: !values.has("--no-open"),
  };
}

/** A positive whole number, or a usage error naming `option`. */
function positiveNumber(option: string, value: string): number {
  const number = Number(value);
  if (!/^[0-9]+$/.test(value) || !Number.isSafeInteger(number) || number < 1) {
    throw new UsageError(`option "${option}" needs a positive whole number, not "${value}"`);
  }
  return number;
}

/**
 * `panopticon build-native [--python PATH]`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseCommandLine } from "./cli.ts";
 *
 * assert.deepEqual(parseCommandLine(["build-native", "--python", "python3.12"]), {
 *   kind: "build-native",
 *   python: "python3.12",
 * });
 * ```
 */
export function parseBuildNative(argv: readonly string[]): CliCommand {
  const command: BuildNativeCommand = { kind: "build-native" };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "-h" || arg === "--help") return { kind: "help" };
    if (arg === "--python" || arg.startsWith("--python=")) {
      const value = arg === "--python" ? argv[++i] : arg.slice("--python=".length);
      if (value === undefined || value === "") {
        throw new UsageError(`option "--python" needs a value: ${SEE_HELP}`);
      }
      command.python = value;
    } else {
      throw new UsageError(`unknown argument "${arg}" for build-native: ${SEE_HELP}`);
    }
  }
  return command;
}

/** The text `panopticon --help` prints. */
export const HELP_TEXT = `\
Panopticon traces a Python program and writes a timeline of its calls
(a Chrome/Catapult JSON trace, or Perfetto's protobuf trace) that shows
every resumption of a generator, coroutine or async generator as its own
slice, joined by flow arrows.

Usage:
  panopticon [options] script.py [args...]
  panopticon [options] -c CODE [args...]
  panopticon [options] -m MODULE [args...]
  panopticon convert [INPUT.ndjson | -] [-o OUTPUT] [--format FORMAT]
                     [--gzip] [--max-depth N]
  panopticon summary TRACE [--sort calls|total|self|max] [--top N]
                           [--thread NAME] [--json]
  panopticon view TRACE [--port N] [--no-open]
  panopticon build-native [--python PATH]
  panopticon python-module > panopticon.py

The program runs under the Python interpreter exactly as with
"python script.py args...": same sys.argv, stdin, stdout, stderr and exit
status. Panopticon's options come before the program; everything after the
script (or after -c CODE, -m MODULE) belongs to the program. "--" also ends
Panopticon's options: panopticon -o t.json -- script.py -o x

Options:
  -o, --output FILE   write the trace to FILE (also --output=FILE, -oFILE);
                      an existing file is replaced. Default, in the current
                      directory: the script's name with .trace.json
                      (app.py -> app.trace.json), MODULE.trace.json for -m,
                      panopticon.trace.json for -c; app.pftrace for
                      --format perfetto, app.trace.json.gz with --gzip.
                      The name chooses the format: FILE.pftrace or
                      FILE.perfetto-trace is a Perfetto protobuf trace,
                      FILE.json.gz gzipped JSON, anything else JSON.
  --format FORMAT     json (the default: Chrome/Catapult JSON, for Perfetto,
                      chrome://tracing and speedscope) or perfetto
                      (Perfetto's protobuf trace, a fifth to a sixth of the
                      size, for ui.perfetto.dev); it must agree with a
                      FILE named as above
  --gzip              compress the trace with gzip as it is written
                      (FILE.json.gz says the same); the viewers open it
  --max-events N      stop recording after N events (a positive whole
                      number): the program runs on to its end at full
                      speed, and the trace and the terminal say where
                      recording stopped and how much was left out
  --python PATH       the Python interpreter (3.8 or newer) that runs the
                      program. Default: $PANOPTICON_PYTHON, else python3,
                      else python on PATH.
  --engine ENGINE     how calls are recorded: auto (the default: monitoring
                      on Python 3.12+, setprofile before), setprofile
                      (sys.setprofile) or monitoring (sys.monitoring, 3.12+).
  --collector NAME    what records them: auto (the default: native where it
                      can be built, else python), native (a C module,
                      built once for the interpreter with its headers and
                      a C compiler, then cached; an error if it cannot be
                      built) or python (pure Python, several times slower).
  --manual            start with recording off: only the program's own
                      "with panopticon.trace():" blocks and
                      @panopticon.traced functions are recorded (with the
                      setprofile engine). See "In the program" below.
  --no-follow         trace the program's own process only. By default the
                      Python processes it starts are traced too: os.fork
                      children, multiprocessing workers (every start
                      method), and Python programs that subprocess,
                      os.posix_spawn or os.exec* start. Each process gets
                      its own track group in the trace, with an arrow from
                      the call that started it; --max-events counts the
                      events of each process apart.
  --summary           after the run, print the top rows of the trace's
                      summary on stderr (see "panopticon summary")
  --view              after the run, open the trace in the Perfetto UI
                      (see "panopticon view")
  --gc                a slice for each garbage collection, on the thread that
                      ran it, with its generation and the objects it
                      collected and could not (the default; --no-gc leaves
                      them out). Costs about 1 us a collection (a C
                      callback, or with the Python collector 0.5-1.2 us
                      and as much again at the next flush): not measurable
                      even at 4,300 collections in 0.44 s (bench/gc_cost.py).
                      The program sees one more entry in gc.callbacks.
  --cpu-time          also record each slice's thread CPU time: tts and tdur
                      in JSON, thread_ts and thread_dur in Perfetto (whole
                      us there). Off by default: it reads the thread's CPU
                      clock at every call and return, a system call, which
                      cost 0.6-0.8 us an event with the native collector
                      (5 to 8 times the traced run's own cost) and
                      0.8-1.0 us with the Python collector, measured on a
                      shared VM with bench/cpu_time_cost.ts (3.8, 3.13).
                      Not under --manual.
  --no-cpu-counters   leave out the counter track of each thread's CPU time
                      (the share of each interval it ran: 0% while it
                      sleeps or waits for I/O, a lock or the GIL). Sampled
                      every 10 ms by the native collector's writer thread,
                      off the program's threads; by the Python collector at
                      each flush, 1.5-4 us a thread (under 0.3% of a flush).
  --no-tasks          leave out asyncio tasks: each task's name on its
                      coroutine's slices, a track per task from creation to
                      end (result, exception, cancelled), and an arrow from
                      where it was created (3.12+, monitoring engine). Costs
                      a look at the running task at each coroutine's first
                      start (0.2-0.4 us) and 3-8 us a task: 15-25% more CPU
                      time for 40,000 tasks of 10 steps each, the worst case
                      (bench/tasks_cost.py).
  -h, --help          show this help and exit
  -V, --version       show the version and exit

Filters (by default every Python and C call is recorded):
  --include PATTERN   record only the code PATTERN selects (also
                      --include=PATTERN); repeat it to select more
  --exclude PATTERN   do not record the code PATTERN selects (also
                      --exclude=PATTERN); repeatable, wins over --include
  --exclude-stdlib    do not record the standard library and the import
                      machinery (<frozen ...> code)
  --no-c-calls        do not record calls of C functions (print, len, ...)
  --max-depth N       leave out of the trace the calls nested deeper than N
                      (a positive whole number; 1 keeps each thread's
                      outermost calls)

  PATTERN is module:GLOB (the module's __name__, e.g. module:myapp.*),
  file:GLOB (the code's file name, e.g. file:*/src/*.py) or function:GLOB
  (the qualified name, e.g. function:Handler.*). A bare pattern is a file
  pattern when it contains "/" or ends in ".py", else a module pattern.
  GLOB is fnmatch-style (*, ?, [...]) and case-sensitive. A function is
  recorded when it matches an --include (or none is given) and no
  --exclude; a C call is recorded when the code that makes it is.

  What they cost: on Python 3.12+ (the monitoring engine) what a filter
  leaves out is switched off at its source and costs nothing after its
  first event; before 3.12 (or with --engine setprofile) each call left out
  still costs a profile callback that returns at once. --max-depth makes
  the trace smaller but does not save the collector any work.

Exceptions:
  --exceptions        record each exception raised in recorded code: an
                      instant where it was raised (type, message, file:line)
                      in the raising function's slice, another where it was
                      caught, an arrow between them, and "swallowed" when
                      the handler neither re-raised it nor raised another
                      (otherData.swallowed_exceptions lists them).
                      StopIteration and GeneratorExit are not recorded.
                      On by default on Python 3.12+ (the monitoring
                      engine): nothing measurable while no exception is
                      raised, about 9 us for each one raised and caught
                      (native collector; 50 us with the Python one).
                      Before 3.12 it is off unless given: it needs the
                      tracing hook on every thread (sys.gettrace() shows
                      the collector's), which made calls.py 3x slower
                      with the Python collector (within the noise with
                      the native one). Not with --manual.
                      Example: panopticon --exceptions app.py
  --no-exceptions     do not record exceptions

Arguments, return values and lines:
  --args PATTERN      record the arguments of the calls PATTERN (as for
                      --include) selects, in their slices' args, by
                      parameter name (*args, **kwargs with their stars;
                      self as <Type object at 0x...>); repeatable
  --returns PATTERN   record what they return, and what each resumption
                      of a generator or coroutine yields; repeatable.
                      Values are rendered without running the program's
                      code (numbers, str and bytes cut at 200 characters,
                      containers of those; else <Type object at 0x...>),
                      and none is kept alive. The Python collector reads
                      arguments on 3.13+ only (earlier, frame.f_locals
                      would change the frame): use the native one. A
                      parameter named file, line, task or unfinished shows
                      as "file (argument)". "panopticon summary" tallies
                      the values (its Values table).
                      Example: panopticon --args 'function:fib' calls.py
                      What it costs: only the code selected pays, about
                      4 us a call (calls.py, 971,140 calls of fib: 0.37 s
                      plain, 4.0 s with --args 'function:fib', native
                      collector, Python 3.13).
  --lines PATTERN     record every line the code PATTERN (as for --include)
                      selects runs: an instant "line 12" in its slice, with
                      the line's number and source text; repeatable.
                      Example: panopticon --lines 'function:parse' app.py
                      On 3.12+ sys.monitoring's LINE, on for the selected
                      code alone; before, the tracing hook (as
                      --exceptions: sys.gettrace() shows the collector's).
                      What it costs: a recorded line took about 0.1 us of
                      the program's time with the native collector (3.13;
                      0.07 us on 3.8) and 0.6 us with the Python one (1.3
                      us on 3.8), about 0.4-1.7 us of the whole run with
                      the conversion; unselected code pays nothing on
                      3.12+. Not with --manual.
  --repr              show an exception's message by its own __str__
                      (guarded: a failure shows as <repr failed: ...>, and
                      the text is cut at 200 characters), and values of
                      --args and --returns by their own __repr__. Without
                      it the message is rendered from the exception's args
                      without running any of the program's code.

In the program ("import panopticon" works under this command; see
docs/python-api.md):
  with panopticon.trace("out.json"): ...     record this block (--manual)
  @panopticon.traced                         record every call of a function
  panopticon.instant("cache miss", key=k)    a marker on the timeline
  panopticon.counter("queue depth", n)       a counter track
  with panopticon.span("phase 2"): ...       a named slice of your own
  Without this command, "panopticon python-module > panopticon.py" gives the
  same module for a plain python process: trace() then hands its records to
  "panopticon convert" when the command is on PATH, and otherwise writes
  out.ndjson and prints the command that converts it.

Subcommands (only as the first argument; run a script called "convert"
as "panopticon ./convert"):
  convert             read the NDJSON records of a recording (a file, or
                      "-" for standard input) and write the trace: to -o
                      OUTPUT, by default INPUT with .ndjson replaced by .json
                      (.pftrace for --format perfetto, .json.gz with --gzip)
  summary TRACE       print what the trace adds up to, per function: calls,
                      total (inclusive) and self time, mean and longest
                      call, where it is defined; C functions in their own
                      rows; and for generators, coroutines and async
                      generators, their frame instances: slices (one per
                      resumption), the time they ran and the time they
                      lived (first start to final return); the exceptions
                      raised, caught and swallowed, by type and place; and
                      the asyncio tasks: time running, lifetime, steps, how
                      each ended, who created it; and the values --args and
                      --returns recorded: per function and parameter (or
                      return, yield), the most frequent. TRACE is any
                      trace Panopticon writes (.json, .json.gz, .pftrace)
                      or a recording (.ndjson), "-" for standard input.
                      Calls count as in python -m cProfile, but that a
                      generator-like frame is one call however often it
                      resumes, and a frame still open at the end counts as
                      "unfinished".
      --sort KEY      order the functions by calls, total, self (the
                      default) or max (the longest call), the most first
      --top N         show the first N rows of each table (default 20)
      --thread NAME   count only the slices of the thread(s) named NAME
      --json          print every figure as JSON (nanoseconds), for
                      scripts; --sort and --top apply
  view TRACE          serve TRACE to the Perfetto UI and open it in the
                      browser (xdg-open or open): the file, and nothing
                      else, on http://127.0.0.1:9001 (the port
                      ui.perfetto.dev fetches from), with the CORS header
                      for https://ui.perfetto.dev; exits once the UI has
                      fetched it, or on Ctrl-C. Without a browser (no
                      display, or over SSH) it prints the address and the
                      ssh -L command that opens it from your own machine.
      --port N        serve on port N instead (for a Perfetto UI of your
                      own; 0: any free port)
      --no-open       print the address; do not start a browser
  build-native        build the native collector for the interpreter
                      (--python, else as for tracing) into the cache
                      ($XDG_CACHE_HOME/panopticon, else ~/.cache/panopticon),
                      and say what it found: for machines that trace later
                      without a compiler
  python-module       print the Python module "panopticon" (standard library
                      only, Python 3.8+) for use without this command

Environment:
  PANOPTICON_PYTHON   the interpreter to use when --python is not given
  PANOPTICON_DEBUG    when set, the stack of Panopticon's own errors and the
                      collector's debug lines go to stderr
  CC                  the C compiler that builds the native collector
                      (default: cc, gcc or clang on PATH)
  XDG_CACHE_HOME      where the native collector is cached (under
                      panopticon/; default ~/.cache/panopticon)

Examples:
  panopticon app.py --port 8080         trace app.py into app.trace.json
  panopticon -o run.json -m pytest -x   trace pytest into run.json
  panopticon -o run.pftrace app.py      a protobuf trace, for big programs
  panopticon --python python3.12 -c "import asyncio"
  panopticon --exclude-stdlib --include 'myapp.*' -m myapp
  panopticon --summary --view app.py    trace, print the top rows, open it
  panopticon summary app.trace.json --sort total --top 10

Opening the trace:
  panopticon view TRACE        serves it to ui.perfetto.dev and opens it
  https://ui.perfetto.dev      "Open trace file", or drop the file on the page
                               (JSON, gzipped JSON and protobuf)
  chrome://tracing             in Chrome or Chromium: "Load" (JSON)
  https://www.speedscope.app   flame graphs, without the flow arrows (JSON)
  After the run, Panopticon prints the trace's size, and warns when it is
  past what the viewers open comfortably (500 MB of JSON, 1.5 GB of
  protobuf), naming what would make it smaller.

Exit status: the program's own (128 + N if signal N killed it). Errors of
Panopticon's own print one "error: ..." line and exit with 2 for a command
line it cannot understand, 1 for anything else (or the program's status, if
the program ran and failed).
`;
