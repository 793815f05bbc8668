/**
 * Packing events as the collector does (`marshal.dumps(events, 2)`, then
 * base64), for tests and the converter benchmark. It writes what CPython's
 * `w_object` writes for a list of tuples of ints; `packed_test.ts` checks
 * it byte for byte against batches Python packed.
 */

import type { ProtocolEvent } from "../mod.ts";

/** Marshals `events`, a list of tuples of integers below 2^63, into bytes. */
export function marshalEvents(events: readonly (readonly number[])[]): Uint8Array {
  // At most 5 + 6 * (1 + 4 + 2 * 4) bytes an event (six items with a thread
  // time): 4 digits reach 2^60.
  const out = new Uint8Array(5 + events.length * 83);
  let at = 0;
  const int32 = (value: number) => {
    out[at++] = value & 255;
    out[at++] = (value >> 8) & 255;
    out[at++] = (value >> 16) & 255;
    out[at++] = (value >>> 24) & 255;
  };
  out[at++] = 0x5b; // "["
  int32(events.length);
  for (const event of events) {
    out[at++] = 0x28; // "("
    int32(event.length);
    for (const value of event) {
      if (value >= -0x80000000 && value <= 0x7fffffff) {
        out[at++] = 0x69; // "i"
        int32(value);
        continue;
      }
      // "l": a signed count of 15-bit digits, least significant first.
      let magnitude = Math.abs(value);
      const digits: number[] = [];
      while (magnitude > 0) {
        digits.push(magnitude % 32768);
        magnitude = Math.floor(magnitude / 32768);
      }
      out[at++] = 0x6c;
      int32(value < 0 ? -digits.length : digits.length);
      for (const digit of digits) {
        out[at++] = digit & 255;
        out[at++] = digit >> 8;
      }
    }
  }
  return out.subarray(0, at);
}

/** The `packed` field for `events`: base64 of their marshal bytes. */
export function packEvents(events: readonly ProtocolEvent[]): string {
  return marshalEvents(events).toBase64();
}
