/**
 * Native batches (protocol 4): the binary frame of a `batch` record, the
 * native collector's buffer as it wrote it, read event by event by a
 * {@linkcode BatchCursor}: the frame-state machine reads its frames so,
 * and {@linkcode decodeBatch} fills an {@linkcode EventBatch}.
 * `docs/protocol.md`, section `batch`, is the format.
 *
 * @module
 */

import {
  type BatchRecord,
  ExtOp,
  isKnownOp,
  MAX_EXT_OP,
  MAX_OP,
  Op,
  ProtocolError,
  type ProtocolEvent,
} from "./protocol.ts";
import { EVENT_FIELDS, EventBatch } from "./packed.ts";

/** The op of a thread switch: not an event, it changes the thread of those after it. */
export const THREAD_SWITCH = 13;
/** The op of a spawn (protocol 4): its token follows the `dt`. */
const SPAWN: number = Op.Spawn;
/**
 * The op of an extended event (`docs/protocol.md`, "Exceptions and
 * values"): the extended op minus 16 follows as a varint, then `dt`, a
 * `ref` and, with bit 4, a frame id (an object's key).
 */
export const EXTENDED = 15;
/** Op byte bit 4: a frame id follows the event's other fields. */
export const FRAME_ID = 0x10;
/** Op byte bit 5, only with bit 4: the frame id is 8 bytes, not 6. */
export const WIDE_FRAME_ID = 0x20;
/**
 * Op byte bit 6, ops 0 to 7 only (`--cpu-time`, `hello.thread_time`): the
 * thread's CPU time at the event follows the other fields, a varint of ns.
 */
export const THREAD_TIME = 0x40;

/** The names of the ops, for messages. */
const OP_NAMES = [
  "call",
  "resume",
  "return",
  "unwind",
  "suspend",
  "c_call",
  "c_return",
  "c_raise",
  "instant",
  "counter",
  "span_begin",
  "span_end",
  "stop",
  "thread",
  "spawn",
];

/** The names of the extended ops, for messages. */
const EXT_OP_NAMES: Record<number, string> = {
  15: "extended",
  16: "raise",
  17: "handled",
  18: "values",
};

/** The fewest bytes an event takes: its op byte and a one-byte `dt`. */
const MIN_EVENT_BYTES = 2;
/**
 * The most bytes an event takes: its op byte, a `dt`, two ids, an 8-byte
 * frame id and a thread time. Further than this from the end of the frame,
 * an event cannot be cut off.
 */
const MAX_EVENT_BYTES = 1 + 9 + 9 + 9 + 8 + 9;
const TWO_TO_63 = 2 ** 63;

/**
 * What each op byte announces, one entry per byte value: 0 for an op byte
 * that the format does not allow, else `VALID` and what follows the op
 * byte. One lookup both checks the byte and says how to read the event.
 */
const LAYOUT = new Uint8Array(256);
const VALID = 1;
/** A thread switch: a thread id, no `dt`. */
const SWITCH = 2;
/** A span id after the `dt`. */
const HAS_SPAN = 4;
/** A code, cfunc or mark id after the `dt` (and the span id). */
const HAS_REF = 8;
const FRAME_6 = 16;
const FRAME_8 = 32;
/** A thread time after everything else (op byte bit 6). */
const HAS_THREAD_TIME = 64;
LAYOUT[THREAD_SWITCH] = VALID | SWITCH;
// Extended events are read by the careful path (they are rare): LAYOUT
// leaves them 0.
for (const op of [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, SPAWN]) {
  // The token of a spawn is read as the others' ref.
  const fields =
    (op <= 1 || op === 5 || op === 8 || op === 9 || op === 10 || op === SPAWN ? HAS_REF : 0) |
    (op === 10 || op === 11 ? HAS_SPAN : 0);
  LAYOUT[op] = VALID | fields;
  if (op <= 7) LAYOUT[op | THREAD_TIME] = VALID | fields | HAS_THREAD_TIME;
  if (op <= 4) {
    LAYOUT[op | FRAME_ID] = VALID | fields | FRAME_6;
    LAYOUT[op | FRAME_ID | WIDE_FRAME_ID] = VALID | fields | FRAME_8;
    LAYOUT[op | FRAME_ID | THREAD_TIME] = VALID | fields | FRAME_6 | HAS_THREAD_TIME;
    LAYOUT[op | FRAME_ID | WIDE_FRAME_ID | THREAD_TIME] = VALID | fields | FRAME_8 |
      HAS_THREAD_TIME;
  }
}

