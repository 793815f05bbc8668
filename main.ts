/**
 * The `panopticon` command: parse the command line, run the program under
 * the collector, report, exit.
 *
 * Exit status: the traced program's own (128 + N when signal N killed it);
 * 2 for a command line Panopticon cannot understand; 1 when Panopticon fails
 * before the program runs. When the trace cannot be written although the
 * program ran, the program's status if it failed, else 1.
 *
 * @module
 */

import collectorSource from "./collector.py" with { type: "text" };
import denoJson from "./deno.json" with { type: "json" };
import {
  type BuildNativeCommand,
  type ConvertCommand,
  HELP_TEXT,
  parseCommandLine,
  type SummaryCommand,
  type TraceCommand,
  UsageError,
  type ViewCommand,
} from "./src/cli.ts";
import { convert } from "./src/convert.ts";
import { ProtocolError } from "./src/protocol.ts";
import { buildNative, NativeBuildError } from "./src/native_build.ts";
import { findPython } from "./src/python.ts";
import { RunError, type RunResult, runTraced } from "./src/runner.ts";
import { sortFunctions, SummarySink } from "./src/summary.ts";
import { formatSummary } from "./src/summary_text.ts";
import { summarizeTrace, TraceReadError } from "./src/trace_reader.ts";
import { PortTakenError, viewTrace } from "./src/view.ts";
import { formatBytes, sizeWarning } from "./src/trace_format.ts";

/** `panopticon --version` prints `panopticon <this>`. */
export const VERSION: string = denoJson.version;

// Read once at start-up: shows the stack of an error of ours.
const DEBUG = Boolean(Deno.env.get("PANOPTICON_DEBUG"));

/** Runs the command line `args` and resolves with the exit status. */
export async function main(args: readonly string[]): Promise<number> {
  try {
    const command = parseCommandLine(args);
    switch (command.kind) {
      case "help":
        console.log(HELP_TEXT);
        return 0;
      case "version":
        console.log(`panopticon ${VERSION}`);
        return 0;
      case "trace":
        return await trace(command);
      case "convert":
        return await convertRecords(command);
      case "summary":
        return await summarize(command);
      case "view":
        return await view(command);
      case "build-native":
        return await buildNativeAhead(command);
      case "python-module":
        await writeAll(Deno.stdout, new TextEncoder().encode(collectorSource));
        return 0;
    }
  } catch (error) {
    if (error instanceof UsageError) {
      printError(error);
      return 2;
    }
    printError(error);
    return error instanceof RunError && error.exitCode !== undefined ? error.exitCode : 1;
  }
}

async function trace(command: TraceCommand): Promise<number> {
  const python = await findPython({ python: command.python });
  const summary = command.summary ? new SummarySink() : undefined;
  const result = await runTraced(command.target, {
    python,
    output: command.output,
    engine: command.engine,
    filters: command.filters,
    details: command.details,
    maxDepth: command.maxDepth,
    maxEvents: command.maxEvents,
    format: command.format,
    gzip: command.gzip,
    manual: command.manual,
    follow: command.follow,
    runtime: command.runtime,
    collector: command.collector,
    tee: summary,
    onNotice: (message) => console.error(`panopticon: ${message}`),
  });
  report(command.output, python.version, result);
  if (summary !== undefined) {
    console.error(formatSummary(summary.report(), { top: 10, tablesOnly: true }).trimEnd());
  }
  if (command.view) {
    try {
      await viewTrace(command.output);
    } catch (error) {
      // The run's own status stands; the trace is on disk to open by hand.
      printError(error instanceof PortTakenError ? error : new RunError(reasonOf(error)));
    }
  }
  return result.exitCode;
}

