/**
 * Panopticon's converter as a library: the records of its collectors in
 * (NDJSON lines, and from protocol 4 the binary frames of event batches
 * that follow some of them), Catapult JSON traces (for Perfetto,
 * chrome://tracing and speedscope) or Perfetto protobuf traces out, as
 * streams.
 *
 * The pipeline is {@linkcode decodeNdjson} (or {@linkcode NdjsonDecoder}),
 * then the {@linkcode FrameStateMachine}, then a {@linkcode CatapultWriter}
 * or a {@linkcode PerfettoWriter}; {@linkcode toCatapult},
 * {@linkcode toPerfetto} and {@linkcode convert} assemble it,
 * {@linkcode convertProcesses} joins the streams of several processes (a
 * program and the Python processes it started) into one trace, and
 * {@linkcode readPerfetto} reads a protobuf trace back. The record protocol
 * is specified in `docs/protocol.md`; {@linkcode unpackEvents} and
 * {@linkcode unpackBatch} decode event batches for tools.
 *
 * The other way round, {@linkcode readTrace} reads a finished trace (JSON,
 * gzipped or not, or protobuf) or a recording into any
 * {@linkcode TraceSink}; {@linkcode SummarySink} sums one up per function,
 * {@linkcode summarizeTrace} does both and {@linkcode formatSummary} prints
 * the result as `panopticon summary` does. {@linkcode serveTrace} and
 * {@linkcode viewTrace} open a trace in the Perfetto UI, as
 * `panopticon view` does.
 *
 * @example Converting NDJSON text to a Catapult trace
 * ```ts
 * import { toCatapult } from "./mod.ts";
 * import assert from "node:assert/strict";
 *
 * const ndjson = [
 *   '{"kind":"hello","protocol":2,"pid":4242,"python":"3.12.1","engine":"monitoring","t0":1000,"main_thread":140001,"argv":["gen.py"]}',
 *   '{"kind":"thread","thread":140001,"native_id":4242,"name":"MainThread"}',
 *   '{"kind":"code","id":1,"module":"__main__","qualname":"<module>","file":"gen.py","line":1,"type":"function"}',
 *   '{"kind":"code","id":2,"module":"__main__","qualname":"numbers","file":"gen.py","line":1,"type":"generator"}',
 *   '{"kind":"events","events":[[0,140001,1000,7001,1],[0,140001,1100,7002,2],[4,140001,1200,7002,2],[1,140001,1500,7002,2],[2,140001,1600,7002,2],[2,140001,1700,7001,1]]}',
 *   '{"kind":"end","ts":1800,"events":6,"dropped":0,"reason":"exit"}',
 * ].join("\n") + "\n";
 * const input = ReadableStream.from([new TextEncoder().encode(ndjson)]);
 * const trace = JSON.parse((await Array.fromAsync(toCatapult(input))).join(""));
 *
 * const numbers = trace.traceEvents.filter((event: { name: string }) => event.name === "numbers");
 * assert.deepEqual(
 *   numbers.map((event: { ts: number; dur: number }) => [event.ts, event.dur]),
 *   [[0.1, 0.1], [0.5, 0.1]],
 * );
 * // One flow joins the generator's two slices.
 * assert.equal(numbers[0].bind_id, numbers[1].bind_id);
 * assert.equal(numbers[0].flow_out, true);
 * assert.equal(numbers[1].flow_in, true);
 * assert.equal(trace.otherData.complete, true);
 * ```
 *
 * @example Converting a file to a file, with a summary
 * ```ts
 * import { convert } from "./mod.ts";
 * import assert from "node:assert/strict";
 *
 * const output = await Deno.makeTempFile({ suffix: ".json" });
 * const summary = await convert(
 *   (await Deno.open(new URL("./tests/fixtures/generator.ndjson", import.meta.url))).readable,
 *   (await Deno.open(output, { write: true, truncate: true })).writable,
 * );
 * assert.equal(summary.complete, true);
 * assert.equal(summary.events, 8);
 * assert.equal(summary.slices, 5);
 * assert.deepEqual(summary.warnings, []);
 * assert.ok(Array.isArray(JSON.parse(await Deno.readTextFile(output)).traceEvents));
 * await Deno.remove(output);
 * ```
 *
 * @example Summing up a trace
 * ```ts
 * import { formatSummary, summarizeTrace } from "./mod.ts";
 * import assert from "node:assert/strict";
 *
 * const file = await Deno.open(new URL("./tests/fixtures/generator.ndjson", import.meta.url));
 * const { report } = await summarizeTrace(file.readable);
 * const numbers = report.functions.find((f) => f.name === "numbers")!;
 * assert.deepEqual([numbers.kind, numbers.calls, numbers.slices], ["generator", 1, 2]);
 * assert.match(formatSummary(report), /Generators, coroutines and async generators/);
 * ```
 *
 * @module
 */

