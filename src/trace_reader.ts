/**
 * Reading any trace Panopticon writes, or a recording, into a
 * {@linkcode TraceSink}: a Catapult JSON trace, gzipped or not, a Perfetto
 * protobuf trace, or the collector's records (NDJSON, with the binary
 * frames of protocol 4), which go through the frame-state machine as they
 * do when a trace is written. The format is told from the first bytes,
 * not from the file's name.
 *
 * @module
 */

import { CatapultReader, TraceReadError } from "./catapult_reader.ts";
import { FrameStateMachine } from "./frames.ts";
import { PerfettoReadError } from "./perfetto_reader.ts";
import { PerfettoSliceReader } from "./perfetto_slices.ts";
import { NdjsonDecoder, ProtocolError } from "./protocol.ts";
import { type SummaryOptions, type SummaryReport, SummarySink } from "./summary.ts";
import type { TraceSink } from "./trace_model.ts";

export { TraceReadError };

/** What a trace file holds. */
export type TraceFileFormat = "json" | "perfetto" | "ndjson";

/** Options of {@linkcode readTrace}. */
export interface ReadTraceOptions {
  /**
   * Called with each warning: a trace or a recording cut short, events
   * the collector dropped.
   *
   * @default {undefined}
   */
  onWarning?: (message: string) => void;
}

/** What {@linkcode readTrace} found. */
export interface TraceRead {
  /** What the file held. */
  format: TraceFileFormat;
  /** Whether it was gzipped. */
  gzip: boolean;
  /** Every warning, in order. */
  warnings: string[];
}

/** Reads the first bytes of a stream and gives them back with the rest. */
async function peek(
  input: ReadableStream<Uint8Array>,
  bytes: number,
): Promise<{ head: Uint8Array; stream: ReadableStream<Uint8Array> }> {
  const reader = input.getReader();
  const chunks: Uint8Array[] = [];
  let length = 0;
  while (length < bytes) {
    const { value, done } = await reader.read();
    if (done) break;
    chunks.push(value);
    length += value.length;
  }
  const head = new Uint8Array(length);
  let at = 0;
  for (const chunk of chunks) {
    head.set(chunk, at);
    at += chunk.length;
  }
  let first = true;
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (first) {
        first = false;
        if (head.length > 0) {
          controller.enqueue(head);
          return;
        }
      }
      const { value, done } = await reader.read();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    cancel: (reason) => reader.cancel(reason),
  }, { highWaterMark: 0 });
  return { head, stream };
}

/**
 * The format of a trace from its first bytes: a JSON document (`{` or
 * `[`), whose first key is `kind` for a recording; protobuf (a `Trace`
 * starts with its first packet's tag, `0x0a`).
 */
