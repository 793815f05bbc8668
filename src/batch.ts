/**
 * Native batches (protocol 4): the binary frame of a `batch` record, the
 * native collector's buffer as it wrote it, decoded into an
 * {@linkcode EventBatch}. `docs/protocol.md`, section `batch`, is the
 * format.
 *
 * @module
 */

import { type BatchRecord, ProtocolError, type ProtocolEvent } from "./protocol.ts";
import { EVENT_FIELDS, EventBatch } from "./packed.ts";

/** The op of a thread switch: not an event, it changes the thread of those after it. */
export const THREAD_SWITCH = 13;
/** Op byte bit 4: a frame id follows the event's other fields. */
export const FRAME_ID = 0x10;
/** Op byte bit 5, only with bit 4: the frame id is 8 bytes, not 6. */
export const WIDE_FRAME_ID = 0x20;

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
];

/** The fewest bytes an event takes: its op byte and a one-byte `dt`. */
const MIN_EVENT_BYTES = 2;
const TWO_TO_63 = 2 ** 63;

/**
 * Reads a frame: its bytes, where it is, and how to fail naming the line
 * and the byte. One per frame (a frame is tens of thousands of events).
 */
class Reader {
  constructor(readonly bytes: Uint8Array, readonly line: number) {}
  at = 0;
  /** The 1-based number of the event being read, and where it starts, for messages. */
  event = 0;
  start = 0;

  /**
   * An unsigned LEB128 varint of at most 9 bytes (so below 2^63). Above
   * 2^53 the sum is rounded to the nearest double, as the protocol allows;
   * below, every step is exact.
   */
  varint(field: string): number {
    const bytes = this.bytes;
    let at = this.at;
    if (at >= bytes.length) this.cutOff(field);
    let byte = bytes[at++]!;
    if (byte < 0x80) {
      this.at = at;
      return byte;
    }
    let value = byte & 0x7f;
    let scale = 0x80;
    for (let length = 2;; length++) {
      if (at >= bytes.length) this.cutOff(field);
      if (length > 9) this.fail(`its ${field} is a varint longer than 9 bytes`);
      byte = bytes[at++]!;
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) break;
      scale *= 0x80;
    }
    this.at = at;
    return value;
  }

  /** A little-endian frame id of 6 or 8 bytes. */
  frameId(wide: boolean): number {
    const bytes = this.bytes;
    const at = this.at;
    const width = wide ? 8 : 6;
    if (at + width > bytes.length) this.cutOff(`${width}-byte frame id`);
    // Two halves of at most 32 bits each, exact; their sum is rounded only
    // above 2^53 (an address that high is rare, and the protocol allows it).
    const low = (bytes[at]! | bytes[at + 1]! << 8 | bytes[at + 2]! << 16) +
      bytes[at + 3]! * 2 ** 24;
    let high = bytes[at + 4]! | bytes[at + 5]! << 8;
    if (wide) {
      if (bytes[at + 7]! >= 0x80) this.fail("its 8-byte frame id is not below 2^63");
      high += bytes[at + 6]! * 2 ** 16 + bytes[at + 7]! * 2 ** 24;
    }
    this.at = at + width;
    return low + high * 2 ** 32;
  }

  cutOff(field: string): never {
    return this.fail(`its ${field} is cut off by the end of the frame`);
  }

  /** Fails on the current event, naming the byte it starts at. */
  fail(detail: string): never {
    const op = this.bytes[this.start]! & 0x0f;
    // A thread switch is not an event: it is named by the event it precedes.
    const what = op === THREAD_SWITCH
      ? `the thread switch before event ${this.event}`
      : `event ${this.event} (${OP_NAMES[op] ?? `op ${op}`})`;
    throw new ProtocolError(this.line, `${what}: ${detail}`, { byte: this.start });
  }
}

/**
 * Decodes `frame`, the binary frame of `record`, into `batch` (five numbers
 * an event, as `[op, thread, ts, frame, ref]`, with a span's id in `frame`
 * as the JSON events have it); returns the number of events. Throws a
 * {@linkcode ProtocolError} that names `line` and the byte for a frame that
 * breaks the format in any way the protocol lists.
 */
export function decodeBatch(
  frame: Uint8Array,
  record: BatchRecord,
  line: number,
  batch: EventBatch,
): number {
  const count = record.events;
  const reader = new Reader(frame, line);
  // Checked before anything is allocated for `count` events.
  if (count > frame.length / MIN_EVENT_BYTES) {
    throw new ProtocolError(
      line,
      `the record announces ${count} events, more than its frame of ${frame.length} bytes can hold`,
      { byte: 0 },
    );
  }
  const values = batch.reserve(count);
  let thread = record.thread;
  let ts = record.ts;
  let out = 0;
  let events = 0;
  const end = frame.length;
  while (reader.at < end) {
    const start = reader.at;
    const byte = frame[start]!;
    const op = byte & 0x0f;
    reader.start = start;
    reader.event = events + 1;
    if (events === count) {
      throw new ProtocolError(
        line,
        `${end - start} bytes follow the last of the ${count} events the record announces`,
        { byte: start },
      );
    }
    reader.at = start + 1;
    if (byte > 0x3f) reader.fail(`its op byte 0x${hex(byte)} has bit 6 or 7 set`);
    if (op > THREAD_SWITCH) {
      reader.fail(`unknown op ${op} (op byte 0x${hex(byte)}): expected 0 to 13`);
    }
    if (byte & (FRAME_ID | WIDE_FRAME_ID)) {
      if (op > 4) {
        reader.fail(`its op byte 0x${hex(byte)} announces a frame id, which only ops 0 to 4 carry`);
      }
      if (!(byte & FRAME_ID)) {
        reader.fail(`its op byte 0x${hex(byte)} has bit 5 (an 8-byte frame id) without bit 4`);
      }
    }
    if (op === THREAD_SWITCH) {
      thread = reader.varint("thread id");
      continue;
    }
    ts += reader.varint("dt");
    if (ts >= TWO_TO_63) reader.fail("its time passes 2^63 ns");
    let id = 0;
    let ref = 0;
    switch (op) {
      case 0:
      case 1:
        ref = reader.varint("code id");
        break;
      case 5:
        ref = reader.varint("cfunc id");
        break;
      case 8:
      case 9:
        ref = reader.varint("mark id");
        break;
      case 10:
        id = reader.varint("span id");
        ref = reader.varint("mark id");
        break;
      case 11:
        id = reader.varint("span id");
        break;
    }
    if (byte & FRAME_ID) id = reader.frameId((byte & WIDE_FRAME_ID) !== 0);
    values[out] = op;
    values[out + 1] = thread;
    values[out + 2] = ts;
    values[out + 3] = id;
    values[out + 4] = ref;
    out += EVENT_FIELDS;
    events++;
  }
  if (events !== count) {
    throw new ProtocolError(
      line,
      `the frame holds ${events} events, but the record announces ${count}`,
      { byte: end },
    );
  }
  return events;
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
  const values = batch.values;
  const events: ProtocolEvent[] = [];
  for (let at = 0; at < count * EVENT_FIELDS; at += EVENT_FIELDS) {
    events.push([
      values[at] as ProtocolEvent[0],
      values[at + 1]!,
      values[at + 2]!,
      values[at + 3]!,
      values[at + 4]!,
    ]);
  }
  return events;
}
