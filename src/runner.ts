/**
 * Running a traced program: {@linkcode runTraced} checks the script and the
 * output file, writes the collector into a private directory as
 * `sitecustomize.py`, starts `<python> <the user's arguments>` with the
 * collector's environment (its filters in `PANOPTICON_FILTERS`, see
 * {@linkcode filtersVariable}), streams the collectors' connections (one
 * per traced process: the program, and the Python processes it starts)
 * into {@linkcode convertProcesses} while the program runs, and waits for
 * both.
 *
 * The child process sits behind {@linkcode ChildProcess} and
 * {@linkcode Spawn}, so that tests can run the runner with a fake.
 *
 * @module
 */

import { dirname } from "node:path";
import collectorSource from "../collector.py" with { type: "text" };
import type { Collector, Details, Engine, Filters, RuntimeOptions, Target } from "./cli.ts";
import { type Channel, openChannel } from "./channel.ts";
import type { ConversionSummary } from "./convert.ts";
import { convertProcesses, type ConvertProcessesOptions } from "./processes.ts";
import { ProtocolError } from "./protocol.ts";
import { runtimeVariable } from "./runtime.ts";
import {
  buildCollectorBytecode,
  buildNative,
  NativeBuildError,
  type NativeModule,
} from "./native_build.ts";
import type { PythonInfo } from "./python.ts";
import type { TraceFormat } from "./trace_format.ts";
import type { TraceSink } from "./trace_model.ts";

/** How a child process ended. `Deno.CommandStatus` is one. */
export interface ChildStatus {
  /** The exit code; for a signal, whatever the platform reports. */
  code: number;
  /** The signal that killed the process, or `null`. */
  signal: Deno.Signal | null;
}

/** A started child process. `Deno.ChildProcess` is one. */
export interface ChildProcess {
  /** Settles when the process has exited. */
  readonly status: Promise<ChildStatus>;
  /** Sends a signal to the process. */
  kill(signal?: Deno.Signal): void;
}

/** What {@linkcode Spawn} is asked to start. */
export interface SpawnRequest {
  /** The interpreter. */
  program: string;
  /** Its arguments: exactly the user's, see {@linkcode childArgs}. */
  args: string[];
  /** The complete environment of the child (nothing else is inherited). */
  env: Record<string, string>;
}

/** Starts a child process whose stdin, stdout and stderr are ours. */
export type Spawn = (request: SpawnRequest) => ChildProcess;

