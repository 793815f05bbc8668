/**
 * A streaming writer of Catapult traces (the Trace Event Format, JSON
 * object form) that Perfetto, chrome://tracing and speedscope open.
 *
 * @module
 */

import manifest from "../deno.json" with { type: "json" };
import type {
  AsyncSlice,
  FlowArrow,
  Mark,
  ProcessInfo,
  Slice,
  SliceArgs,
  SliceSite,
  ThreadInfo,
  TraceSink,
  TraceSummary,
} from "./trace_model.ts";

/** Options of {@linkcode CatapultWriter}. */
export interface CatapultWriterOptions {
  /**
   * How many bytes to gather before writing them as one chunk. Larger
   * chunks mean fewer writes; a chunk is at least this long (but for the
   * last) and at most one event longer.
   *
   * @default {65536}
   */
  chunkSize?: number;
  /**
   * The Panopticon version recorded in the trace's `otherData`.
   *
   * @default {the version of this package}
   */
  version?: string;
}

/** The rendered parts of a site's slices, computed once per site. */
interface RenderedSite {
  /**
   * `,\n{"ph":"X","name":…,"cat":…,"args":{…},"pid":<pid>,"tid":` as UTF-8:
   * everything a slice without extra args writes before its numbers.
   */
  head: Uint8Array;
  /** `"name":…,"cat":…` */
  names: string;
  /** The site's args without braces, e.g. `"file":"a.py","line":1`, or "". */
  args: string;
  /** The pid in `head`. */
  pid: number;
}

const noop = () => {};
const encoder = new TextEncoder();
const ascii = (text: string): Uint8Array => encoder.encode(text);

// The constant parts of a slice, as bytes.
const SEPARATOR = ",\n";
const BIND_ID = ascii(',"bind_id":"0x');
const FLOW_IN = ascii(',"flow_in":true');
const FLOW_OUT = ascii(',"flow_out":true');
// A slice's thread time (`--cpu-time`): Catapult's names for it.
const TTS = ascii(',"tts":');
const TDUR = ascii(',"tdur":');
/**
 * More than the bytes a slice needs beyond its head: a thread id, four
 * times, a flow id and both flow flags.
 */
const SLICE_BYTES = 256;
const HEX = ascii("0123456789abcdef");

/** "00" to "99": two digits a division, where one a division costs twice as many. */
const DIGIT_PAIRS = ascii(
  Array.from({ length: 100 }, (_, n) => String(n).padStart(2, "0")).join(""),
);

/**
 * The fraction of a microsecond in nanoseconds, 0 to 999, as it follows
 * the whole: "" for 0, ".5" for 500, ".25" for 250, ".001" for 1, four
 * bytes each (padded), with its length in {@linkcode FRACTION_LENGTHS}:
 * written with four stores and no division or branch.
 */
const FRACTIONS = new Uint8Array(4000);
const FRACTION_LENGTHS = new Uint8Array(1000);
for (let ns = 1; ns < 1000; ns++) {
  const text = `.${String(ns).padStart(3, "0")}`.replace(/0+$/, "");
  encoder.encodeInto(text, FRACTIONS.subarray(4 * ns, 4 * ns + 4));
  FRACTION_LENGTHS[ns] = text.length;
}

/** How many decimal digits `n`, a non-negative integer below 2^53, has. */
function digitCount(n: number): number {
  if (n < 1e8) {
    if (n < 1e4) return n < 100 ? (n < 10 ? 1 : 2) : n < 1000 ? 3 : 4;
    return n < 1e6 ? (n < 1e5 ? 5 : 6) : n < 1e7 ? 7 : 8;
  }
  let digits = 9;
  for (let limit = 1e9; limit <= n; limit *= 10) digits++;
  return digits;
}

/**
 * Writes the ASCII decimal digits of `n`, a non-negative integer below
 * 2^53, at `at`; returns the index after them. Two digits a step, from a
 * table: half the divisions of a digit a step, for the 9- and 10-digit
 * times of a trace hours long (with the table of fractions below, the
 * writer took 82 ns a slice instead of 95, measured).
 */