/** Where the varint that {@linkcode varintAt} read last ends. */
let varintEnd = 0;

/**
 * The varint at `at`, where at least 9 bytes remain, or -1 for one longer
 * than 9 bytes; {@linkcode varintEnd} says where it ends. Exact up to
 * 2^53, rounded above. One and two bytes (dt, ids) are nearly every varint.
 *
 * The longer ones are read here too, not in a function of their own: V8
 * gives a function its type feedback only once it has been called a few
 * times, and one that the hot loop inlines never is, so the optimised loop
 * would bail out at its first long varint in most frames (measured: 193
 * deoptimisations in 2 million events).
 */
function varintAt(bytes: Uint8Array, at: number): number {
  const first = bytes[at]!;
  if (first < 0x80) {
    varintEnd = at + 1;
    return first;
  }
  const second = bytes[at + 1]!;
  if (second < 0x80) {
    varintEnd = at + 2;
    return (first & 0x7f) | second << 7;
  }
  let value = (first & 0x7f) | (second & 0x7f) << 7;
  let scale = 0x4000;
  for (let next = at + 2, end = at + 9; next < end; next++, scale *= 0x80) {
    const byte = bytes[next]!;
    value += (byte & 0x7f) * scale;
    if (byte < 0x80) {
      varintEnd = next + 1;
      return value;
    }
  }
  return -1;
}

/** A little-endian frame id of 6 or 8 bytes at `at`: two halves of at most 32 bits each, exact. */
function frameIdAt(bytes: Uint8Array, at: number, width: number): number {
  const low = (bytes[at]! | bytes[at + 1]! << 8 | bytes[at + 2]! << 16) + bytes[at + 3]! * 2 ** 24;
  let high = bytes[at + 4]! | bytes[at + 5]! << 8;
  if (width === 8) high += bytes[at + 6]! * 2 ** 16 + bytes[at + 7]! * 2 ** 24;
  // Rounded only above 2^53: an address that high is rare, and the protocol allows it.
  return low + high * 2 ** 32;
}

/**
 * Reads one event of a frame, or one thread switch, checking every byte
 * and explaining what is wrong, with the line and the byte: the path of
 * {@linkcode BatchCursor} for the end of a frame and for anything odd.
 */
class Reader {
  at = 0;
  /** What the last {@linkcode Reader.read} found. */
  op = 0;
  thread = 0;
  ts = 0;
  id = 0;
  ref = 0;
  threadTime = -1;
  /** The 1-based number of the event being read, and where it starts, for messages. */
  #event = 0;
  #start = 0;

  constructor(readonly bytes: Uint8Array, readonly line: number) {}