/** `panopticon summary`: the trace's figures, as a table or as JSON. */
async function summarize(command: SummaryCommand): Promise<number> {
  const input = command.input === "-" ? Deno.stdin.readable : await openInput(command.input);
  const what = command.input === "-" ? "standard input" : `"${command.input}"`;
  let result;
  try {
    result = await summarizeTrace(
      input,
      command.thread === undefined ? {} : { thread: command.thread },
    );
  } catch (error) {
    if (error instanceof TraceReadError) {
      throw new RunError(`cannot summarize ${what}: ${error.message}`);
    }
    throw error;
  }
  const { report, warnings } = result;
  if (command.json) {
    sortFunctions(report.functions, command.sort);
    if (command.top !== undefined) report.functions.splice(command.top);
    const text = JSON.stringify({ ...report, format: result.format, gzip: result.gzip, warnings });
    await writeAll(Deno.stdout, new TextEncoder().encode(`${text}\n`));
    return 0;
  }
  const text = formatSummary(report, {
    sort: command.sort,
    top: command.top,
    title: command.input === "-" ? "standard input" : command.input,
    warnings,
  });
  await writeAll(Deno.stdout, new TextEncoder().encode(text));
  return 0;
}

/** `panopticon view`: serve the trace to the Perfetto UI and open it. */
async function view(command: ViewCommand): Promise<number> {
  try {
    const info = await Deno.stat(command.input);
    if (!info.isFile) throw new RunError(`cannot serve "${command.input}": it is not a file`);
  } catch (error) {
    if (error instanceof RunError) throw error;
    throw new RunError(`cannot serve "${command.input}": ${reasonOf(error)}`);
  }
  try {
    const outcome = await viewTrace(command.input, {
      port: command.port,
      ...(command.open ? {} : { open: false }),
    });
    return outcome === "fetched" ? 0 : 130;
  } catch (error) {
    if (error instanceof PortTakenError) throw new RunError(error.message);
    throw error;
  }
}

async function openInput(path: string): Promise<ReadableStream<Uint8Array>> {
  try {
    const info = await Deno.stat(path);
    if (info.isDirectory) throw new RunError(`cannot read "${path}": it is a directory`);
    return (await Deno.open(path)).readable;
  } catch (error) {
    if (error instanceof RunError) throw error;
    throw new RunError(`cannot read "${path}": ${reasonOf(error)}`);
  }
}

/**
 * `panopticon convert`: the records a plain-python `panopticon.trace()`
 * wrote (or handed over on standard input) become a trace.
 */
async function convertRecords(command: ConvertCommand): Promise<number> {
  let input: ReadableStream<Uint8Array>;
  if (command.input === "-") {
    input = Deno.stdin.readable;
  } else {
    try {
      input = (await Deno.open(command.input)).readable;
    } catch (error) {
      throw new RunError(`cannot read "${command.input}": ${reasonOf(error)}`);
    }
  }
  let output: Deno.FsFile;
  try {
    output = await Deno.open(command.output, { write: true, create: true, truncate: true });
  } catch (error) {
    await input.cancel().catch(() => {});
    throw new RunError(`cannot write the trace to "${command.output}": ${reasonOf(error)}`);
  }
  try {
    const summary = await convert(input, output.writable, {
      maxDepth: command.maxDepth,
      format: command.format,
      gzip: command.gzip,
    });
    report(command.output, [], {
      summary,
      engine: "setprofile",
      collector: summary.collector === "native" ? "native" : "python",
    });
    return 0;
  } catch (error) {
    await Deno.remove(command.output).catch(() => {});
    const what = command.input === "-" ? "standard input" : `"${command.input}"`;
    if (error instanceof ProtocolError) {
      throw new RunError(`${what} is not a Panopticon record stream: ${error.message}`);
    }
    throw new RunError(`could not convert ${what}: ${reasonOf(error)}`);
  }
}

/**
 * `panopticon build-native`: the native collector for the interpreter, built
 * now (or found in the cache), and what was found. Exit status 1 when it
 * cannot be built, with what is missing.
 */
