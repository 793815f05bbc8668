/**
 * The conversion pipeline: collector records in, a Catapult JSON or
 * Perfetto protobuf trace out.
 *
 * @module
 */

import { checkMaxDepth, FrameStateMachine } from "./frames.ts";
import {
  checkRecord,
  NdjsonDecoder,
  ProtocolError,
  type ProtocolRecord,
  type RecordCallback,
} from "./protocol.ts";
import type { TraceSink, TraceSummary } from "./trace_model.ts";
import { openTraceWriter, TRACE_FORMATS, type TraceFormat } from "./trace_format.ts";

/** Options of {@linkcode convert}, {@linkcode toCatapult} and {@linkcode toPerfetto}. */
export interface ConvertOptions {
  /**
   * The per-run token handed to the collector. When set, the `hello`
   * record must carry the same `secret`, or the conversion fails: the
   * stream did not come from this run's collector.
   *
   * @default {undefined} (any stream is accepted)
   */
  secret?: string;
  /**
   * Called with each warning as it arises (a stream cut short, a dropped
   * partial line, events the collector lost). The summary lists them too.
   *
   * @default {undefined} (warnings only go to the summary)
   */
  onWarning?: (message: string) => void;
  /**
   * The deepest slices to write: a slice nested deeper than this on its
   * thread's stack is left out (the outermost recorded frame is depth 1; a
   * C call counts as a level), and so is any flow arrow to or from it.
   * Everything above stays exact. `summary.omittedSlices` counts what was
   * left out. A positive integer or `Infinity`.
   *
   * @default {Infinity}
   */
  maxDepth?: number;
  /**
   * The trace's format ({@linkcode convert} only; {@linkcode toCatapult}
   * writes JSON, {@linkcode toPerfetto} protobuf): `json`, the Catapult
   * JSON trace, or `perfetto`, Perfetto's protobuf trace.
   *
   * @default {"json"}
   */
  format?: TraceFormat;
  /**
   * Compress the trace with gzip as it is written ({@linkcode convert}
   * only). Perfetto, chrome://tracing and speedscope open gzipped JSON.
   *
   * @default {false}
   */
  gzip?: boolean;
  /**
   * A sink that receives what the trace's writer receives, as it does
   * (e.g. a `SummarySink`, for a summary without reading the trace back).
   *
   * @default {undefined}
   */
  tee?: TraceSink;
}

/** What a conversion found, for the command line to report. */
export interface ConversionSummary extends TraceSummary {
  /** Every warning, in order. */
  warnings: string[];
  /** The trace's format. */
  format: TraceFormat;
  /** The trace's size in bytes, before any compression. */
  bytes: number;
}

/**
 * What {@linkcode toCatapult} reads: NDJSON bytes, or records already
 * decoded (e.g. by {@linkcode decodeNdjson} or built in memory).
 */
export type TraceInput =
  | ReadableStream<Uint8Array>
  | ReadableStream<ProtocolRecord>
  | AsyncIterable<Uint8Array>
  | AsyncIterable<ProtocolRecord>;

const noop = () => {};

/**
 * Converts a collector's NDJSON stream into a Catapult JSON trace, or with
 * `format: "perfetto"` a Perfetto protobuf trace, gzipped with `gzip`.
 *
 * Streams from end to end: memory is bounded by stack depth and live
 * frames, not by the length of the stream, and the input is read no faster
 * than the output is written. A stream cut short (no `end` record, or a
 * partial last line) is not an error: the trace holds what arrived,
 * `complete` is false and a warning says so. A malformed stream rejects
 * with a {@linkcode ProtocolError} naming the line; the output is then
 * aborted and the input cancelled.
 *
 * @example Converting a stream
 * ```ts
 * import { convert } from "@panopticon/panopticon";
 * import assert from "node:assert/strict";
 *
 * const ndjson = [
 *   '{"kind":"hello","protocol":2,"pid":7,"python":"3.12.1","engine":"monitoring","t0":0,"main_thread":1,"argv":["a.py"]}',
 *   '{"kind":"cfunc","id":1,"name":"print"}',
 *   '{"kind":"events","events":[[5,1,1000,0,1],[6,1,3000,0,1]]}',
 *   '{"kind":"end","ts":4000,"events":2,"dropped":0,"reason":"exit"}',
 * ].join("\n") + "\n";
 * let text = "";
 * const decoder = new TextDecoder();
 * const summary = await convert(
 *   ReadableStream.from([new TextEncoder().encode(ndjson)]),
 *   new WritableStream({ write: (chunk) => void (text += decoder.decode(chunk, { stream: true })) }),
 * );
 * assert.equal(summary.complete, true);
 * assert.equal(summary.slices, 1);
 * const trace = JSON.parse(text);
 * const print = trace.traceEvents.find((event: { ph: string }) => event.ph === "X");
 * assert.deepEqual([print.name, print.cat, print.ts, print.dur], ["print", "c_function", 1, 2]);
 * ```
 */