export function sniffFormat(head: Uint8Array): TraceFileFormat | undefined {
  const space = (byte: number | undefined) =>
    byte === 0x20 || byte === 0x0a || byte === 0x0d || byte === 0x09;
  // A JSON document's first bytes are text; a protobuf trace's first packet
  // (its tag is a newline byte) has binary bytes within a few of them.
  if (head[0] === 0x0a && head.some((byte) => byte < 0x20 && !space(byte))) return "perfetto";
  let at = 0;
  while (at < head.length && space(head[at])) at++;
  const first = head[at];
  if (first === 0x5b) return "json";
  if (first !== 0x7b) return undefined;
  const text = new TextDecoder().decode(head.subarray(at, at + 64));
  return /^\{\s*"kind"\s*:/.test(text) ? "ndjson" : "json";
}

/**
 * Reads a trace or a recording from `input` into `sink`: process, threads,
 * slices and marks, then the summary. Resolves with what it read.
 *
 * @throws {TraceReadError} if `input` is none of the formats, or is
 * malformed; a recording's {@linkcode ProtocolError} becomes one.
 *
 * @example Reading a recording with binary frames
 * ```ts
 * import { readTrace, SummarySink } from "@panopticon/panopticon";
 * import assert from "node:assert/strict";
 *
 * const file = await Deno.open(new URL("../tests/fixtures/native.stream", import.meta.url));
 * const sink = new SummarySink();
 * const read = await readTrace(file.readable, sink);
 * assert.deepEqual([read.format, read.gzip], ["ndjson", false]);
 * assert.equal(sink.report().run.collector, "native");
 * ```
 */
export async function readTrace(
  input: ReadableStream<Uint8Array>,
  sink: TraceSink,
  options: ReadTraceOptions = {},
): Promise<TraceRead> {
  const warnings: string[] = [];
  const onWarning = (message: string) => {
    warnings.push(message);
    options.onWarning?.(message);
  };
  let { head, stream } = await peek(input, 64);
  let gzip = false;
  if (head[0] === 0x1f && head[1] === 0x8b) {
    gzip = true;
    ({ head, stream } = await peek(
      stream.pipeThrough(
        new DecompressionStream("gzip") as TransformStream<Uint8Array, Uint8Array>,
      ),
      64,
    ).catch((error) => {
      throw new TraceReadError(`the gzip data is broken: ${reasonOf(error)}`);
    }));
  }
  const format = sniffFormat(head);
  try {
    switch (format) {
      case "json":
        await readCatapultStream(stream, sink, onWarning);
        break;
      case "ndjson":
        await readRecording(stream, sink, onWarning);
        break;
      case "perfetto":
        await readPerfettoStream(stream, sink);
        break;
      case undefined:
        await stream.cancel().catch(() => {});
        throw new TraceReadError(
          head.length === 0
            ? "the file is empty"
            : "this is not a trace Panopticon reads: expected a JSON trace (.json, .json.gz), " +
              "a Perfetto protobuf trace (.pftrace) or a recording (.ndjson)",
        );
    }
  } catch (error) {
    await stream.cancel(error).catch(() => {});
    if (error instanceof TraceReadError) throw error;
    if (error instanceof ProtocolError) {
      throw new TraceReadError(`the recording is broken at ${error.message}`);
    }
    if (error instanceof PerfettoReadError) {
      throw new TraceReadError(`the protobuf trace is broken: ${error.message}`);
    }
    if (gzip && error instanceof TypeError) {
      throw new TraceReadError(`the gzip data is broken: ${reasonOf(error)}`);
    }
    throw error;
  }
  return { format: format!, gzip, warnings };
}

async function readCatapultStream(
  stream: ReadableStream<Uint8Array>,
  sink: TraceSink,
  onWarning: (message: string) => void,
): Promise<void> {
  const reader = new CatapultReader(sink, { onWarning });
  const decoder = new TextDecoder();
  for await (const chunk of stream) reader.push(decoder.decode(chunk, { stream: true }));
  reader.push(decoder.decode());
  reader.finish();
}

async function readPerfettoStream(
  stream: ReadableStream<Uint8Array>,
  sink: TraceSink,
): Promise<void> {
  const reader = new PerfettoSliceReader(sink);
  for await (const chunk of stream) reader.push(chunk);
  reader.finish();
}

/** A recording through the pipeline that writes traces: the decoder, then the frame-state machine. */
async function readRecording(
  stream: ReadableStream<Uint8Array>,
  sink: TraceSink,
  onWarning: (message: string) => void,
): Promise<void> {
  const decoder = new NdjsonDecoder({ onWarning });
  const machine = new FrameStateMachine(sink, { onWarning });
  const onRecord = machine.push.bind(machine);
  for await (const chunk of stream) decoder.push(chunk, onRecord);
  decoder.finish(onRecord);
  machine.end();
}

/** What {@linkcode summarizeTrace} found: the report, and how the trace was read. */
export interface TraceSummaryResult extends TraceRead {
  report: SummaryReport;
}

/**
 * Reads a trace or a recording and sums it up (see
 * {@linkcode SummarySink}).
 *
 * @throws {TraceReadError} as {@linkcode readTrace} does, or if
 * `options.thread` names no thread of the trace.
 *
 * @example
 * ```ts
 * import { summarizeTrace } from "@panopticon/panopticon";
 * import assert from "node:assert/strict";
 *
 * const file = await Deno.open(new URL("../tests/fixtures/generator.ndjson", import.meta.url));
 * const { report } = await summarizeTrace(file.readable);
 * const numbers = report.functions.find((f) => f.name === "numbers")!;
 * // One generator frame, resumed once: two slices.
 * assert.deepEqual([numbers.calls, numbers.slices], [1, 2]);
 * ```
 */
export async function summarizeTrace(
  input: ReadableStream<Uint8Array>,
  options: SummaryOptions & ReadTraceOptions = {},
): Promise<TraceSummaryResult> {
  const sink = new SummarySink(options);
  try {
    const read = await readTrace(input, sink, options);
    let report: SummaryReport;
    try {
      report = sink.report();
    } catch (error) {
      throw new TraceReadError(reasonOf(error));
    }
    return { ...read, report };
  } finally {
    sink.close();
  }
}

function reasonOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