async function buildNativeAhead(command: BuildNativeCommand): Promise<number> {
  const python = await findPython({ python: command.python });
  const version = python.version.join(".");
  try {
    const native = await buildNative(python);
    const how = native.built
      ? `built in ${native.seconds.toFixed(1)} s with ${native.compiler}`
      : `already built (with ${native.compiler})`;
    console.log(
      `panopticon: native collector for Python ${version} (${python.path}): ${how}, headers from ` +
        `${python.build?.include}: ${native.path}`,
    );
    return 0;
  } catch (error) {
    if (error instanceof NativeBuildError) {
      throw new RunError(
        `cannot build the native collector for Python ${version} (${python.path}): ` +
          `${error.message}; without it, Panopticon records with its Python collector`,
      );
    }
    throw error;
  }
}

async function writeAll(file: Deno.FsFile | typeof Deno.stdout, bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.length;) at += await file.write(bytes.subarray(at));
}

function reasonOf(error: unknown): string {
  if (error instanceof Deno.errors.NotFound) return "No such file or directory";
  if (error instanceof Deno.errors.PermissionDenied) return "Permission denied";
  if (error instanceof Deno.errors.IsADirectory) return "it is a directory";
  const message = error instanceof Error ? error.message : String(error);
  return message.replace(/ \(os error \d+\)$/, "");
}

/**
 * Prints the end-of-run line, with the trace's size on disk, then the
 * warnings: the conversion's, and one for a trace too big for its viewers.
 */
function report(
  output: string,
  version: readonly number[],
  result: Pick<RunResult, "summary" | "engine" | "collector">,
): void {
  let onDisk: number | undefined;
  try {
    onDisk = Deno.statSync(output).size;
  } catch {
    // Written, then moved or removed: the line goes without the size.
  }
  console.error(describeRun(output, version, result, onDisk));
  const { summary } = result;
  const warnings = [...summary.warnings];
  const big = sizeWarning(summary.format, summary.bytes);
  if (big !== undefined) warnings.push(`${output}: ${big}`);
  for (const warning of warnings) console.error(`panopticon: warning: ${warning}`);
}

/**
 * The line printed after a run. `onDisk` is the trace file's size; for a
 * gzipped trace, the size before compression follows it.
 */
export function describeRun(
  output: string,
  version: readonly number[],
  result: Pick<RunResult, "summary" | "engine" | "collector">,
  onDisk?: number,
): string {
  const { summary } = result;
  const count = (n: number, one: string, many = `${one}s`) =>
    `${n.toLocaleString("en-US")} ${n === 1 ? one : many}`;
  const { format, bytes } = summary;
  let size = "";
  if (onDisk !== undefined) {
    const uncompressed = bytes !== onDisk ? `, ${formatBytes(bytes)} uncompressed` : "";
    size = ` (${formatBytes(onDisk)}${uncompressed})`;
  }
  const viewers = format === "perfetto"
    ? "https://ui.perfetto.dev"
    : "https://ui.perfetto.dev or chrome://tracing";
  // With several processes, what they all held. A program that an exec
  // started is the same process, its main thread the same thread.
  const streams = summary.processes ?? [];
  const pids = new Set(streams.map((process) => process.pid)).size;
  const several = pids > 1;
  const events = several ? streams.reduce((sum, p) => sum + p.events, 0) : summary.events;
  const threads = several
    ? streams.reduce((sum, p) => sum + p.threads, 0) - (streams.length - pids)
    : summary.threads;
  return `panopticon: wrote ${output}${size} — ${count(events, "event")}, ` +
    (several ? `${count(pids, "process", "processes")}, ` : "") +
    `${count(threads, "thread")} (Python ${summary.pythonVersion || version.join(".")}, ` +
    `${result.collector} collector, ${summary.engine || result.engine} engine)` +
    `${summary.complete ? "" : ", cut short"}. ` +
    `Open it in ${viewers}.`;
}

function printError(error: unknown): void {
  const message = error instanceof Error ? error.message : String(error);
  console.error(`error: ${message}`);
  if (DEBUG && error instanceof Error && error.stack) console.error(error.stack);
}

if (import.meta.main) Deno.exit(await main(Deno.args));