export function convert(
  input: ReadableStream<Uint8Array>,
  output: WritableStream<Uint8Array>,
  options: ConvertOptions = {},
): Promise<ConversionSummary> {
  // The writer makes the bytes itself: no text encoder stands in between.
  return run(input, output, options);
}

/**
 * Converts NDJSON bytes or decoded records into Catapult JSON text, as
 * streams. Errors (a {@linkcode ProtocolError} for a malformed stream)
 * error the returned stream; cancelling it cancels the input. For records,
 * the "line" an error names is the record's 1-based position.
 *
 * @example Converting records built in memory
 * ```ts
 * import { type ProtocolRecord, toCatapult } from "@panopticon/panopticon";
 * import assert from "node:assert/strict";
 *
 * const records: ProtocolRecord[] = [
 *   { kind: "hello", protocol: 2, pid: 7, python: "3.12.1", engine: "monitoring", t0: 0, main_thread: 1, argv: ["a.py"] },
 *   { kind: "code", id: 1, module: "__main__", qualname: "main", file: "a.py", line: 1, type: "function" },
 *   { kind: "events", events: [[0, 1, 0, 9, 1], [2, 1, 1500, 9, 1]] },
 * ];
 * const text = (await Array.fromAsync(toCatapult(ReadableStream.from(records)))).join("");
 * const trace = JSON.parse(text);
 * assert.equal(trace.otherData.complete, false);
 * assert.ok(trace.traceEvents.some((event: { name: string; dur?: number }) => event.name === "main" && event.dur === 1.5));
 * ```
 */
export function toCatapult(
  input: TraceInput,
  options: ConvertOptions = {},
): ReadableStream<string> {
  // The writer makes UTF-8; this is the one place where it becomes text.
  const { readable, writable } = new TextDecoderStream();
  // A failure errors `readable`, where the reader sees it: `run` aborts the
  // output it writes to, and one that fails before it locks the output (a
  // bad option) leaves it to this catch, or the reader would wait forever.
  run(input, writable, { ...options, format: "json", gzip: false })
    .catch((error) => writable.locked ? undefined : writable.abort(error))
    .catch(noop);
  return readable;
}

/**
 * Converts NDJSON bytes or decoded records into a Perfetto protobuf trace,
 * as a stream of bytes (see {@linkcode PerfettoWriter}). Errors (a
 * {@linkcode ProtocolError} for a malformed stream) error the returned
 * stream; cancelling it cancels the input.
 *
 * @example Converting records built in memory, and reading the trace back
 * ```ts
 * import { type ProtocolRecord, readPerfetto, toPerfetto } from "@panopticon/panopticon";
 * import assert from "node:assert/strict";
 *
 * const records: ProtocolRecord[] = [
 *   { kind: "hello", protocol: 2, pid: 7, python: "3.12.1", engine: "monitoring", t0: 0, main_thread: 1, argv: ["a.py"] },
 *   { kind: "code", id: 1, module: "__main__", qualname: "main", file: "a.py", line: 1, type: "function" },
 *   { kind: "events", events: [[0, 1, 0, 9, 1], [2, 1, 1500, 9, 1]] },
 * ];
 * const trace = await readPerfetto(toPerfetto(ReadableStream.from(records)));
 * assert.equal(trace.metadata.complete, false);
 * const [main] = trace.slices;
 * assert.deepEqual([main!.name, main!.ts, main!.dur, main!.thread], ["main", 0, 1500, "MainThread"]);
 * ```
 */
