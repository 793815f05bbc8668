/**
 * Packed event batches (protocol version 2): the base64 of CPython's
 * `marshal.dumps(events, 2)`, decoded into a flat table of numbers.
 *
 * The collector packs a batch with marshal because that costs it a seventh
 * of `json.dumps`; here the batch is a loop over bytes. Nothing is
 * allocated per event: the bytes and the decoded numbers live in buffers
 * that are reused from one batch to the next.
 *
 * @module
 */

import { isKnownOp, KNOWN_OP_RANGE, ProtocolError, type ProtocolEvent } from "./protocol.ts";

/** Every integer on the wire is below 2^63 in magnitude (docs/protocol.md). */
const TWO_TO_63 = 2 ** 63;

/** The numbers of one event in an {@linkcode EventBatch}: op, thread, ts, frame, ref. */
export const EVENT_FIELDS = 5;

// The marshal type bytes that format versions 2 to 4 write for a list of
// tuples of integers; any other byte is an error. Version 4 (what the
// collector writes, being cheaper for it than version 2) adds the small tuple
// and back-references: a type byte with FLAG_REF set enters the object in a
// table, and REF names an earlier entry by its index (the collector's thread
// ident and its small integers are shared objects, so they repeat as REFs).
const LIST = 0x5b; // "["
const TUPLE = 0x28; // "(": int32 count
const SMALL_TUPLE = 0x29; // ")": one-byte count
const INT = 0x69; // "i": int32
const LONG = 0x6c; // "l": int32 digit count (signed), then 15-bit digits
const REF = 0x72; // "r": int32 index into the table of flagged objects
const FLAG_REF = 0x80;

/** The smallest encoding of one event: a small tuple's header and five 5-byte items. */
const MIN_EVENT_BYTES = 2 + EVENT_FIELDS * 5;

/**
 * One batch of events, flat: event `i` is `values[5 * i]` to
 * `values[5 * i + 4]` (op, thread, ts, frame, ref). A batch is refilled
 * for every `events` record, so its buffers grow to the largest batch and
 * stay there; read `values` only up to `5 * length`.
 */
export class EventBatch {
  /**
   * The events' numbers, five per event; valid up to `5 * length`. One
   * spare number at the end: the decoder of marshal reads an event's sixth
   * item (its thread time) there before moving it to `threadTimes`.
   */
  values: Float64Array = new Float64Array(EVENT_FIELDS * 8192 + 1);
  /**
   * Each event's thread CPU time in ns (`--cpu-time`: a sixth item, or op
   * byte bit 6 in a batch frame), or -1 for an event without one.
   */
  threadTimes: Float64Array = new Float64Array(8192);
  /** How many events the batch holds. */
  length = 0;
  #bytes: Uint8Array = new Uint8Array(0);
  /** The marshal back-reference table of the batch being read (see FLAG_REF). */
  refs: number[] = [];

