/**
 * Writing native batches (protocol 4, `docs/protocol.md`, section `batch`)
 * as the C collector does: the TypeScript twin of its encoder, for tests,
 * the shared fixture (`fixtures/make_native.ts`) and the converter
 * benchmark.
 *
 * The format leaves the writer no choice, and this encoder takes none, so
 * that the C encoder can be checked byte for byte against its fixture:
 *
 * - a thread switch (op 13) is written exactly when an event's thread
 *   differs from the one before it (the record's `thread` for the first);
 * - a frame id is written exactly when it is not 0, in 6 bytes below 2^48
 *   and in 8 bytes (bit 5) from 2^48 on;
 * - every varint is as short as it can be;
 * - `dt` is the event's time minus the previous event's (the record's
 *   `ts` for the first).
 */

import type { ProtocolEvent } from "../mod.ts";

/**
 * One event as the native collector records it: `[op, thread, ts, frame,
 * ref, span]`, `ts` absolute (ns), `frame` 0 for a plain function or a C
 * event, `ref` the code, cfunc or mark id (0 where the op carries none),
 * `span` the span id of `span_begin` and `span_end` (0 for other ops);
 * with `--cpu-time`, ops 0 to 7 add `threadTime`, the thread's CPU time
 * (ns), written last with bit 6 of the op byte.
 */
export type NativeEvent =
  | readonly [op: number, thread: number, ts: number, frame: number, ref: number, span: number]
  | readonly [
    op: number,
    thread: number,
    ts: number,
    frame: number,
    ref: number,
    span: number,
    threadTime: number,
  ];

/** The op of a thread switch. */
const THREAD_SWITCH = 13;
const FRAME_ID = 0x10;
const WIDE_FRAME_ID = 0x20;
const THREAD_TIME = 0x40;
/** The longest event: switch (1 + 9), op (1), dt, two ids (9 each), frame id (8), thread time (9). */
const MAX_EVENT = 55;
const TWO_TO_48 = 2 ** 48;

/** Which of `ref` and `span` each op 0 to 12 and 14 writes, after its `dt` (13 is not an event). */
const CARRIES: readonly ({ ref: boolean; span: boolean; frame: boolean } | undefined)[] = [
  { ref: true, span: false, frame: true }, // call
  { ref: true, span: false, frame: true }, // resume
  { ref: false, span: false, frame: true }, // return
  { ref: false, span: false, frame: true }, // unwind
  { ref: false, span: false, frame: true }, // suspend
  { ref: true, span: false, frame: false }, // c_call
  { ref: false, span: false, frame: false }, // c_return
  { ref: false, span: false, frame: false }, // c_raise
  { ref: true, span: false, frame: false }, // instant
  { ref: true, span: false, frame: false }, // counter
  { ref: true, span: true, frame: false }, // span_begin: span id, then mark id
  { ref: false, span: true, frame: false }, // span_end
  { ref: false, span: false, frame: false }, // stop
  undefined, // a thread switch
  { ref: true, span: false, frame: false }, // spawn: the token
] as const;

/** The `batch` record of a frame, as its line holds it. */
export interface NativeBatchRecord {
  kind: "batch";
  bytes: number;
  events: number;
  ts: number;
  thread: number;
}

/**
 * An incremental batch writer, as the native collector fills its buffer:
 * {@linkcode BatchWriter.add} appends one event, or says that the buffer
 * is full; {@linkcode BatchWriter.take} hands out the frame and its record
 * and starts the next frame from the last event's time and thread.
 */
export class BatchWriter {
  readonly #out: Uint8Array;
  #at = 0;
  #events = 0;
  #startTs: number;
  #startThread: number;
  #ts: number;
  #thread: number;

  /** A writer of frames of at most `capacity` bytes, the first counting from `ts` on `thread`. */
  constructor(ts: number, thread: number, capacity = 65536) {
    this.#out = new Uint8Array(capacity);
    this.#startTs = this.#ts = ts;
    this.#startThread = this.#thread = thread;
  }

  /** How many events the current frame holds. */
  get events(): number {
    return this.#events;
  }