  /**
   * Reads event `event` of `count` (or the thread switch before it) at
   * `at`, whose time is `ts` plus its `dt`; returns whether it was an event.
   */
  read(event: number, count: number, ts: number): boolean {
    const bytes = this.bytes;
    const start = this.#start = this.at;
    this.#event = event;
    if (event > count) {
      throw new ProtocolError(
        this.line,
        `${bytes.length - start} bytes follow the last of the ${count} events the record announces`,
        { byte: start },
      );
    }
    const byte = bytes[this.at++]!;
    const op = this.op = byte & 0x0f;
    if (byte > 0x7f) this.fail(`its op byte 0x${hex(byte)} has bit 7 set`);
    if ((byte & THREAD_TIME) && op > 7) {
      this.fail(`its op byte 0x${hex(byte)} announces a thread time, which only ops 0 to 7 carry`);
    }
    // Ops 0 to 14 and the extended escape (15) use every value of the low four bits.
    if (op === EXTENDED) return this.readExtended(byte, ts);
    if (byte & (FRAME_ID | WIDE_FRAME_ID)) {
      if (op > 4) {
        this.fail(`its op byte 0x${hex(byte)} announces a frame id, which only ops 0 to 4 carry`);
      }
      if (!(byte & FRAME_ID)) {
        this.fail(`its op byte 0x${hex(byte)} has bit 5 (an 8-byte frame id) without bit 4`);
      }
    }
    if (op === THREAD_SWITCH) {
      this.thread = this.varint("thread id");
      return false;
    }
    this.ts = ts + this.varint("dt");
    if (this.ts >= TWO_TO_63) this.fail("its time passes 2^63 ns");
    const layout = LAYOUT[byte]!;
    const field = op === 0 || op === 1
      ? "code id"
      : op === 5
      ? "cfunc id"
      : op === SPAWN
      ? "token"
      : "mark id";
    this.id = layout & HAS_SPAN ? this.varint("span id") : 0;
    this.ref = layout & HAS_REF ? this.varint(field) : 0;
    if (layout & (FRAME_6 | FRAME_8)) this.id = this.frameId(layout & FRAME_8 ? 8 : 6);
    this.threadTime = layout & HAS_THREAD_TIME ? this.varint("thread time") : -1;
    return true;
  }

  /** The rest of an extended event (op 15) whose op byte was `byte`. */
  readExtended(byte: number, ts: number): boolean {
    if ((byte & WIDE_FRAME_ID) && !(byte & FRAME_ID)) {
      this.fail(`its op byte 0x${hex(byte)} has bit 5 (an 8-byte frame id) without bit 4`);
    }
    const op = this.varint("extended op") + 16;
    if (!isKnownOp(op) || op <= MAX_OP) {
      this.fail(`unknown extended op ${op}: expected ${ExtOp.Raise} to ${MAX_EXT_OP}`);
    }
    this.op = op;
    this.ts = ts + this.varint("dt");
    if (this.ts >= TWO_TO_63) this.fail("its time passes 2^63 ns");
    this.ref = this.varint("ref");
    this.id = byte & FRAME_ID ? this.frameId(byte & WIDE_FRAME_ID ? 8 : 6) : 0;
    this.threadTime = -1;
    return true;
  }