function writeInteger(out: Uint8Array, at: number, n: number): number {
  // Thread ids and short durations.
  if (n < 10) {
    out[at] = 48 + n;
    return at + 1;
  }
  const end = at + digitCount(n);
  let i = end;
  // Below 2^31 the arithmetic is on small integers, which V8 keeps unboxed.
  while (n >= 0x80000000) {
    const q = Math.floor(n / 100);
    const pair = (n - q * 100) * 2;
    out[--i] = DIGIT_PAIRS[pair + 1]!;
    out[--i] = DIGIT_PAIRS[pair]!;
    n = q;
  }
  while (n >= 100) {
    const q = (n / 100) | 0;
    const pair = (n - q * 100) * 2;
    out[--i] = DIGIT_PAIRS[pair + 1]!;
    out[--i] = DIGIT_PAIRS[pair]!;
    n = q;
  }
  if (n >= 10) {
    out[--i] = DIGIT_PAIRS[n * 2 + 1]!;
    out[--i] = DIGIT_PAIRS[n * 2]!;
  } else {
    out[--i] = 48 + n;
  }
  return end;
}

/**
 * Writes microseconds with at most three decimals (nanoseconds), shortest
 * form (`0`, `2`, `0.1`, `1234.567`), at `at`; returns the index after.
 * This runs twice a slice, so it formats the whole and the fraction as
 * integers, straight into bytes, rather than through `String()`. The
 * caller leaves room for four bytes of fraction, which are always written.
 */
function writeMicros(out: Uint8Array, at: number, us: number): number {
  let ns = Math.round(us * 1000);
  if (ns < 0) {
    out[at++] = 0x2d; // "-"
    ns = -ns;
  }
  // Beyond 2^53 ns (104 days: the wire's integers stay below 2^53, but a
  // difference of two may not) the arithmetic below is not exact. NaN
  // fails this test too.
  if (!(ns <= Number.MAX_SAFE_INTEGER)) return writeLargeMicros(out, at, ns / 1000);
  const whole = Math.floor(ns / 1000);
  at = writeInteger(out, at, whole);
  const fraction = ns - whole * 1000;
  const from = fraction * 4;
  out[at] = FRACTIONS[from]!;
  out[at + 1] = FRACTIONS[from + 1]!;
  out[at + 2] = FRACTIONS[from + 2]!;
  out[at + 3] = FRACTIONS[from + 3]!;
  return at + FRACTION_LENGTHS[fraction]!;
}

/**
 * Writes `us`, a non-negative number of microseconds too big for the exact
 * digits of {@linkcode writeMicros}, as `String()` does (shortest form; in
 * exponent notation from 10^21 on, which is still JSON, and at most 24
 * characters); returns the index after. Off the hot path: no slice of a
 * stream that keeps to the protocol gets here.
 *
 * @throws {RangeError} if `us` is NaN or infinite: JSON has no such numbers.
 */
function writeLargeMicros(out: Uint8Array, at: number, us: number): number {
  if (!Number.isFinite(us)) throw new RangeError(`a slice's time is not finite: ${us} µs`);
  return at + encoder.encodeInto(String(us), out.subarray(at)).written;
}

/**
 * Writes `,"ts":` at `at`; returns the index after. Six stores beat both a
 * loop and `set()` for a constant this short (measured: a loop costs about
 * 2 ns a byte here, `set()` 20 to 30 ns a call whatever the length).
 */
function writeTsKey(out: Uint8Array, at: number): number {
  out[at] = 0x2c; // ,
  out[at + 1] = 0x22; // "
  out[at + 2] = 0x74; // t
  out[at + 3] = 0x73; // s
  out[at + 4] = 0x22; // "
  out[at + 5] = 0x3a; // :
  return at + 6;
}

/** Writes `,"dur":` at `at`; returns the index after. */
function writeDurKey(out: Uint8Array, at: number): number {
  out[at] = 0x2c; // ,
  out[at + 1] = 0x22; // "
  out[at + 2] = 0x64; // d
  out[at + 3] = 0x75; // u
  out[at + 4] = 0x72; // r
  out[at + 5] = 0x22; // "
  out[at + 6] = 0x3a; // :
  return at + 7;
}