  /**
   * Fills the batch from a `packed` field. Throws a {@linkcode ProtocolError}
   * naming `line` for text that is not base64 or bytes that are not a
   * marshalled list of five-integer tuples.
   */
  setPacked(packed: string, line: number): void {
    // At most 3 bytes per 4 characters; padding only makes it fewer.
    const capacity = Math.ceil(packed.length / 4) * 3;
    if (this.#bytes.length < capacity) this.#bytes = new Uint8Array(capacity);
    let result: { read: number; written: number };
    try {
      // `setFromBase64` decodes into the reused buffer, at about 18 GB/s
      // here: 20 times faster than `Uint8Array.fromBase64` (which
      // allocates) and 30 times faster than `atob` and a copy loop, or a
      // hand-written table decoder (measured in Deno 2.9.6, V8 15.0).
      result = this.#bytes.setFromBase64(packed);
    } catch (error) {
      throw new ProtocolError(
        line,
        `expected "packed" to be base64 in an "events" record (${(error as Error).message})`,
        { cause: error },
      );
    }
    if (result.read !== packed.length) {
      throw new ProtocolError(
        line,
        `expected "packed" to be base64 in an "events" record, but only ${result.read} of its ` +
          `${packed.length} characters decode`,
      );
    }
    this.length = unmarshal(this.#bytes, result.written, this, line, false);
  }

  /**
   * Fills the batch from the binary frame of an `events` record with
   * `marshal` (protocol 4): the marshal bytes themselves, no base64. Throws
   * a {@linkcode ProtocolError} naming `line` and the byte of the frame
   * where the bytes are not a marshalled list of five-integer tuples.
   */
  setMarshal(frame: Uint8Array, line: number): void {
    this.length = unmarshal(frame, frame.length, this, line, true);
  }

  /**
   * Fills the batch from an `events` field, already checked to hold arrays
   * of five integers below 2^63 (see `checkRecord`).
   */
  setEvents(events: readonly ProtocolEvent[]): void {
    const values = this.reserve(events.length);
    const threadTimes = this.threadTimes;
    for (let i = 0, at = 0; i < events.length; i++, at += EVENT_FIELDS) {
      const event = events[i]!;
      values[at] = event[0];
      values[at + 1] = event[1];
      values[at + 2] = event[2];
      values[at + 3] = event[3];
      values[at + 4] = event[4];
      threadTimes[i] = event.length === 6 ? event[5] : -1;
    }
    this.length = events.length;
  }

  /** Makes room for `count` events, keeping none of the old ones; returns `values`. */
  reserve(count: number): Float64Array {
    if (this.values.length < count * EVENT_FIELDS + 1) {
      this.values = new Float64Array(count * EVENT_FIELDS + 1);
    }
    if (this.threadTimes.length < count) this.threadTimes = new Float64Array(count);
    return this.values;
  }

  /** The first `count` events as arrays, six numbers for those with a thread time. */
  toEvents(count = this.length): ProtocolEvent[] {
    const values = this.values;
    const events: ProtocolEvent[] = [];
    for (let i = 0, at = 0; i < count; i++, at += EVENT_FIELDS) {
      const op = values[at] as ProtocolEvent[0];
      const threadTime = this.threadTimes[i]!;
      events.push(
        threadTime < 0
          ? [op, values[at + 1]!, values[at + 2]!, values[at + 3]!, values[at + 4]!]
          : [op, values[at + 1]!, values[at + 2]!, values[at + 3]!, values[at + 4]!, threadTime],
      );
    }
    return events;
  }
}

/**
 * Decodes the events of a `packed` field into arrays: a convenience for
 * tools and tests. The converter itself decodes into a reused
 * {@linkcode EventBatch} instead, without an array per event.
 *
 * Throws a {@linkcode ProtocolError} naming `line` when the text is not
 * base64 of a marshalled list of tuples of five integers (op 0 to 12 or 14, see `Op`).
 *
 * @example Decoding a batch that Python packed
 * ```ts
 * import { unpackEvents } from "@panopticon/panopticon";
 * import assert from "node:assert/strict";
 *
 * // base64.b64encode(marshal.dumps([(0, 140001, 1000, 0, 1)], 2))
 * const packed = "WwEAAAAoBQAAAGkAAAAAaeEiAgBp6AMAAGkAAAAAaQEAAAA=";
 * assert.deepEqual(unpackEvents(packed), [[0, 140001, 1000, 0, 1]]);
 * ```
 */
export function unpackEvents(packed: string, line = 1): ProtocolEvent[] {
  const batch = new EventBatch();
  batch.setPacked(packed, line);
  return batch.toEvents();
}

/**
 * Decodes `bytes[0, end)`, a marshalled list of five-integer tuples, into
 * `batch`; returns the number of events. Little-endian throughout. The
 * bytes are a binary frame (`frame`, and errors name the byte) or the
 * decoded `packed` field of the line.
 */
function unmarshal(
  bytes: Uint8Array,
  end: number,
  batch: EventBatch,
  line: number,
  frame: boolean,
): number {
  // A DataView reads an unaligned little-endian int32 in one load: 30%
  // faster here than four byte reads and shifts (measured).
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  // `at` is passed, not captured: a closure over the cursor would keep it
  // in memory rather than in a register, in the hot loop.
  const fail = (at: number, detail: string): never => {
    if (frame) {
      throw new ProtocolError(line, `the marshal events are malformed: ${detail}`, {
        byte: Math.min(at, end),
      });
    }
    throw new ProtocolError(line, `the "packed" events are malformed: ${detail}`);
  };
  // The objects flagged so far, by index: an integer's value, NaN for the
  // list and the tuples (which nothing refers to).
  const refs = batch.refs;
  refs.length = 0;
  if (end < 5) {
    fail(0, `expected a marshalled list, got ${end} bytes`);
  }
  if ((bytes[0]! & ~FLAG_REF) !== LIST) {
    fail(0, `expected a list (type byte "["), got ${typeByte(bytes[0]!)}`);
  }
  if (bytes[0]! & FLAG_REF) refs.push(NaN);
  const count = view.getInt32(1, true);
  // Checked before anything is allocated for `count` events.
  if (count < 0 || count > (end - 5) / MIN_EVENT_BYTES) {
    fail(1, `the list claims ${count} items but only ${end} bytes were sent (truncated?)`);
  }
  const values = batch.reserve(count);
  const threadTimes = batch.threadTimes;
  let at = 5;
  let out = 0;
  for (let i = 0; i < count; i++) {
    if (at + 2 > end) fail(at, `truncated at event ${i + 1} of ${count}`);
    const tupleType = bytes[at]! & ~FLAG_REF;
    if (bytes[at]! & FLAG_REF) refs.push(NaN);
    let size: number;
    if (tupleType === SMALL_TUPLE) {
      size = bytes[at + 1]!;
      at += 2;
    } else if (tupleType === TUPLE && at + 5 <= end) {
      size = view.getInt32(at + 1, true);
      at += 5;
    } else if (tupleType === TUPLE) {
      return fail(at, `truncated at event ${i + 1} of ${count}`);
    } else {
      return fail(
        at,
        `expected event ${i + 1} to be a tuple (type byte "(" or ")"), got ${typeByte(bytes[at]!)}`,
      );
    }
    // A sixth item is the event's thread time (`hello.thread_time`).
    if (size !== EVENT_FIELDS && size !== EVENT_FIELDS + 1) {
      fail(at, `expected event ${i + 1} to be a tuple of 5 integers, got one of ${size} items`);
    }
    for (let field = 0; field < size; field++) {
      // The commonest item first: a plain `i`.
      const type = bytes[at]!;
      if (type === INT && at + 5 <= end) {
        values[out++] = view.getInt32(at + 1, true);
        at += 5;
        continue;
      }
      const kind = type & ~FLAG_REF;
      let value: number;
      if (type === REF && at + 5 <= end) {
        const index = view.getInt32(at + 1, true);
        at += 5;
        value = refs[index] ?? NaN;
        if (Number.isNaN(value)) {
          fail(at, `event ${i + 1} refers to object ${index}, which is not an integer before it`);
        }
      } else if (kind === INT && at + 5 <= end) {
        value = view.getInt32(at + 1, true);
        at += 5;
      } else if (kind === LONG && at + 5 <= end) {
        const digits = view.getInt32(at + 1, true);
        const size = digits < 0 ? -digits : digits;
        at += 5;
        if (at + 2 * size > end) fail(at, `truncated at event ${i + 1} of ${count}`);
        // Five 15-bit digits reach 2^75; the protocol keeps below 2^63.
        if (size > 5) fail(at, `an integer of event ${i + 1} is not below 2^63`);
        // Unrolled: thread idents, clocks and frame ids take three or four digits.
        const d0 = size > 0 ? view.getUint16(at, true) : 0;
        const d1 = size > 1 ? view.getUint16(at + 2, true) : 0;
        const d2 = size > 2 ? view.getUint16(at + 4, true) : 0;
        const d3 = size > 3 ? view.getUint16(at + 6, true) : 0;
        const d4 = size > 4 ? view.getUint16(at + 8, true) : 0;
        at += 2 * size;
        if ((d0 | d1 | d2 | d3 | d4) > 32767) {
          fail(at, `a digit of a long integer of event ${i + 1} is out of range`);
        }
        // Above 2^53 (a clock on a host up for more than 104 days) the value
        // is rounded, by a few nanoseconds: far below the trace's precision.
        const magnitude = d0 + d1 * 0x8000 + d2 * 0x40000000 + d3 * 0x200000000000 +
          d4 * 0x1000000000000000;
        if (magnitude >= TWO_TO_63) {
          fail(at, `an integer of event ${i + 1} is not below 2^63`);
        }
        value = digits < 0 ? -magnitude : magnitude;
      } else if (kind === INT || kind === LONG || kind === REF || at >= end) {
        return fail(at, `truncated at event ${i + 1} of ${count}`);
      } else {
        return fail(
          at,
          `expected the integers of event ${i + 1}, got ${typeByte(type)} at byte ${at} ` +
            '(only list "[", tuples "(" and ")", int "i", long "l" and reference "r" occur)',
        );
      }
      if (type & FLAG_REF) refs.push(value);
      values[out++] = value;
    }
    if (size === EVENT_FIELDS) {
      threadTimes[i] = -1;
    } else {
      // Read into the next event's first slot (or the spare number after the last).
      threadTimes[i] = values[--out]!;
    }
    const op = values[out - EVENT_FIELDS]!;
    if (!isKnownOp(op)) {
      fail(at, `expected the op of event ${i + 1} to be ${KNOWN_OP_RANGE}, got ${op}`);
    }
    if (size !== EVENT_FIELDS && op > 7) {
      fail(
        at,
        `expected event ${i + 1} (op ${op}) to have 5 items: only ops 0 to 7 carry a thread time`,
      );
    }
  }
  if (at !== end) fail(at, `${end - at} bytes follow the list of ${count} events`);
  return count;
}

function typeByte(byte: number): string {
  const hex = `0x${byte.toString(16).padStart(2, "0")}`;
  return byte >= 0x20 && byte < 0x7f
    ? `type byte ${hex} (${JSON.stringify(String.fromCharCode(byte))})`
    : `type byte ${hex}`;
}
