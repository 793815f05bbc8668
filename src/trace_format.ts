/**
 * Trace formats: which one a file name asks for, the writer of each, gzip
 * on the way out, and when a trace is too big for its viewers.
 *
 * @module
 */

import { CatapultWriter } from "./catapult.ts";
import { PerfettoWriter } from "./perfetto.ts";
import type { TraceSink } from "./trace_model.ts";

/**
 * A trace format: `json`, the Catapult JSON trace that Perfetto,
 * chrome://tracing and speedscope open; `perfetto`, Perfetto's protobuf
 * trace, a fifth to a sixth of the size, for Perfetto's UI and trace
 * processor.
 */
export type TraceFormat = "json" | "perfetto";

/** Every format, in the order the help text lists them. */
export const TRACE_FORMATS: readonly TraceFormat[] = ["json", "perfetto"];

/** How a trace is written: its format, and whether it is gzipped as it streams. */
export interface OutputFormat {
  format: TraceFormat;
  gzip: boolean;
}

/** File name endings and the formats they mean, longest first. */
const ENDINGS: readonly [string, OutputFormat][] = [
  [".perfetto-trace.gz", { format: "perfetto", gzip: true }],
  [".pftrace.gz", { format: "perfetto", gzip: true }],
  [".json.gz", { format: "json", gzip: true }],
  [".perfetto-trace", { format: "perfetto", gzip: false }],
  [".pftrace", { format: "perfetto", gzip: false }],
  [".json", { format: "json", gzip: false }],
];

/**
 * The format a file name asks for: `.json`, `.json.gz`, `.pftrace` or
 * `.perfetto-trace` (either with `.gz`), in any case; undefined for any
 * other name.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { formatOfPath } from "./trace_format.ts";
 *
 * assert.deepEqual(formatOfPath("run.pftrace"), { format: "perfetto", gzip: false });
 * assert.deepEqual(formatOfPath("run.JSON.GZ"), { format: "json", gzip: true });
 * assert.equal(formatOfPath("run.trace"), undefined);
 * ```
 */
export function formatOfPath(path: string): OutputFormat | undefined {
  const name = path.toLowerCase();
  for (const [ending, format] of ENDINGS) {
    if (name.endsWith(ending)) return { ...format };
  }
  return undefined;
}

/** The file name ending of a format: `.json`, `.json.gz`, `.pftrace`, `.pftrace.gz`. */
export function extensionOf(output: OutputFormat): string {
  return `${output.format === "perfetto" ? ".pftrace" : ".json"}${output.gzip ? ".gz" : ""}`;
}

/** What the conversion writes to: a trace sink that streams to an output. */
export interface TraceWriter extends TraceSink {
  /** Resolves when the output wants more; rejects if it failed. */
  ready(): Promise<void>;
  /** Writes what is left and closes the output; rejects with its failure. */
  close(): Promise<void>;
  /** Aborts the output. */
  abort(reason?: unknown): Promise<void>;
  /** The trace's bytes written so far, before any compression. */
  readonly bytes: number;
}

/**
 * Makes the writer of `output.format` that streams to `destination`, through
 * gzip (the runtime's `CompressionStream`) when `output.gzip`, counting the
 * trace's bytes on the way.
 */
export function openTraceWriter(
  destination: WritableStream<Uint8Array>,
  output: OutputFormat,
): TraceWriter {
  let target = destination;
  let piped: Promise<void> | undefined;
  if (output.gzip) {
    const gzip = new CompressionStream("gzip");
    // The pipe closes `destination` after the last compressed bytes, and
    // aborts it if compression is aborted.
    piped = gzip.readable.pipeTo(destination);
    // Its failure is reported by the writes, `close()` and `abort()`.
    piped.catch(() => {});
    target = gzip.writable as WritableStream<Uint8Array>;
  }
  let bytes = 0;
  const inner = target.getWriter();
  const counted = new WritableStream<Uint8Array>({
    write(chunk) {
      bytes += chunk.length;
      return inner.write(chunk);
    },
    close: () => inner.close(),
    abort: (reason) => inner.abort(reason),
  });
  const sink = output.format === "perfetto"
    ? new PerfettoWriter(counted)
    : new CatapultWriter(counted);
  return {
    process: (process) => sink.process(process),
    thread: (thread) => sink.thread(thread),
    slice: (slice) => sink.slice(slice),
    mark: (mark) => sink.mark(mark),
    asyncSlice: (slice) => sink.asyncSlice(slice),
    flowArrow: (arrow) => sink.flowArrow(arrow),
    finish: (summary) => sink.finish(summary),
    // The output's own readiness too: a failure there (a reader that
    // cancelled) must stop the conversion even before a chunk is written.
    ready: () => inner.ready.then(() => sink.ready()),
    async close() {
      await sink.close();
      await piped;
    },
    async abort(reason) {
      await sink.abort(reason);
      await piped?.catch(() => {});
    },
    get bytes() {
      return bytes;
    },
  };
}

/**
 * The trace size past which a viewer struggles, in bytes before any
 * compression: Perfetto's UI runs out of memory on JSON traces of 1 to 2
 * GB; a protobuf trace takes a few times less memory per event there.
 */
export const SIZE_LIMITS: Readonly<Record<TraceFormat, number>> = {
  json: 500e6,
  perfetto: 1.5e9,
};

/**
 * The warning for a trace of `bytes` (before compression) in `format`, or
 * undefined when viewers open it comfortably. It names what would help.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { sizeWarning } from "./trace_format.ts";
 *
 * assert.equal(sizeWarning("json", 1e6), undefined);
 * assert.match(sizeWarning("json", 2e9)!, /2\.0 GB of JSON.*\.pftrace/);
 * ```
 */
export function sizeWarning(format: TraceFormat, bytes: number): string | undefined {
  if (bytes <= SIZE_LIMITS[format]) return undefined;
  const what = format === "json"
    ? `${formatBytes(bytes)} of JSON is more than viewers open comfortably (Perfetto's UI runs ` +
      "out of memory on JSON traces of 1 to 2 GB)"
    : `${formatBytes(bytes)} is more than Perfetto's UI opens comfortably`;
  const protobuf = format === "json"
    ? "the protobuf format (-o NAME.pftrace, a fifth to a sixth of the size), "
    : "";
  return `${what}: to make it smaller, use ${protobuf}--exclude-stdlib or another filter ` +
    "(--include, --exclude, --no-c-calls), --max-depth N, or record only a " +
    "panopticon.trace() block (--manual)";
}

/** A size for people: `812 B`, `12.3 MB`, `1.5 GB`. */
export function formatBytes(bytes: number): string {
  if (bytes < 1000) return `${bytes} B`;
  const units = ["kB", "MB", "GB", "TB"];
  let value = bytes / 1000;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}