/** Copies `bytes` to `out` at `at`; returns the index after. */
function copy(out: Uint8Array, at: number, bytes: Uint8Array): number {
  out.set(bytes, at);
  return at + bytes.length;
}

/**
 * Writes a Catapult trace, as UTF-8 bytes, to a stream, as a
 * {@linkcode TraceSink}.
 *
 * The output is `{"traceEvents":[` then one event per line, then
 * `],"displayTimeUnit":"ns","otherData":{…}}`. Metadata events (`ph:"M"`)
 * name the process and each thread, as soon as they are known; slices are
 * complete events (`ph:"X"`) in microseconds; the slices of one generator,
 * coroutine or async generator are joined with v2 flows (`bind_id` with
 * `flow_in`/`flow_out` on the slices themselves). Of several processes,
 * each thread and its slices go with the process its
 * {@linkcode ThreadInfo.pid} names, and the arrow from the slice that
 * started a child process to the child's first slice is a v2 flow too
 * (see {@linkcode CatapultWriter.slice}). Chunks of about
 * `chunkSize` bytes are written as they fill, without waiting: await
 * {@linkcode CatapultWriter.ready} between batches to respect
 * backpressure, and {@linkcode CatapultWriter.close} at the end.
 *
 * Slices are the bulk of a trace, so they are written straight into a
 * byte buffer: each site's `name`, `cat` and `args` are escaped and
 * encoded once, with the `pid`, and numbers are formatted digit by digit.
 * No string is made per slice: that takes about half the time of
 * building each slice as a string and encoding them once per 64 KiB
 * (measured, 130 against 230 to 250 ns a slice). A slice reads
 * `{"ph":"X","name":"fib","cat":"function","args":{"file":"fib.py","line":1},"pid":7,"tid":1,"ts":12.5,"dur":0.25}`:
 * the constant fields first, so that they are one copy.
 *
 * @example Writing a trace by hand
 * ```ts
 * import { CatapultWriter } from "@panopticon/panopticon";
 * import assert from "node:assert/strict";
 *
 * let text = "";
 * const decoder = new TextDecoder();
 * const writer = new CatapultWriter(
 *   new WritableStream({ write: (chunk) => void (text += decoder.decode(chunk, { stream: true })) }),
 * );
 * writer.process({ pid: 7, name: "python a.py", argv: ["a.py"], pythonVersion: "3.12.1", engine: "monitoring", protocol: 2 });
 * writer.thread({ tid: 1, name: "MainThread", ident: 140001, nativeId: 7 });
 * const site = { name: "main", category: "function", file: "a.py", line: 1 };
 * writer.slice({ tid: 1, start: 0, duration: 2.5, site, flow: 0, flowIn: false, flowOut: false, args: undefined });
 * writer.finish({
 *   complete: true, events: 2, recorded: 2, dropped: 0, reason: "exit", slices: 1, unfinished: 0, threads: 1,
 *   duration: 3, pid: 7, pythonVersion: "3.12.1", engine: "monitoring", protocol: 2,
 * });
 * await writer.close();
 * assert.deepEqual(JSON.parse(text).traceEvents.at(-1), {
 *   ph: "X", pid: 7, tid: 1, ts: 0, dur: 2.5, name: "main", cat: "function", args: { file: "a.py", line: 1 },
 * });
 * ```
 */
export class CatapultWriter implements TraceSink {
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #chunkSize: number;
  readonly #version: string;
  /** The chunk being filled; handed to the output whole, then replaced. */
  #buffer: Uint8Array;
  #at = 0;
  #first = true;
  #pid = 0;
  #sites = new Map<SliceSite, RenderedSite>();
  /**
   * The heads of slices with args, by the args object and the site: an
   * asyncio task's args (its name) are one object on every slice of its
   * coroutines, hundreds of thousands of slices that would otherwise each
   * stringify and encode their head. Args objects are never changed once
   * made (`Slice.args`), so a head stays right; a one-off args
   * object's entry goes with it.
   */
  #argsHeads = new WeakMap<SliceArgs, Map<RenderedSite, Uint8Array>>();
  /** The last head of each async track's slices, by track id; cleared past 4,096 tracks. */
  #asyncHeads = new Map<
    number,
    { name: string; category: string; pid: number; tid: number; begin: Uint8Array; end: Uint8Array }
  >();
  #sortedTids = 0;
  /** The process of each thread (by dense id) that said which. */
  #pids: number[] = [];