export {
  type ConversionSummary,
  convert,
  type ConvertOptions,
  toCatapult,
  toPerfetto,
  type TraceInput,
} from "./src/convert.ts";
export {
  type BatchRecord,
  type CFuncRecord,
  checkRecord,
  type CodeRecord,
  type CodeType,
  decodeNdjson,
  type DecodeNdjsonOptions,
  decodeRecord,
  type EndRecord,
  type EventsRecord,
  type FlushRecord,
  type FrameRecord,
  type HelloRecord,
  isOp,
  type JsonValue,
  type LimitRecord,
  type MarkRecord,
  MAX_FRAME_BYTES,
  MAX_OP,
  NdjsonDecoder,
  Op,
  OP_RANGE,
  type ParentRef,
  PROTOCOL_VERSION,
  ProtocolError,
  type ProtocolErrorOptions,
  type ProtocolEvent,
  type ProtocolRecord,
  type RecordCallback,
  type ThreadRecord,
} from "./src/protocol.ts";
export type { CpuRecord, GcRecord, RuntimeRecord } from "./src/protocol.ts";
export { unpackEvents } from "./src/packed.ts";
export { unpackBatch } from "./src/batch.ts";
export {
  countingIds,
  FrameStateMachine,
  type FrameStateMachineOptions,
  type TraceIds,
} from "./src/frames.ts";
export { CatapultWriter, type CatapultWriterOptions } from "./src/catapult.ts";
export { PerfettoWriter, type PerfettoWriterOptions } from "./src/perfetto.ts";
export {
  decodePerfetto,
  PerfettoDecoder,
  type PerfettoDecoderOptions,
  type PerfettoEvent,
  type PerfettoFlow,
  type PerfettoInput,
  type PerfettoPacket,
  PerfettoReadError,
  type PerfettoSlice,
  type PerfettoTrace,
  type PerfettoTrack,
  readPerfetto,
} from "./src/perfetto_reader.ts";
export { TRACE_FORMATS, type TraceFormat } from "./src/trace_format.ts";
export {
  type FunctionSummary,
  type RunFacts,
  sortFunctions,
  SUMMARY_SORT_KEYS,
  type SummaryOptions,
  type SummaryReport,
  SummarySink,
  type SummarySortKey,
  type TaskSummary,
  type ThreadSummary,
} from "./src/summary.ts";
export { formatSummary, type FormatSummaryOptions } from "./src/summary_text.ts";
export { OWN_ARGS, valueName, type ValueSummary } from "./src/values.ts";
export { CatapultReader, type CatapultReaderOptions } from "./src/catapult_reader.ts";
export { PerfettoSliceReader } from "./src/perfetto_slices.ts";
export {
  readTrace,
  type ReadTraceOptions,
  summarizeTrace,
  type TraceFileFormat,
  type TraceRead,
  TraceReadError,
  type TraceSummaryResult,
} from "./src/trace_reader.ts";
export {
  type BrowserResult,
  type OpenBrowser,
  PERFETTO_UI,
  PortTakenError,
  serveTrace,
  type ServeTraceOptions,
  systemBrowser,
  type TraceServer,
  VIEW_PORT,
  viewTrace,
  type ViewTraceOptions,
} from "./src/view.ts";
export type {
  AsyncSlice,
  FlowArrow,
  Mark,
  ProcessInfo,
  ProcessSummary,
  RecordingLimit,
  Slice,
  SliceArgs,
  SliceSite,
  ThreadInfo,
  TraceSink,
  TraceSummary,
} from "./src/trace_model.ts";
export {
  convertProcesses,
  type ConvertProcessesOptions,
  type ProcessesInput,
  type ProcessStreams,
} from "./src/processes.ts";