export function toPerfetto(
  input: TraceInput,
  options: ConvertOptions = {},
): ReadableStream<Uint8Array> {
  const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>();
  run(input, writable, { ...options, format: "perfetto", gzip: false })
    .catch((error) => writable.locked ? undefined : writable.abort(error))
    .catch(noop);
  return readable;
}

/** Decodes, runs the frame-state machine and writes the trace to `output`. */
async function run(
  input: TraceInput,
  output: WritableStream<Uint8Array>,
  options: ConvertOptions,
): Promise<ConversionSummary> {
  const warnings: string[] = [];
  const onWarning = (message: string) => {
    warnings.push(message);
    options.onWarning?.(message);
  };
  // Checked before the output is locked, so that a bad option leaves it untouched.
  const maxDepth = checkMaxDepth(options.maxDepth);
  const format = options.format ?? "json";
  if (!TRACE_FORMATS.includes(format)) {
    throw new RangeError(
      `format must be one of ${TRACE_FORMATS.join(", ")}, got ${String(format)}`,
    );
  }
  const writer = openTraceWriter(output, { format, gzip: options.gzip ?? false });
  const machine = new FrameStateMachine(
    options.tee === undefined ? writer : teeSink(writer, options.tee),
    { onWarning, maxDepth },
  );
  const secret = options.secret;
  let first = true;
  const onRecord: RecordCallback = (record, line) => {
    if (first) {
      first = false;
      if (secret !== undefined && record.kind === "hello" && record.secret !== secret) {
        throw new ProtocolError(line, "the event stream did not present this run's secret");
      }
    }
    machine.push(record, line);
  };

  const source = openSource(input);
  let decoder: NdjsonDecoder | undefined;
  let records = 0;
  try {
    for (let next = await source.next(); !next.done; next = await source.next()) {
      const value = next.value;
      if (value instanceof Uint8Array) {
        if (records > 0) {
          throw new TypeError("The input mixes bytes and records: pass one or the other");
        }
        decoder ??= new NdjsonDecoder({ onWarning });
        decoder.push(value, onRecord);
      } else {
        if (decoder !== undefined) {
          throw new TypeError("The input mixes bytes and records: pass one or the other");
        }
        records++;
        onRecord(checkRecord(value, records), records);
      }
      await writer.ready();
    }
    decoder?.finish(onRecord);
    const summary = machine.end();
    await writer.close();
    return { ...summary, warnings, format, bytes: writer.bytes };
  } catch (error) {
    try {
      await source.cancel(error);
    } catch {
      // The input failed itself, and that failure is `error`.
    }
    await writer.abort(error).catch(noop);
    throw error;
  }
}

/** A sink that hands everything to `first`, then to `second`. */
export function teeSink(first: TraceSink, second: TraceSink): TraceSink {
  return {
    process(process) {
      first.process(process);
      second.process(process);
    },
    thread(thread) {
      first.thread(thread);
      second.thread(thread);
    },
    slice(slice) {
      first.slice(slice);
      second.slice(slice);
    },
    mark(mark) {
      first.mark?.(mark);
      second.mark?.(mark);
    },
    asyncSlice(slice) {
      first.asyncSlice?.(slice);
      second.asyncSlice?.(slice);
    },
    flowArrow(arrow) {
      first.flowArrow?.(arrow);
      second.flowArrow?.(arrow);
    },
    finish(summary) {
      first.finish(summary);
      second.finish(summary);
    },
  };
}

/** One way to read any {@linkcode TraceInput}, and to cancel it with a reason. */
interface Source {
  next(): Promise<IteratorResult<Uint8Array | ProtocolRecord>>;
  cancel(reason: unknown): Promise<void>;
}

function openSource(input: TraceInput): Source {
  if (input instanceof ReadableStream) {
    // A reader, not the async iterator: its `return()` cancels without a reason.
    const reader = (input as ReadableStream<Uint8Array | ProtocolRecord>).getReader();
    return {
      next: () => reader.read() as Promise<IteratorResult<Uint8Array | ProtocolRecord>>,
      cancel: (reason) => reader.cancel(reason),
    };
  }
  const iterator = (input as AsyncIterable<Uint8Array | ProtocolRecord>)[Symbol.asyncIterator]();
  return {
    next: () => iterator.next(),
    cancel: async () => {
      await iterator.return?.();
    },
  };
}