  /** Makes a writer that locks `output` and writes the trace to it. */
  constructor(output: WritableStream<Uint8Array>, options: CatapultWriterOptions = {}) {
    this.#writer = output.getWriter();
    this.#chunkSize = Math.max(1, options.chunkSize ?? 65536);
    this.#version = options.version ?? manifest.version;
    this.#buffer = this.#newBuffer();
    this.#text('{"traceEvents":[\n');
  }

  /** Writes the `process_name` metadata event, and `process_sort_index` when it has one. */
  process(process: ProcessInfo): void {
    this.#pid = process.pid;
    // Rendered sites hold the pid.
    this.#sites.clear();
    // No `tid`: a metadata event of the process as a whole.
    this.#event(
      `{"ph":"M","pid":${process.pid},"name":"process_name","args":{"name":${
        JSON.stringify(process.name)
      }}}`,
    );
    if (process.sortIndex !== undefined) {
      this.#event(
        `{"ph":"M","pid":${process.pid},"name":"process_sort_index","args":{"sort_index":${process.sortIndex}}}`,
      );
    }
  }

  /**
   * Writes `thread_name` (with `ident`, `native_id` and, for serial thread
   * ids, `serial`), and `thread_sort_index` once per thread.
   */
  thread(thread: ThreadInfo): void {
    const pid = thread.pid ?? this.#pid;
    if (thread.pid !== undefined) this.#pids[thread.tid] = pid;
    const head = `{"ph":"M","pid":${pid},"tid":${thread.tid},"name":`;
    this.#event(
      `${head}"thread_name","args":{"name":${
        JSON.stringify(thread.name)
      },"ident":${thread.ident},"native_id":${thread.nativeId}${
        thread.serial === undefined ? "" : `,"serial":${thread.serial}`
      }}}`,
    );
    if (thread.tid > this.#sortedTids) {
      // Dense ids grow by one per new thread; a rename repeats a smaller one.
      this.#sortedTids = thread.tid;
      this.#event(`${head}"thread_sort_index","args":{"sort_index":${thread.tid}}}`);
    }
  }

  /**
   * Writes one complete event (`ph:"X"`), with its flow if it has one.
   *
   * The arrows to and from other processes ({@linkcode Slice.childFlows},
   * {@linkcode Slice.parentFlow}) are v2 flows as well: Perfetto's trace
   * processor numbers v1 flows (`ph:"s"`, `"f"`) from 0 in the same space
   * as v2 ids, so that the two kinds in one trace join the wrong slices. A
   * slice carries one `bind_id`: an arrow that finds it taken (by the
   * slice's own flow, or another arrow) is carried by a slice of no length
   * at the slice's start, `spawn` (or `spawned`, in the child), nested in it.
   */
  slice(slice: Slice): void {
    if (slice.childFlows !== undefined || slice.parentFlow) {
      this.#sliceWithArrows(slice);
      return;
    }
    this.#write(slice, slice.flow, slice.flowIn, slice.flowOut);
  }

  /** A slice with arrows to or from other processes: the first free one binds to the slice. */
  #sliceWithArrows(slice: Slice): void {
    const arrows: [flow: number, out: boolean][] = [];
    if (slice.parentFlow) arrows.push([slice.parentFlow, false]);
    for (const flow of slice.childFlows ?? []) arrows.push([flow, true]);
    let { flow, flowIn, flowOut } = slice;
    if (flow === 0) {
      const [first, out] = arrows.shift()!;
      flow = first;
      flowIn = !out;
      flowOut = out;
    }
    this.#write(slice, flow, flowIn, flowOut);
    const pid = this.#pidOf(slice.tid);
    for (const [id, out] of arrows) {
      const name = out ? "spawn" : "spawned";
      this.#event(
        `{"ph":"X","name":"${name}","cat":"process","pid":${pid},"tid":${slice.tid},"ts":${
          Math.round(slice.start * 1000) / 1000
        },"dur":0,"bind_id":"0x${id.toString(16)}","flow_${out ? "out" : "in"}":true}`,
      );
    }
  }

  #write(slice: Slice, flow: number, flowIn: boolean, flowOut: boolean): void {
    const pid = this.#pidOf(slice.tid);
    let site = this.#sites.get(slice.site);
    // A site is rendered again for another process (a site's slices are
    // nearly always one process's: each frame-state machine has its own).
    if (site === undefined || site.pid !== pid) site = this.#render(slice.site, pid);
    const args = slice.args;
    const head = args === undefined ? site.head : this.#argsHead(site, args, pid);
    const out = this.#reserve(head.length + SLICE_BYTES);
    let at = this.#copyHead(out, head);
    at = writeInteger(out, at, slice.tid);
    at = writeTsKey(out, at);
    at = writeMicros(out, at, slice.start);
    at = writeDurKey(out, at);
    at = writeMicros(out, at, slice.duration);
    if (slice.threadStart !== undefined) {
      at = copy(out, at, TTS);
      at = writeMicros(out, at, slice.threadStart);
      at = copy(out, at, TDUR);
      at = writeMicros(out, at, slice.threadDuration ?? 0);
    }
    if (flow !== 0) {
      // Chromium writes v2 flow ids as hex strings; Perfetto reads them so.
      at = copy(out, at, BIND_ID);
      at = writeHex(out, at, flow);
      out[at++] = 0x22; // "
      if (flowIn) at = copy(out, at, FLOW_IN);
      if (flowOut) at = copy(out, at, FLOW_OUT);
    }
    out[at++] = 0x7d; // }
    this.#at = at;
    if (at >= this.#chunkSize) this.#flush();
  }

  /**
   * Writes an instant event (`ph:"i"`, on its thread's track) or a counter
   * event (`ph:"C"`, a track of the process per counter name).
   */
  mark(mark: Mark): void {
    // Nanosecond precision, as slices have it.
    const ts = Math.round(mark.ts * 1000) / 1000;
    const names = `"name":${JSON.stringify(mark.name)},"cat":${JSON.stringify(mark.category)}`;
    const args = JSON.stringify(mark.args);
    const pid = mark.pid ?? this.#pid;
    this.#event(
      mark.kind === "instant"
        ? `{"ph":"i","s":"t",${names},"args":${args},"pid":${pid},"tid":${mark.tid},"ts":${ts}}`
        : `{"ph":"C",${names},"args":${args},"pid":${pid},"ts":${ts}}`,
    );
  }

  /**
   * Writes a slice of an async track as a nestable async begin and end
   * (`ph:"b"` and `ph:"e"`, one `id` a track): Perfetto draws each task on
   * a track of its own, its steps nested in its life.
   */
  asyncSlice(slice: AsyncSlice): void {
    // A task's steps share their heads: rendered again only when they change.
    const pid = this.#pidOf(slice.tid);
    let heads = this.#asyncHeads.get(slice.id);
    if (
      heads === undefined || heads.name !== slice.name || heads.category !== slice.category ||
      heads.pid !== pid || heads.tid !== slice.tid
    ) {
      const head = `"cat":${JSON.stringify(slice.category)},"name":${
        JSON.stringify(slice.name)
      },"id":"0x${slice.id.toString(16)}","pid":${pid},"tid":${slice.tid},"ts":`;
      heads = {
        name: slice.name,
        category: slice.category,
        pid,
        tid: slice.tid,
        begin: encoder.encode(`${SEPARATOR}{"ph":"b",${head}`),
        end: encoder.encode(`${SEPARATOR}{"ph":"e",${head}`),
      };
      if (this.#asyncHeads.size >= 4096) this.#asyncHeads.clear();
      this.#asyncHeads.set(slice.id, heads);
    }
    const args = slice.args === undefined ? "" : `,"args":${JSON.stringify(slice.args)}`;
    this.#asyncEvent(heads.begin, slice.start, args);
    this.#asyncEvent(heads.end, slice.start + slice.duration, "");
  }

  /**
   * Copies an event's `head` to `out` where the next event goes, without
   * its separator if it is the first; returns the index after it.
   */
  #copyHead(out: Uint8Array, head: Uint8Array): number {
    if (this.#first) {
      this.#first = false;
      return copy(out, this.#at, head.subarray(SEPARATOR.length));
    }
    return copy(out, this.#at, head);
  }

  /** One event of an async slice: its head, its time, and `args` (text, or ""). */
  #asyncEvent(head: Uint8Array, us: number, args: string): void {
    const out = this.#reserve(head.length + SLICE_BYTES + args.length * 3);
    let at = this.#copyHead(out, head);
    at = writeMicros(out, at, us);
    if (args !== "") at += encoder.encodeInto(args, out.subarray(at)).written;
    out[at++] = 0x7d; // }
    this.#at = at;
    if (at >= this.#chunkSize) this.#flush();
  }

  /**
   * Writes an arrow as two slices of no length, one where it leaves and one
   * where it arrives, each nested in the slice that encloses its time on its
   * thread, joined by a v2 flow (`bind_id`, `flow_out` and `flow_in`): the
   * slices it joins were written before the arrow was known, and their own
   * `bind_id` may be taken by their frame's chain. (Perfetto links v1 flow
   * events, `ph:"s"` and `ph:"f"`, by their name rather than their id: many
   * arrows at once would be crossed.)
   */
  flowArrow(arrow: FlowArrow): void {
    const head = `{"ph":"X","name":${JSON.stringify(arrow.name)},"cat":${
      JSON.stringify(arrow.category)
    }`;
    const flow = `"bind_id":"0x${arrow.id.toString(16)}"`;
    const from = Math.round(arrow.fromTs * 1000) / 1000;
    const to = Math.round(arrow.toTs * 1000) / 1000;
    const fromPid = this.#pidOf(arrow.fromTid);
    const toPid = this.#pidOf(arrow.toTid);
    this.#event(
      `${head},"pid":${fromPid},"tid":${arrow.fromTid},"ts":${from},"dur":0,${flow},"flow_out":true}`,
    );
    this.#event(
      `${head},"pid":${toPid},"tid":${arrow.toTid},"ts":${to},"dur":0,${flow},"flow_in":true}`,
    );
  }

  /** Writes the end of the trace, with the summary in `otherData`. */
  finish(summary: TraceSummary): void {
    const otherData = {
      panopticon: this.#version,
      python: summary.pythonVersion,
      engine: summary.engine,
      protocol: summary.protocol,
      collector: summary.collector,
      clock: summary.clock,
      pid: summary.pid,
      complete: summary.complete,
      reason: summary.reason,
      events: summary.events,
      recorded: summary.recorded,
      dropped: summary.dropped,
      slices: summary.slices,
      unfinished: summary.unfinished,
      // Present only when known, or when a depth limit left slices out.
      omitted_slices: summary.omittedSlices || undefined,
      // When recording stopped at --max-events: when (µs) and after how many events.
      limited: summary.limited,
      python_max_rss: summary.pythonMaxRss,
      // Present when the stream showed exceptions (docs/protocol.md, "Exceptions and values").
      exceptions: summary.exceptions,
      swallowed_exceptions: summary.swallowedExceptions,
      // Every traced process, when the trace follows processes.
      processes: summary.processes,
    };
    this.#text(`\n],"displayTimeUnit":"ns","otherData":${JSON.stringify(otherData)}}\n`);
    this.#flush();
  }

  /**
   * Resolves when the output wants more (its queue is below its high-water
   * mark); rejects if the output failed.
   */
  ready(): Promise<void> {
    return this.#writer.ready;
  }

  /** Writes what is gathered and closes the output; rejects with the output's failure. */
  async close(): Promise<void> {
    this.#flush();
    try {
      await this.#writer.close();
    } catch (error) {
      // Closing an errored stream rejects with a generic TypeError; the
      // stream's own error, which `closed` carries, says what went wrong.
      await this.#writer.closed;
      throw error;
    }
  }

  /** Aborts the output, e.g. because the input was malformed. */
  async abort(reason?: unknown): Promise<void> {
    this.#at = 0;
    await this.#writer.abort(reason);
  }

  /** Writes one event given as text, after a separator. */
  #event(text: string): void {
    if (this.#first) this.#first = false;
    else this.#text(",\n");
    this.#text(text);
    if (this.#at >= this.#chunkSize) this.#flush();
  }

  /** Appends `text` as UTF-8. */
  #text(text: string): void {
    // UTF-8 needs at most 3 bytes per UTF-16 code unit.
    const out = this.#reserve(text.length * 3);
    this.#at += encoder.encodeInto(text, out.subarray(this.#at)).written;
  }

  /** The buffer, with room for `bytes` more at `#at`. */
  #reserve(bytes: number): Uint8Array {
    if (this.#at + bytes > this.#buffer.length) {
      // Only an event longer than the slack of a chunk gets here.
      const bigger = new Uint8Array(this.#at + bytes + this.#chunkSize);
      bigger.set(this.#buffer.subarray(0, this.#at));
      this.#buffer = bigger;
    }
    return this.#buffer;
  }

  #newBuffer(): Uint8Array {
    return new Uint8Array(this.#chunkSize + 4096);
  }

  #flush(): void {
    if (this.#at === 0) return;
    // The chunk is the output's now: it is never written to again.
    const chunk = this.#buffer.subarray(0, this.#at);
    this.#buffer = this.#newBuffer();
    this.#at = 0;
    // Not awaited: a failure also rejects `ready()` and `close()`, where it
    // is reported; this catch only keeps it from being unhandled here.
    this.#writer.write(chunk).catch(noop);
  }

  /** The process of thread `tid`: the one it was announced with, else the last announced. */
  #pidOf(tid: number): number {
    return this.#pids[tid] ?? this.#pid;
  }

  /** Renders a site, with the process of the slice that shows it. */
  #render(site: SliceSite, pid: number): RenderedSite {
    const names = `"name":${JSON.stringify(site.name)},"cat":${JSON.stringify(site.category)}`;
    let args = "";
    if (site.file !== undefined) args += `"file":${JSON.stringify(site.file)}`;
    if (site.line !== undefined) args += `${args === "" ? "" : ","}"line":${site.line}`;
    const rendered = { names, args, pid, head: this.#head(names, args, pid) };
    this.#sites.set(site, rendered);
    return rendered;
  }

  /** The bytes of a slice up to its `tid`, separator first. */
  /** The head of a slice of `site` with `args`, rendered once for each pair. */
  #argsHead(site: RenderedSite, args: SliceArgs, pid: number): Uint8Array {
    let heads = this.#argsHeads.get(args);
    let head = heads?.get(site);
    if (head === undefined) {
      head = this.#head(
        site.names,
        `${site.args}${site.args === "" ? "" : ","}${JSON.stringify(args).slice(1, -1)}`,
        pid,
      );
      if (heads === undefined) this.#argsHeads.set(args, heads = new Map());
      heads.set(site, head);
    }
    return head;
  }

  #head(names: string, args: string, pid: number): Uint8Array {
    return encoder.encode(
      `${SEPARATOR}{"ph":"X",${names}${args === "" ? "" : `,"args":{${args}}`},"pid":${pid},"tid":`,
    );
  }
}

/** Writes `n`, a positive integer, in lower-case hexadecimal; returns the index after. */
function writeHex(out: Uint8Array, at: number, n: number): number {
  let digits = 1;
  for (let limit = 16; limit <= n; limit *= 16) digits++;
  const end = at + digits;
  for (let i = end - 1; i >= at; i--) {
    const q = Math.floor(n / 16);
    out[i] = HEX[n - q * 16]!;
    n = q;
  }
  return end;
}