  /**
   * Appends `event` to the frame; returns false, writing nothing, if it
   * does not fit (then {@linkcode take} the frame and add it again).
   * Throws for an event the format cannot carry: a time that goes back,
   * or a field that its op does not carry set to anything but 0.
   */
  add(event: NativeEvent): boolean {
    const [op, thread, ts, frame, ref, span] = event;
    const threadTime = event[6];
    const carries = CARRIES[op];
    if (carries === undefined || !Number.isInteger(op)) throw new RangeError(`op ${op}`);
    if (threadTime !== undefined && op > 7) {
      throw new RangeError(`op ${op} carries no thread time: ${event}`);
    }
    if ((frame !== 0 && !carries.frame) || (ref !== 0 && !carries.ref)) {
      throw new RangeError(`op ${op} carries no ${frame !== 0 ? "frame" : "ref"}: ${event}`);
    }
    if (span !== 0 && !carries.span) throw new RangeError(`op ${op} carries no span: ${event}`);
    const dt = difference(ts, this.#ts);
    const start = this.#at;
    let at = start;
    const out = this.#out;
    if (at + MAX_EVENT > out.length && !this.#fits(event, dt)) return false;
    if (thread !== this.#thread) {
      out[at++] = THREAD_SWITCH;
      at = writeVarint(out, at, thread);
    }
    out[at++] = op | (frame === 0 ? 0 : frame < TWO_TO_48 ? FRAME_ID : FRAME_ID | WIDE_FRAME_ID) |
      (threadTime === undefined ? 0 : THREAD_TIME);
    at = writeVarint(out, at, dt);
    if (carries.span) at = writeVarint(out, at, span);
    if (carries.ref) at = writeVarint(out, at, ref);
    if (frame !== 0) at = writeFrameId(out, at, frame);
    if (threadTime !== undefined) at = writeVarint(out, at, threadTime);
    this.#at = at;
    this.#thread = thread;
    this.#ts = ts;
    this.#events++;
    return true;
  }

  /**
   * The frame so far and its record; the next frame's `ts` and `thread`
   * are those of the last event (the frame's own when it is empty).
   */
  take(): { record: NativeBatchRecord; frame: Uint8Array } {
    const record: NativeBatchRecord = {
      kind: "batch",
      bytes: this.#at,
      events: this.#events,
      ts: this.#startTs,
      thread: this.#startThread,
    };
    const frame = this.#out.slice(0, this.#at);
    this.#at = 0;
    this.#events = 0;
    this.#startTs = this.#ts;
    this.#startThread = this.#thread;
    return { record, frame };
  }

  /** Whether `event` fits in what is left, measured by writing it to scratch. */
  #fits(event: NativeEvent, dt: number): boolean {
    const [op, thread, , frame, ref, span] = event;
    const carries = CARRIES[op]!;
    const scratch = new Uint8Array(MAX_EVENT);
    let at = 0;
    if (thread !== this.#thread) at = writeVarint(scratch, at + 1, thread);
    at = writeVarint(scratch, at + 1, dt);
    if (carries.span) at = writeVarint(scratch, at, span);
    if (carries.ref) at = writeVarint(scratch, at, ref);
    if (frame !== 0) at += frame < TWO_TO_48 ? 6 : 8;
    if (event[6] !== undefined) at = writeVarint(scratch, at, event[6]);
    return this.#at + at <= this.#out.length;
  }
}

/**
 * The frame of `events`, counting from `ts` on `thread`, and its record:
 * what the native collector writes for them in one buffer.
 */
export function encodeBatch(
  events: readonly NativeEvent[],
  ts: number,
  thread: number,
): { record: NativeBatchRecord; frame: Uint8Array } {
  const writer = new BatchWriter(ts, thread, MAX_EVENT * events.length);
  for (const event of events) writer.add(event);
  return writer.take();
}

/** The line of a `batch` record, without its newline, fields in the collector's order. */
export function batchLine(record: NativeBatchRecord): string {
  return `{"kind":"batch","bytes":${record.bytes},"events":${record.events},"ts":${
    exact(record.ts)
  },"thread":${exact(record.thread)}}`;
}

/**
 * The decimal digits of an integer, exactly: `String()` gives the shortest
 * digits that read back as the same double, which above 2^53 need not be
 * the integer itself (2^56 + 16 * k prints as …250 for …248), and another
 * reader, Python's `json`, would take them literally.
 */
export function exact(value: number): string {
  return Number.isSafeInteger(value) ? String(value) : BigInt(value).toString();
}

/** `JSON.stringify(value)`, with every integer written exactly (see {@linkcode exact}). */
export function exactJson(value: unknown): string {
  return JSON.stringify(
    value,
    (_key, item) =>
      typeof item === "number" && Number.isInteger(item) && !Number.isSafeInteger(item)
        ? `\u0000${BigInt(item)}`
        : item,
  ).replace(/"\\u0000(-?\d+)"/g, "$1");
}

/** The stream bytes of a batch: its line, a newline, then its frame. */
export function batchBytes(batch: { record: NativeBatchRecord; frame: Uint8Array }): Uint8Array {
  const line = new TextEncoder().encode(batchLine(batch.record) + "\n");
  const bytes = new Uint8Array(line.length + batch.frame.length);
  bytes.set(line);
  bytes.set(batch.frame, line.length);
  return bytes;
}

/**
 * A JSON event `[op, thread, ts, frame, ref]` as the native collector
 * records it. What the batch format does not carry (a code id on a
 * return, a frame id on an instant) becomes 0: the converter ignores it.
 */
export function nativeEvent(event: ProtocolEvent): NativeEvent {
  const [op, thread, ts, frame, ref] = event;
  const carries = CARRIES[op]!;
  // Spans: JSON events carry the span id as the frame.
  if (op === 10 || op === 11) return [op, thread, ts, 0, carries.ref ? ref : 0, frame];
  const base = [op, thread, ts, carries.frame ? frame : 0, carries.ref ? ref : 0, 0] as const;
  return event.length === 6 ? [...base, event[5]] : base;
}

/** The JSON event `[op, thread, ts, frame, ref]` of a native event. */
export function protocolEvent(event: NativeEvent): ProtocolEvent {
  const [op, thread, ts, frame, ref, span] = event;
  const base = [
    op as ProtocolEvent[0],
    thread,
    ts,
    op === 10 || op === 11 ? span : frame,
    ref,
  ] as const;
  return event.length === 7 ? [...base, event[6]] : base;
}

/**
 * `ts - previous`, exactly: above 2^53 both are checked to be exact doubles
 * and their difference too, so that a fixture never holds a time that
 * Python and JavaScript read differently.
 */
function difference(ts: number, previous: number): number {
  if (!Number.isInteger(ts) || ts < 0 || ts >= 2 ** 63) throw new RangeError(`ts ${ts}`);
  let dt = ts - previous;
  if (!Number.isSafeInteger(ts) || !Number.isSafeInteger(previous)) {
    const exact = BigInt(ts) - BigInt(previous);
    dt = Number(exact);
    if (BigInt(dt) !== exact) throw new RangeError(`${ts} - ${previous} is not exact`);
  }
  if (dt < 0) throw new RangeError(`time goes back: ${ts} after ${previous}`);
  return dt;
}

/** Writes `value`, an integer of 0 to 2^63 - 1, as a minimal unsigned LEB128 varint. */
export function writeVarint(out: Uint8Array, at: number, value: number): number {
  if (!Number.isInteger(value) || value < 0 || value >= 2 ** 63) {
    throw new RangeError(`cannot write ${value} as a varint`);
  }
  // Division by 128 and the remainder are exact on doubles, even above 2^53.
  while (value >= 0x80) {
    out[at++] = (value % 0x80) | 0x80;
    value = Math.floor(value / 0x80);
  }
  out[at++] = value;
  return at;
}

/** Writes a frame id, little-endian, in 6 bytes below 2^48 and in 8 from there on. */
function writeFrameId(out: Uint8Array, at: number, frame: number): number {
  if (!Number.isInteger(frame) || frame < 0 || frame >= 2 ** 63) {
    throw new RangeError(`frame id ${frame}`);
  }
  const width = frame < TWO_TO_48 ? 6 : 8;
  for (let i = 0; i < width; i++) {
    out[at++] = frame % 256;
    frame = Math.floor(frame / 256);
  }
  return at;
}