  /** An unsigned LEB128 varint of at most 9 bytes (so below 2^63). */
  varint(field: string): number {
    const bytes = this.bytes;
    let value = 0;
    let scale = 1;
    for (let length = 1;; length++, scale *= 0x80) {
      if (this.at >= bytes.length) this.fail(`its ${field} is cut off by the end of the frame`);
      if (length > 9) this.fail(`its ${field} is a varint longer than 9 bytes`);
      const byte = bytes[this.at++]!;
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) return value;
    }
  }

  frameId(width: number): number {
    const at = this.at;
    if (at + width > this.bytes.length) {
      this.fail(`its ${width}-byte frame id is cut off by the end of the frame`);
    }
    if (width === 8 && this.bytes[at + 7]! >= 0x80) {
      this.fail("its 8-byte frame id is not below 2^63");
    }
    this.at += width;
    return frameIdAt(this.bytes, at, width);
  }

  /** Fails on the current event, naming the byte it starts at. */
  fail(detail: string): never {
    // A thread switch is not an event: it is named by the event it precedes.
    const what = this.op === THREAD_SWITCH
      ? `the thread switch before event ${this.#event}`
      : `event ${this.#event} (${OP_NAMES[this.op] ?? EXT_OP_NAMES[this.op] ?? `op ${this.op}`})`;
    throw new ProtocolError(this.line, `${what}: ${detail}`, { byte: this.#start });
  }
}

/**
 * Reads the events of a batch frame one at a time, following the thread
 * switches between them: the decoder of the format. The frame-state
 * machine reads a frame through one straight into its stacks, and
 * {@linkcode decodeBatch} into an {@linkcode EventBatch}.
 *
 * Two paths read an event. The fast one takes an event far enough from the
 * end of the frame that it cannot be cut off: one table lookup checks its
 * op byte, and varints of one or two bytes are read inline. The careful
 * one, a {@linkcode Reader}, takes the last bytes of the frame and any
 * event that the fast one finds odd, which it explains.
 *
 * `new BatchCursor(frame, record, line)`, then `while (cursor.next())`
 * read `op`, `thread`, `ts`, `id` and `ref`.
 */
export class BatchCursor {
  /** The op of the event just read, 0 to 12 or 14, or an extended op (16 and up). */
  op = 0;
  /** Its thread. */
  thread: number;
  /** Its time, in ns. */
  ts: number;
  /** Its frame id (ops 0 to 4) or span id (ops 10 and 11), else 0. */
  id = 0;
  /** Its code, cfunc or mark id, or a spawn's token; else 0. */
  ref = 0;
  /**
   * Its thread's CPU time in ns (op byte bit 6, `--cpu-time`), or -1 for an
   * event without one.
   */
  threadTime = -1;
  /** How many events have been read. */
  events = 0;
  readonly #frame: Uint8Array;
  readonly #count: number;
  readonly #line: number;
  readonly #fastEnd: number;
  #at = 0;
  #reader: Reader | undefined;

  /**
   * Starts on `frame`, the binary frame of `record`, from line `line`.
   *
   * @throws {ProtocolError} if the record announces more events than the
   * frame can hold (checked before anything is allocated for them).
   */
  constructor(frame: Uint8Array, record: BatchRecord, line: number) {
    this.#frame = frame;
    this.#count = record.events;
    this.#line = line;
    this.thread = record.thread;
    this.ts = record.ts;
    this.#fastEnd = frame.length - MAX_EVENT_BYTES;
    if (record.events > frame.length / MIN_EVENT_BYTES) {
      throw new ProtocolError(
        line,
        `the record announces ${record.events} events, more than its frame of ${frame.length} ` +
          "bytes can hold",
        { byte: 0 },
      );
    }
  }

  /**
   * Reads the next event into the fields; returns false at the end of the
   * frame.
   *
   * @throws {ProtocolError} naming the line and the byte, where the frame
   * breaks the format, or at its end if it holds another number of events
   * than its record announces.
   */
  next(): boolean {
    const frame = this.#frame;
    while (this.#at < frame.length) {
      fast: {
        const at = this.#at;
        if (at > this.#fastEnd || this.events === this.#count) break fast;
        const byte = frame[at]!;
        const layout = LAYOUT[byte]!;
        if (layout === 0) break fast;
        const value = varintAt(frame, at + 1);
        if (value < 0) break fast;
        let next = varintEnd;
        if (layout & SWITCH) {
          this.thread = value;
          this.#at = next;
          continue;
        }
        const ts = this.ts + value;
        if (ts >= TWO_TO_63) break fast;
        let id = 0;
        let ref = 0;
        if (layout & HAS_SPAN) {
          if ((id = varintAt(frame, next)) < 0) break fast;
          next = varintEnd;
        }
        if (layout & HAS_REF) {
          if ((ref = varintAt(frame, next)) < 0) break fast;
          next = varintEnd;
        }
        if (layout & FRAME_6) {
          id = frameIdAt(frame, next, 6);
          next += 6;
        } else if (layout & FRAME_8) {
          if (frame[next + 7]! >= 0x80) break fast;
          id = frameIdAt(frame, next, 8);
          next += 8;
        }
        let threadTime = -1;
        if (layout & HAS_THREAD_TIME) {
          if ((threadTime = varintAt(frame, next)) < 0) break fast;
          next = varintEnd;
        }
        this.threadTime = threadTime;
        this.op = byte & 0x0f;
        this.ts = ts;
        this.id = id;
        this.ref = ref;
        this.events++;
        this.#at = next;
        return true;
      }
      if (this.#careful()) return true;
    }
    if (this.events !== this.#count) {
      throw new ProtocolError(
        this.#line,
        `the frame holds ${this.events} events, but the record announces ${this.#count}`,
        { byte: frame.length },
      );
    }
    return false;
  }

  /** Reads one event or thread switch through the careful path; returns whether it was an event. */
  #careful(): boolean {
    const reader = this.#reader ??= new Reader(this.#frame, this.#line);
    reader.at = this.#at;
    const event = reader.read(this.events + 1, this.#count, this.ts);
    this.#at = reader.at;
    if (!event) {
      this.thread = reader.thread;
      return false;
    }
    this.op = reader.op;
    this.ts = reader.ts;
    this.id = reader.id;
    this.ref = reader.ref;
    this.threadTime = reader.threadTime;
    this.events++;
    return true;
  }
}

/**
 * Decodes `frame`, the binary frame of `record`, into `batch` (five numbers
 * an event, as `[op, thread, ts, frame, ref]`, with a span's id in `frame`
 * as the JSON events have it, and each event's thread time, or -1, in
 * `threadTimes`); returns the number of events. Throws a
 * {@linkcode ProtocolError} that names `line` and the byte for a frame that
 * breaks the format in any way the protocol lists.
 */
export function decodeBatch(
  frame: Uint8Array,
  record: BatchRecord,
  line: number,
  batch: EventBatch,
): number {
  const cursor = new BatchCursor(frame, record, line);
  const values = batch.reserve(record.events);
  const threadTimes = batch.threadTimes;
  for (let out = 0, event = 0; cursor.next(); out += EVENT_FIELDS, event++) {
    values[out] = cursor.op;
    values[out + 1] = cursor.thread;
    values[out + 2] = cursor.ts;
    values[out + 3] = cursor.id;
    values[out + 4] = cursor.ref;
    threadTimes[event] = cursor.threadTime;
  }
  return cursor.events;
}

function hex(byte: number): string {
  return byte.toString(16).padStart(2, "0");
}

/**
 * Decodes the binary frame of a `batch` record into events: a convenience
 * for tools and tests. A span's id is the `frame` of its events, as in
 * JSON events. The converter itself decodes into a reused batch instead,
 * without an array per event.
 *
 * Throws a {@linkcode ProtocolError} naming `line` and the byte where the
 * frame breaks the format (`docs/protocol.md`, section `batch`), or when
 * the record carries no frame.
 *
 * @example Decoding the protocol's example of a batch
 * ```ts
 * import { unpackBatch } from "@panopticon/panopticon";
 * import assert from "node:assert/strict";
 *
 * const payload = Uint8Array.of(
 *   0x00, 0xfa, 0x01, 0x03, // call, dt 250, code 3
 *   0x02, 0x28, // return, dt 40
 *   0x0d, 0x02, // thread 2
 *   0x11, 0xe8, 0x07, 0x05, 0x30, 0x12, 0xc0, 0x00, 0x3a, 0x7f, // resume, 6-byte frame id
 * );
 * const record = { kind: "batch", bytes: 18, events: 3, ts: 1000, thread: 1, payload } as const;
 * assert.deepEqual(unpackBatch(record), [
 *   [0, 1, 1250, 0, 3],
 *   [2, 1, 1290, 0, 0],
 *   [1, 2, 2290, 0x7f3a00c01230, 5],
 * ]);
 * ```
 */
export function unpackBatch(record: BatchRecord, line = 1): ProtocolEvent[] {
  if (record.payload === undefined) {
    throw new ProtocolError(line, 'a "batch" record came without its binary frame ("payload")');
  }
  const batch = new EventBatch();
  const count = decodeBatch(record.payload, record, line, batch);
  return batch.toEvents(count);
}