/** The real {@linkcode Spawn}: `Deno.Command` with inherited stdio. */
export const spawnChild: Spawn = ({ program, args, env }) =>
  new Deno.Command(program, {
    args,
    env,
    clearEnv: true,
    stdin: "inherit",
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();

/** The signature of {@linkcode convertProcesses}, for a stand-in in tests. */
export type Convert = typeof convertProcesses;

/** Options of {@linkcode runTraced}. */
export interface RunOptions {
  /** The interpreter, as found by `findPython`. */
  python:
    & Pick<PythonInfo, "path" | "version">
    & Partial<Pick<PythonInfo, "implementation" | "build">>;
  /**
   * Which collector records: `native` (the C module, built for the
   * interpreter on first use), `python`, or `auto`: the native one where it
   * can be built, else the Python one, with a notice that says why.
   *
   * @default {"auto"}
   */
  collector?: Collector;
  /**
   * Told what the user should know about the run: before the program
   * starts, that the native collector could not be built, and why; after it
   * exited, that traced processes it left running are waited for.
   *
   * @default {undefined}
   */
  onNotice?: (message: string) => void;
  /**
   * Builds (or finds in the cache) the native collector.
   *
   * @default {buildNative}
   */
  buildNative?: (python: RunOptions["python"]) => Promise<NativeModule>;
  /** Where the trace goes; created or truncated before the program starts. */
  output: string;
  /**
   * The collector's hook.
   *
   * @default {"auto"}
   */
  engine?: Engine;
  /**
   * What the collector records, passed to it in `PANOPTICON_FILTERS`.
   *
   * @default {undefined} (every call is recorded)
   */
  filters?: Filters;
  /**
   * What the collector records beyond the calls, passed to it in
   * `PANOPTICON_DETAILS` (see {@linkcode detailsVariable}).
   *
   * @default {undefined} (exceptions where they cost little)
   */
  details?: Details;
  /**
   * The converter leaves out slices nested deeper than this (a positive
   * whole number); passed to {@linkcode convert} as `maxDepth`.
   *
   * @default {undefined} (no limit)
   */
  maxDepth?: number;
  /**
   * The trace's format; passed to {@linkcode convertProcesses}.
   *
   * @default {"json"}
   */
  format?: TraceFormat;
  /**
   * Gzip the trace as it is written; passed to {@linkcode convert}.
   *
   * @default {false}
   */
  gzip?: boolean;
  /**
   * The collector stops recording after this many events (a positive whole
   * number), passed to it in `PANOPTICON_MAX_EVENTS`.
   *
   * @default {undefined} (no limit)
   */
  maxEvents?: number;
  /**
   * Record only inside the program's `panopticon.trace()` blocks and
   * `panopticon.traced` calls (`--manual`), with the setprofile engine,
   * whose hook is per thread.
   *
   * @default {false}
   */
  manual?: boolean;
  /**
   * Trace the Python processes the program starts too (`os.fork`,
   * `multiprocessing`, `subprocess` and `os.exec*` of Python), each in a
   * stream of its own, into the same trace; `--no-follow` turns it off.
   *
   * @default {true}
   */
  follow?: boolean;
  /**
   * A sink that receives the trace as the writer does; passed to
   * the converter as `tee`.
   *
   * @default {undefined}
   */
  tee?: TraceSink;
  /**
   * What the collector records of the runtime's own work, passed to it in
   * `PANOPTICON_RUNTIME` (see {@linkcode runtimeVariable}).
   *
   * @default {undefined} (garbage collections and CPU counters)
   */
  runtime?: RuntimeOptions;
  /**
   * The environment the program would get without Panopticon.
   *
   * @default {Deno.env.toObject()}
   */
  env?: Record<string, string>;
  /**
   * Starts the interpreter.
   *
   * @default {spawnChild}
   */
  spawn?: Spawn;
  /**
   * Turns the collectors' streams into the trace.
   *
   * @default {convertProcesses}
   */
  convert?: Convert;
  /**
   * The collector's source, written as `sitecustomize.py`.
   *
   * @default {the embedded collector.py}
   */
  collectorSource?: string;
  /**
   * Survive SIGINT (the terminal delivers it to the program too) and forward
   * SIGTERM and SIGHUP to the program while it runs; once it has exited and
   * the processes it left running are waited for, SIGINT stops waiting.
   *
   * @default {true}
   */
  handleSignals?: boolean;
  /**
   * Where the private directory is created.
   *
   * @default {$TMPDIR}
   */
  tempDir?: string;
}

/** What a traced run produced. */
export interface RunResult {
  /** Panopticon's exit status: the program's, see {@linkcode exitCodeOf}. */
  exitCode: number;
  /** How the program ended. */
  status: ChildStatus;
  /**
   * What the converter wrote (with every traced process in `processes`);
   * its `warnings` begin with the connections the channel refused.
   */
  summary: ConversionSummary;
  /** The engine asked for, `auto` resolved by the interpreter's version. */
  engine: Exclude<Engine, "auto">;
  /** The collector that recorded. */
  collector: Exclude<Collector, "auto">;
}

/**
 * Panopticon failed (before, during or after the program ran); the message
 * says what to do. `exitCode` is set when the program ran: the status
 * Panopticon should exit with.
 */
export class RunError extends Error {
  constructor(message: string, readonly exitCode?: number) {
    super(message);
    this.name = "RunError";
  }
}

/** The environment variables of the collector's contract. */
const CONTRACT_VARIABLES = [
  "PANOPTICON_CHANNEL",
  "PANOPTICON_SECRET",
  "PANOPTICON_ENGINE",
  "PANOPTICON_PYTHONPATH",
  "PANOPTICON_FILTERS",
  "PANOPTICON_DETAILS",
  "PANOPTICON_MANUAL",
  "PANOPTICON_NATIVE",
  "PANOPTICON_ROOT",
  "PANOPTICON_FOLLOW",
  "PANOPTICON_RUNTIME",
  // Set by a traced parent for its children: stale in a run of its own.
  "PANOPTICON_SPAWN",
  "PANOPTICON_MAX_EVENTS",
] as const;

/** Settings of {@linkcode childEnvironment}. */
export interface ChannelSettings {
  /** The private directory holding `sitecustomize.py`. */
  dir: string;
  /** The socket the collector connects to. */
  socket: string;
  /** The per-run token the collector echoes in its `hello`. */
  secret: string;
  /** The engine asked for. */
  engine: Engine;
  /**
   * The collector's filters.
   *
   * @default {undefined} (none)
   */
  filters?: Filters;
  /**
   * What the collector records beyond the calls.
   *
   * @default {undefined} (its defaults)
   */
  details?: Details;
  /**
   * Record only inside the program's `panopticon.trace()` blocks and
   * `panopticon.traced` calls (`PANOPTICON_MANUAL=1`).
   *
   * @default {false}
   */
  manual?: boolean;
  /**
   * The native collector's module, for `PANOPTICON_NATIVE`.
   *
   * @default {undefined} (the Python collector records)
   */
  native?: string;
  /**
   * Trace the Python processes the program starts, too
   * (`PANOPTICON_FOLLOW`; see docs/protocol.md, "Processes").
   *
   * @default {false}
   */
  follow?: boolean;
  /**
   * What is recorded of the runtime's own work (`PANOPTICON_RUNTIME`).
   *
   * @default {undefined} (the collector's defaults)
   */
  runtime?: RuntimeOptions;
  /**
   * The most events the collector records (`PANOPTICON_MAX_EVENTS`).
   *
   * @default {undefined} (no limit)
   */
  maxEvents?: number;
}

/**
 * The value of `PANOPTICON_FILTERS` for `filters`, or `undefined` when they
 * filter nothing (no variable: the collector records every call).
 *
 * One setting a line, which the collector reads without a JSON parser (it
 * imports nothing the program has not): `include KIND:GLOB`,
 * `exclude KIND:GLOB`, with the patterns in their explicit
 * `module:`/`file:`/`function:` form so the collector never guesses, then
 * `exclude-stdlib` and `no-c-calls` when they are asked for. A pattern
 * cannot hold a newline (see `cli.ts`).
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { filtersVariable } from "./runner.ts";
 *
 * assert.equal(
 *   filtersVariable({ include: ["module:myapp.*"], exclude: [], excludeStdlib: true, cCalls: true }),
 *   "include module:myapp.*\nexclude-stdlib",
 * );
 * assert.equal(
 *   filtersVariable({ include: [], exclude: [], excludeStdlib: false, cCalls: true }),
 *   undefined,
 * );
 * ```
 */
export function filtersVariable(filters: Filters | undefined): string | undefined {
  if (filters === undefined) return undefined;
  const { include, exclude, excludeStdlib, cCalls } = filters;
  if (include.length === 0 && exclude.length === 0 && !excludeStdlib && cCalls) return undefined;
  return [
    ...include.map((pattern) => `include ${pattern}`),
    ...exclude.map((pattern) => `exclude ${pattern}`),
    ...(excludeStdlib ? ["exclude-stdlib"] : []),
    ...(cCalls ? [] : ["no-c-calls"]),
  ].join("\n");
}

/**
 * The value of `PANOPTICON_DETAILS` for `details`, or `undefined` when they
 * ask for nothing (the collector's defaults).
 *
 * One setting a line, as in {@linkcode filtersVariable}: `exceptions on` or
 * `exceptions off`, `repr`, and `args KIND:GLOB`, `returns KIND:GLOB` or
 * `lines KIND:GLOB` for each pattern of `--args`, `--returns` and `--lines`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { detailsVariable } from "./runner.ts";
 *
 * assert.equal(
 *   detailsVariable({ exceptions: true, repr: true }),
 *   "exceptions on\nrepr",
 * );
 * assert.equal(
 *   detailsVariable({ repr: false, args: ["function:fib"], returns: ["module:app"] }),
 *   "args function:fib\nreturns module:app",
 * );
 * assert.equal(detailsVariable({ repr: false }), undefined);
 * ```
 */
export function detailsVariable(details: Details | undefined): string | undefined {
  if (details === undefined) return undefined;
  const lines = [
    ...(details.exceptions === undefined
      ? []
      : [`exceptions ${details.exceptions ? "on" : "off"}`]),
    ...(details.repr ? ["repr"] : []),
    ...(details.args ?? []).map((pattern) => `args ${pattern}`),
    ...(details.returns ?? []).map((pattern) => `returns ${pattern}`),
    ...(details.lines ?? []).map((pattern) => `lines ${pattern}`),
  ];
  return lines.length > 0 ? lines.join("\n") : undefined;
}

/**
 * The child's environment: `base` (the user's) with the collector's
 * variables set and any stale ones from `base` removed.
 *
 * - `PYTHONPATH`: `dir`, then `:` and the user's `PYTHONPATH` if it is set
 *   and not empty (an empty entry would put the current directory on
 *   `sys.path`);
 * - `PANOPTICON_PYTHONPATH`: the user's `PYTHONPATH`, only if it was set
 *   (possibly empty), so the collector can restore it;
 * - `PANOPTICON_CHANNEL`, `PANOPTICON_SECRET`, `PANOPTICON_ENGINE`;
 * - `PANOPTICON_FILTERS`: {@linkcode filtersVariable}, only when the
 *   filters filter something;
 * - `PANOPTICON_MANUAL`: `1` for manual recording;
 * - `PANOPTICON_NATIVE`: the native collector's module, when it records;
 * - `PANOPTICON_ROOT`: `1`, this process is the run's first (its children
 *   are told who started them instead);
 * - `PANOPTICON_FOLLOW`: `0` unless the processes the program starts are
 *   traced too;
 * - `PANOPTICON_RUNTIME`: {@linkcode runtimeVariable}, only when it
 *   switches something off;
 * - `PANOPTICON_MAX_EVENTS`: the most events to record, a positive whole
 *   number, only when there is a limit.
 */
export function childEnvironment(
  base: Readonly<Record<string, string>>,
  settings: ChannelSettings,
): Record<string, string> {
  const env = { ...base };
  for (const name of CONTRACT_VARIABLES) delete env[name];
  const userPath = base["PYTHONPATH"];
  if (userPath !== undefined) env["PANOPTICON_PYTHONPATH"] = userPath;
  env["PYTHONPATH"] = userPath ? `${settings.dir}:${userPath}` : settings.dir;
  env["PANOPTICON_CHANNEL"] = settings.socket;
  env["PANOPTICON_SECRET"] = settings.secret;
  env["PANOPTICON_ENGINE"] = settings.engine;
  const filters = filtersVariable(settings.filters);
  if (filters !== undefined) env["PANOPTICON_FILTERS"] = filters;
  const details = detailsVariable(settings.details);
  if (details !== undefined) env["PANOPTICON_DETAILS"] = details;
  if (settings.manual) env["PANOPTICON_MANUAL"] = "1";
  if (settings.native !== undefined) env["PANOPTICON_NATIVE"] = settings.native;
  env["PANOPTICON_ROOT"] = "1";
  env["PANOPTICON_FOLLOW"] = settings.follow ? "1" : "0";
  const runtime = runtimeVariable(settings.runtime);
  if (runtime !== undefined) env["PANOPTICON_RUNTIME"] = runtime;
  if (settings.maxEvents !== undefined) env["PANOPTICON_MAX_EVENTS"] = String(settings.maxEvents);
  return env;
}

/** The interpreter's arguments for `target`: exactly the user's. */
export function childArgs(target: Target): string[] {
  switch (target.kind) {
    case "script":
      // `python -x.py` would read an option; `--` keeps it a script name and
      // leaves sys.argv as it is.
      return target.path.startsWith("-") && target.path !== "-"
        ? ["--", target.path, ...target.args]
        : [target.path, ...target.args];
    case "code":
      return ["-c", target.code, ...target.args];
    case "module":
      return ["-m", target.module, ...target.args];
  }
}

/**
 * The engine `requested` means for a Python `version`: `auto` is
 * `monitoring` from 3.12 on and `setprofile` before.
 *
 * Throws {@linkcode RunError} for `monitoring` before 3.12.
 */
export function resolveEngine(
  requested: Engine,
  version: readonly number[],
): Exclude<Engine, "auto"> {
  const [major = 0, minor = 0] = version;
  const hasMonitoring = major > 3 || (major === 3 && minor >= 12);
  if (requested === "monitoring" && !hasMonitoring) {
    throw new RunError(
      `the monitoring engine needs Python 3.12 or newer (this is Python ${version.join(".")}): ` +
        "use --engine setprofile or --engine auto",
    );
  }
  if (requested === "auto") return hasMonitoring ? "monitoring" : "setprofile";
  return requested;
}

/**
 * The engine of manual recording: always `setprofile`, whose hook is per
 * thread, as recording is switched on and off.
 *
 * Throws {@linkcode RunError} for `monitoring`.
 */
export function resolveManualEngine(requested: Engine): "setprofile" {
  if (requested === "monitoring") {
    throw new RunError(
      "--manual records with the setprofile engine (sys.monitoring cannot be switched on " +
        "for one thread): leave out --engine monitoring",
    );
  }
  return "setprofile";
}

// Linux numbering; macOS and the BSDs differ for a few.
const SIGNAL_NUMBERS: Record<string, number> = {
  SIGHUP: 1,
  SIGINT: 2,
  SIGQUIT: 3,
  SIGILL: 4,
  SIGTRAP: 5,
  SIGABRT: 6,
  SIGIOT: 6,
  SIGBUS: 7,
  SIGFPE: 8,
  SIGKILL: 9,
  SIGUSR1: 10,
  SIGSEGV: 11,
  SIGUSR2: 12,
  SIGPIPE: 13,
  SIGALRM: 14,
  SIGTERM: 15,
  SIGSTKFLT: 16,
  SIGCHLD: 17,
  SIGCONT: 18,
  SIGSTOP: 19,
  SIGTSTP: 20,
  SIGTTIN: 21,
  SIGTTOU: 22,
  SIGURG: 23,
  SIGXCPU: 24,
  SIGXFSZ: 25,
  SIGVTALRM: 26,
  SIGPROF: 27,
  SIGWINCH: 28,
  SIGIO: 29,
  SIGPOLL: 29,
  SIGPWR: 30,
  SIGSYS: 31,
};
const DARWIN_SIGNAL_NUMBERS: Record<string, number> = {
  SIGBUS: 10,
  SIGUSR1: 30,
  SIGUSR2: 31,
  SIGCHLD: 20,
  SIGCONT: 19,
  SIGSTOP: 17,
  SIGTSTP: 18,
  SIGURG: 16,
  SIGIO: 23,
  SIGSYS: 12,
  SIGINFO: 29,
  SIGEMT: 7,
};

/**
 * The status a shell reports for `status`: the exit code, or 128 + the
 * signal's number when a signal killed the process.
 */
export function exitCodeOf(status: ChildStatus, os: string = Deno.build.os): number {
  if (status.signal === null) return status.code;
  const number =
    (os === "darwin" || os.endsWith("bsd") ? DARWIN_SIGNAL_NUMBERS[status.signal] : undefined) ??
      SIGNAL_NUMBERS[status.signal];
  if (number !== undefined) return 128 + number;
  return status.code > 128 ? status.code : 128;
}

/**
 * Runs `target` under the collector and writes its trace to
 * `options.output`; resolves once both the program has exited and the trace
 * is written.
 *
 * Throws {@linkcode RunError} when the program cannot be started (a missing
 * script, an output file that cannot be written, an engine the interpreter
 * lacks), when the collector never connected, or when the trace cannot be
 * written; a `RunError` thrown after the program ran carries its exit code.
 * A connection to the channel whose first line is not a `hello` with this
 * run's secret is refused, and reported in `summary.warnings` (or in the
 * error). The private directory is removed on every path, and so is the
 * output file when no trace could be written.
 *
 * @example
 * ```ts ignore
 * const python = await findPython();
 * const { exitCode, summary } = await runTraced(
 *   { kind: "script", path: "app.py", args: [] },
 *   { python, output: "app.trace.json" },
 * );
 * ```
 */
export async function runTraced(target: Target, options: RunOptions): Promise<RunResult> {
  const engine = options.manual
    ? resolveManualEngine(options.engine ?? "auto")
    : resolveEngine(options.engine ?? "auto", options.python.version);
  if (target.kind === "script") await checkScript(target.path, options.output);
  const native = await nativeCollector(options);
  const file = await openOutput(options.output);
  let channel: Channel | undefined;
  let releaseSignals = () => {};
  let releaseWaiting = () => {};
  let written = false;
  try {
    channel = await openChannel({ tempDir: options.tempDir });
    await Deno.writeTextFile(
      `${channel.dir}/sitecustomize.py`,
      options.collectorSource ?? collectorSource,
      { mode: 0o600 },
    );
    if (options.collectorSource === undefined) await placeBytecode(options.python, channel.dir);
    const secret = randomSecret();
    const env = childEnvironment(options.env ?? Deno.env.toObject(), {
      dir: channel.dir,
      socket: channel.path,
      secret,
      engine: options.engine ?? "auto",
      filters: options.filters,
      details: options.details,
      manual: options.manual,
      native: native?.path,
      runtime: options.runtime,
      maxEvents: options.maxEvents,
      follow: options.follow ?? true,
    });

    let child: ChildProcess;
    try {
      child = (options.spawn ?? spawnChild)({
        program: options.python.path,
        args: childArgs(target),
        env,
      });
    } catch (error) {
      throw new RunError(`cannot run "${options.python.path}": ${reasonOf(error)}`);
    }
    if (options.handleSignals ?? true) releaseSignals = handleSignals(child);

    const status = child.status;
    const refusals: string[] = [];
    const listening = channel.listen({
      admit: admitCollector(secret),
      onRefused: (reason) =>
        refusals.push(
          `refused a connection to the event channel that did not present this run's secret ` +
            `(${reason})`,
        ),
    });
    const stopWaiting = new AbortController();
    const convertOptions: ConvertProcessesOptions = {
      secret,
      exited: status,
      signal: stopWaiting.signal,
      onWaiting: (pids) => {
        options.onNotice?.(waitingNotice(pids));
        if (options.handleSignals ?? true) releaseWaiting = onInterrupt(() => stopWaiting.abort());
      },
    };
    if (options.maxDepth !== undefined) convertOptions.maxDepth = options.maxDepth;
    if (options.format !== undefined) convertOptions.format = options.format;
    if (options.gzip) convertOptions.gzip = true;
    if (options.tee !== undefined) convertOptions.tee = options.tee;
    const conversion = (options.convert ?? convertProcesses)(
      listening,
      file.writable,
      convertOptions,
    ).then((summary) => {
      if (summary !== undefined) written = true;
      return summary;
    });
    const [exit, converted] = await Promise.allSettled([status, conversion]);
    if (exit.status === "rejected") {
      throw new RunError(`lost track of the program: ${reasonOf(exit.reason)}`);
    }
    const exitCode = exitCodeOf(exit.value);
    const failedExitCode = exitCode === 0 ? 1 : exitCode;
    if (converted.status === "rejected") {
      const reason = converted.reason instanceof ProtocolError
        ? `the collector's event stream is broken at ${converted.reason.message}`
        : reasonOf(converted.reason);
      throw new RunError(
        `could not write the trace to ${options.output}: ${reason}`,
        failedExitCode,
      );
    }
    if (converted.value === undefined) {
      throw new RunError(
        (exitCode === 0
          ? "the program ran but the Panopticon collector never connected " +
            "(is PYTHONPATH ignored, e.g. python -I or -E?); no trace was written"
          : `the program exited with status ${exitCode} before the Panopticon collector ` +
            "connected; no trace was written") + refusals.map((refusal) => `; ${refusal}`).join(""),
        failedExitCode,
      );
    }
    const summary = {
      ...converted.value,
      warnings: [...refusals, ...converted.value.warnings],
    };
    return {
      exitCode,
      status: exit.value,
      summary,
      engine,
      collector: native ? "native" : "python",
    };
  } finally {
    releaseSignals();
    releaseWaiting();
    await channel?.close();
    try {
      file.close();
    } catch {
      // The converter closed it, as it should, with the writable stream.
    }
    // No trace: leave no empty or broken file that looks like one.
    if (!written) await Deno.remove(options.output).catch(() => {});
  }
}

/**
 * The native collector for the run, or `undefined` for the Python one:
 * with `auto`, a native collector that cannot be built is a notice, and the
 * Python collector records; with `native` it is an error.
 */
async function nativeCollector(options: RunOptions): Promise<NativeModule | undefined> {
  const collector = options.collector ?? "auto";
  if (collector === "python") return undefined;
  try {
    return await (options.buildNative ?? buildNative)(options.python);
  } catch (error) {
    if (!(error instanceof NativeBuildError)) throw error;
    if (collector === "native") {
      throw new RunError(
        `--collector native: the native collector cannot be built: ${error.message}`,
      );
    }
    options.onNotice?.(
      `the native collector cannot be built: ${error.message}; recording with the Python ` +
        "collector, which slows the program down several times more " +
        '("panopticon build-native" checks again)',
    );
    return undefined;
  }
}

/**
 * The collector's cached bytecode (see buildCollectorBytecode), where Python
 * looks for `sitecustomize.py`'s: without it, Python compiles the source.
 */
async function placeBytecode(python: RunOptions["python"], dir: string): Promise<void> {
  const bytecode = await buildCollectorBytecode(python);
  const tag = python.build?.cacheTag;
  if (bytecode === undefined || tag === undefined) return;
  await Deno.mkdir(`${dir}/__pycache__`, { mode: 0o700 });
  await Deno.copyFile(bytecode, `${dir}/__pycache__/sitecustomize.${tag}.pyc`).catch(() => {});
}

async function checkScript(path: string, output: string): Promise<void> {
  if (path === "-") return; // The program is read from standard input.
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch (error) {
    throw new RunError(`cannot open the script "${path}": ${reasonOf(error)}`);
  }
  if (info.isDirectory) {
    // Python runs a directory's __main__.py, as it runs a zip file's.
    const hasMain = await Promise.any(
      ["__main__.py", "__main__.pyc"].map((name) => Deno.stat(`${path}/${name}`)),
    ).then(() => true, () => false);
    if (!hasMain) {
      throw new RunError(`cannot run the script "${path}": it is a directory with no __main__.py`);
    }
    return;
  }
  if (!info.isFile) throw new RunError(`cannot run the script "${path}": it is not a file`);
  if (await sameFile(path, output)) {
    throw new RunError(
      `the trace would overwrite the script "${path}": choose another file with --output`,
    );
  }
}

async function sameFile(a: string, b: string): Promise<boolean> {
  try {
    return await Deno.realPath(a) === await Deno.realPath(b);
  } catch {
    return false;
  }
}

async function openOutput(path: string): Promise<Deno.FsFile> {
  const cannot = `cannot write the trace to "${path}"`;
  const directory = dirname(path);
  const dirInfo = await Deno.stat(directory).catch(() => undefined);
  if (dirInfo === undefined) {
    throw new RunError(`${cannot}: the directory "${directory}" does not exist`);
  }
  if (!dirInfo.isDirectory) throw new RunError(`${cannot}: "${directory}" is not a directory`);
  const info = await Deno.stat(path).catch(() => undefined);
  if (info?.isDirectory) throw new RunError(`${cannot}: it is a directory`);
  try {
    return await Deno.open(path, { write: true, create: true, truncate: true });
  } catch (error) {
    throw new RunError(`${cannot}: ${reasonOf(error)}`);
  }
}

/**
 * While the program runs: Ctrl-C reaches the whole foreground process
 * group, so the program gets its SIGINT from the terminal and Panopticon
 * must merely survive it to finish the trace; SIGTERM and SIGHUP sent to
 * Panopticon alone are passed on. Returns the function that undoes this.
 */
function handleSignals(child: ChildProcess): () => void {
  const installed: [Deno.Signal, () => void][] = [];
  const forward = (signal: Deno.Signal) => () => {
    try {
      child.kill(signal);
    } catch {
      // The program has already exited.
    }
  };
  const handlers: [Deno.Signal, () => void][] = [
    ["SIGINT", () => {}],
    ["SIGTERM", forward("SIGTERM")],
    ["SIGHUP", forward("SIGHUP")],
  ];
  for (const [signal, handler] of handlers) {
    try {
      Deno.addSignalListener(signal, handler);
      installed.push([signal, handler]);
    } catch {
      // Not every platform has every signal (Windows has no SIGTERM).
    }
  }
  return () => {
    for (const [signal, handler] of installed) {
      // The SIGINT of a Ctrl-C reaches the whole group, and Deno may hand it
      // to its listener only after the program has exited: removed by then,
      // the default action would end Panopticon before it reports. Ignoring
      // it stays in place until Panopticon exits.
      if (signal !== "SIGINT") Deno.removeSignalListener(signal, handler);
    }
  };
}

/**
 * What the user is told once the program has exited but processes it
 * started still send their streams.
 */
function waitingNotice(pids: readonly number[]): string {
  const n = pids.length;
  return `waiting for ${n} traced process${n === 1 ? "" : "es"} the program left running ` +
    `(pid${n === 1 ? "" : "s"} ${
      pids.join(", ")
    }); press Ctrl-C to stop waiting and write the trace`;
}

/** Calls `handler` on SIGINT; returns the function that undoes this. */
function onInterrupt(handler: () => void): () => void {
  try {
    Deno.addSignalListener("SIGINT", handler);
  } catch {
    return () => {};
  }
  return () => Deno.removeSignalListener("SIGINT", handler);
}

/**
 * The channel's vetting (see `AcceptOptions.admit`): only this run's
 * collector is let in, whose first line is its `hello` with `secret`.
 */
function admitCollector(secret: string): (firstLine: Uint8Array) => string | undefined {
  return (firstLine) => {
    let hello: { kind?: unknown; secret?: unknown } | null;
    try {
      hello = JSON.parse(new TextDecoder().decode(firstLine));
    } catch {
      return "its first line is not JSON";
    }
    if (typeof hello !== "object" || hello?.kind !== "hello") {
      return "its first record is not a hello";
    }
    if (hello.secret !== secret) return "it presented another secret, or none";
    return undefined;
  };
}

function randomSecret(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function reasonOf(error: unknown): string {
  if (error instanceof Deno.errors.NotFound) return "No such file or directory";
  if (error instanceof Deno.errors.PermissionDenied) return "Permission denied";
  const message = error instanceof Error ? error.message : String(error);
  return message.replace(/ \(os error \d+\)$/, "");
}
