import assert from "node:assert/strict";
import {
  type BatchRecord,
  NdjsonDecoder,
  ProtocolError,
  type ProtocolEvent,
  unpackBatch,
} from "../mod.ts";
import {
  BatchWriter,
  encodeBatch,
  type NativeEvent,
  nativeEvent,
  protocolEvent,
  writeVarint,
} from "./_batch.ts";

/** One frame of the shared fixture, as `fixtures/native.events.json` lists it. */
interface FixtureFrame {
  line: number;
  offset: number;
  length: number;
  ts: number;
  thread: number;
  events: NativeEvent[];
}

const STREAM = await Deno.readFile(new URL("./fixtures/native.stream", import.meta.url));
const FRAMES: FixtureFrame[] = JSON.parse(
  await Deno.readTextFile(new URL("./fixtures/native.events.json", import.meta.url)),
);

/** A batch record for `frame`, counting from `ts` on `thread`. */
function record(frame: number[] | Uint8Array, events: number, ts = 1000, thread = 1): BatchRecord {
  const payload = Uint8Array.from(frame);
  return { kind: "batch", bytes: payload.length, events, ts, thread, payload };
}

/** Asserts that `run` throws a ProtocolError naming `line` and `byte`, matching `message`. */
function assertFrameError(
  run: () => unknown,
  line: number,
  byte: number,
  message: string | RegExp,
): void {
  assert.throws(run, (error) => {
    assert.ok(error instanceof ProtocolError, `not a ProtocolError: ${error}`);
    assert.equal(error.line, line);
    assert.equal(error.byte, byte);
    const prefix = `the binary frame after line ${line}, byte ${byte}: `;
    assert.ok(error.message.startsWith(prefix), error.message);
    if (typeof message === "string") assert.equal(error.message.slice(prefix.length), message);
    else assert.match(error.message.slice(prefix.length), message);
    return true;
  });
}

Deno.test("unpackBatch decodes the shared fixture's frames into their events", () => {
  const decoded: { record: BatchRecord; line: number; events: ProtocolEvent[] }[] = [];
  const decoder = new NdjsonDecoder();
  decoder.push(STREAM, (record, line) => {
    if (record.kind === "batch") decoded.push({ record, line, events: unpackBatch(record, line) });
  });
  decoder.finish(() => {});
  assert.equal(decoded.length, FRAMES.length);
  assert.ok(FRAMES.length >= 4);
  FRAMES.forEach((frame, i) => {
    const { record, line, events } = decoded[i]!;
    assert.equal(line, frame.line, `frame ${i + 1}`);
    assert.deepEqual(
      [record.bytes, record.events, record.ts, record.thread],
      [frame.length, frame.events.length, frame.ts, frame.thread],
    );
    assert.deepEqual(record.payload, STREAM.subarray(frame.offset, frame.offset + frame.length));
    assert.deepEqual(events, frame.events.map(protocolEvent), `frame ${i + 1}`);
  });
});

Deno.test("encodeBatch, the tests' encoder, writes the shared fixture's bytes", async (t) => {
  for (const [i, frame] of FRAMES.entries()) {
    await t.step(`frame ${i + 1}`, () => {
      const { record, frame: bytes } = encodeBatch(frame.events, frame.ts, frame.thread);
      assert.deepEqual(bytes, STREAM.subarray(frame.offset, frame.offset + frame.length));
      assert.equal(record.events, frame.events.length);
    });
  }
  await t.step("the fixture covers what the format holds", () => {
    const events = FRAMES.flatMap((frame) => frame.events);
    assert.deepEqual(
      [...new Set(events.map((event) => event[0]))].sort((a, b) => a - b),
      [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
    );
    assert.ok(events.some((event) => event[3] > 0 && event[3] < 2 ** 48), "a 6-byte frame id");
    assert.ok(events.some((event) => event[3] >= 2 ** 48), "an 8-byte frame id");
    const bytes = FRAMES.flatMap((frame) =>
      Array.from(STREAM.subarray(frame.offset, frame.offset + frame.length))
    );
    assert.ok(bytes.includes(0x0d), "a thread switch");
    assert.ok(bytes.includes(0x0a), "a newline byte in a frame");
    assert.ok(FRAMES.some((frame) => frame.length === 0), "an empty frame");
  });
});

Deno.test("unpackBatch decodes the protocol's example", async () => {
  const doc = await Deno.readTextFile(new URL("../docs/protocol.md", import.meta.url));
  const example = doc.split("### `batch`")[1]?.match(/```\n([\s\S]*?)```/)?.[1];
  assert.ok(example !== undefined, "docs/protocol.md has no example of a batch");
  const bytes = example.trim().split("\n").flatMap((row) =>
    row.split(/ {2,}/)[0]!.split(" ").map((hex) => parseInt(hex, 16))
  );
  assert.deepEqual(unpackBatch(record(bytes, 3, 1000, 1)), [
    [0, 1, 1250, 0, 3],
    [2, 1, 1290, 0, 0],
    [1, 2, 2290, 0x7f3a00c01230, 5],
  ]);
});

Deno.test("unpackBatch reads varints of 1 to 9 bytes and frame ids of 6 and 8 bytes", async (t) => {
  const values = [
    0,
    1,
    127,
    128,
    16383,
    16384,
    2 ** 21,
    2 ** 28 - 1,
    2 ** 35,
    2 ** 42 + 1,
    2 ** 49 - 1,
    2 ** 53 - 1,
    2 ** 56,
    2 ** 63 - 2 ** 10,
  ];
  for (const value of values) {
    await t.step(`dt ${value}`, () => {
      const bytes: number[] = [6];
      const length = writeVarint(new Uint8Array(9), 0, value);
      const out = new Uint8Array(9);
      writeVarint(out, 0, value);
      bytes.push(...out.subarray(0, length));
      assert.deepEqual(unpackBatch(record(bytes, 1, 0)), [[6, 1, value, 0, 0]]);
    });
  }
  for (const frame of [1, 2 ** 32 + 5, 2 ** 48 - 1, 2 ** 48, 2 ** 53 - 1, 2 ** 56]) {
    await t.step(`frame id ${frame}`, () => {
      const { frame: bytes } = encodeBatch([[2, 1, 1000, frame, 0, 0]], 1000, 1);
      assert.equal(bytes.length, frame < 2 ** 48 ? 8 : 10);
      assert.deepEqual(unpackBatch(record(bytes, 1)), [[2, 1, 1000, frame, 0]]);
    });
  }
  await t.step("an overlong varint, which a minimal encoder never writes, reads the same", () => {
    assert.deepEqual(unpackBatch(record([6, 0x85, 0x80, 0x00], 1, 0)), [[6, 1, 5, 0, 0]]);
  });
  await t.step("an 8-byte frame id below 2^48 reads the same", () => {
    const bytes = [0x32, 5, 0x30, 0x12, 0xc0, 0x00, 0x3a, 0x7f, 0, 0];
    assert.deepEqual(unpackBatch(record(bytes, 1, 0)), [[2, 1, 5, 0x7f3a00c01230, 0]]);
  });
});

Deno.test("unpackBatch follows thread switches, which are not events", () => {
  const events: ProtocolEvent[] = [
    [0, 7, 1000, 0, 3],
    [0, 2, 1010, 0, 3],
    [2, 2, 1020, 0, 0],
    [2, 7, 1030, 0, 0],
  ];
  const { record: batch, frame } = encodeBatch(events.map(nativeEvent), 990, 7);
  assert.equal(batch.events, 4);
  assert.deepEqual(Array.from(frame.subarray(0, 2)), [0x00, 10]);
  assert.deepEqual(unpackBatch({ ...batch, payload: frame }), events);
});

Deno.test("unpackBatch rejects a malformed frame, naming the line and the byte", async (t) => {
  const cases: {
    name: string;
    bytes: number[];
    events: number;
    ts?: number;
    byte: number;
    message: string | RegExp;
  }[] = [
    {
      name: "a spawn without its token",
      bytes: [6, 1, 14, 1],
      events: 2,
      byte: 2,
      message: "event 2 (spawn): its token is cut off by the end of the frame",
    },
    {
      name: "an unknown extended op",
      bytes: [15, 9, 1, 1],
      events: 1,
      byte: 0,
      message: "event 1 (extended): unknown extended op 25: expected 16 to 21",
    },
    {
      name: "an extended op cut off",
      bytes: [15, 0, 1],
      events: 1,
      byte: 0,
      message: "event 1 (raise): its ref is cut off by the end of the frame",
    },
    {
      name: "bit 7 set",
      bytes: [6, 1, 0x86, 1],
      events: 2,
      byte: 2,
      message: "event 2 (c_return): its op byte 0x86 has bit 7 set",
    },
    {
      name: "a thread time on an op that carries none",
      bytes: [6, 1, 0x48, 1, 1, 5],
      events: 2,
      byte: 2,
      message:
        "event 2 (instant): its op byte 0x48 announces a thread time, which only ops 0 to 7 " +
        "carry",
    },
    {
      name: "a thread time cut off",
      bytes: [6, 1, 0x46, 1, 0x80],
      events: 2,
      byte: 2,
      message: "event 2 (c_return): its thread time is cut off by the end of the frame",
    },
    {
      name: "a frame id on a C call",
      bytes: [0x15, 1, 1, 0, 0, 0, 0, 0, 0],
      events: 1,
      byte: 0,
      message:
        "event 1 (c_call): its op byte 0x15 announces a frame id, which only ops 0 to 4 carry",
    },
    {
      name: "a frame id on a thread switch",
      bytes: [0x1d, 2, 6, 1],
      events: 1,
      byte: 0,
      message: /^the thread switch before event 1: its op byte 0x1d announces a frame id/,
    },
    {
      name: "bit 5 without bit 4",
      bytes: [0x22, 1],
      events: 1,
      byte: 0,
      message: "event 1 (return): its op byte 0x22 has bit 5 (an 8-byte frame id) without bit 4",
    },
    {
      name: "a dt cut off",
      bytes: [6, 1, 6, 0x80],
      events: 2,
      byte: 2,
      message: "event 2 (c_return): its dt is cut off by the end of the frame",
    },
    {
      name: "a missing dt",
      bytes: [5, 1, 1, 6],
      events: 2,
      byte: 3,
      message: "event 2 (c_return): its dt is cut off by the end of the frame",
    },
    {
      name: "a code id cut off",
      bytes: [0, 1],
      events: 1,
      byte: 0,
      message: "event 1 (call): its code id is cut off by the end of the frame",
    },
    {
      name: "a mark id after a span id cut off",
      bytes: [10, 1, 2],
      events: 1,
      byte: 0,
      message: "event 1 (span_begin): its mark id is cut off by the end of the frame",
    },
    {
      name: "a thread switch cut off",
      bytes: [5, 1, 1, 13],
      events: 2,
      byte: 3,
      message: "the thread switch before event 2: its thread id is cut off by the end of the frame",
    },
    {
      name: "a frame id cut off",
      bytes: [0x12, 1, 1, 2, 3, 4, 5],
      events: 1,
      byte: 0,
      message: "event 1 (return): its 6-byte frame id is cut off by the end of the frame",
    },
    {
      name: "an 8-byte frame id cut off",
      bytes: [0x32, 1, 1, 2, 3, 4, 5, 6, 7],
      events: 1,
      byte: 0,
      message: "event 1 (return): its 8-byte frame id is cut off by the end of the frame",
    },
    {
      name: "an 8-byte frame id of 2^63",
      bytes: [0x32, 1, 0, 0, 0, 0, 0, 0, 0, 0x80],
      events: 1,
      byte: 0,
      message: "event 1 (return): its 8-byte frame id is not below 2^63",
    },
    {
      name: "a varint of 10 bytes",
      bytes: [6, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01],
      events: 1,
      byte: 0,
      message: "event 1 (c_return): its dt is a varint longer than 9 bytes",
    },
    {
      name: "a time past 2^63",
      bytes: [6, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f],
      events: 1,
      ts: 2 ** 62,
      byte: 0,
      message: "event 1 (c_return): its time passes 2^63 ns",
    },
    {
      name: "an event more than the record says",
      bytes: [6, 1, 6, 1],
      events: 1,
      byte: 2,
      message: "2 bytes follow the last of the 1 events the record announces",
    },
    {
      name: "a thread switch after the last event",
      bytes: [6, 1, 13, 2],
      events: 1,
      byte: 2,
      message: "2 bytes follow the last of the 1 events the record announces",
    },
    {
      name: "fewer events than the record says",
      bytes: [6, 1, 13, 2, 6, 1],
      events: 3,
      byte: 6,
      message: "the frame holds 2 events, but the record announces 3",
    },
    {
      name: "more events than the frame can hold",
      bytes: [6, 1, 6, 1],
      events: 3,
      byte: 0,
      message: "the record announces 3 events, more than its frame of 4 bytes can hold",
    },
  ];
  for (const { name, bytes, events, ts, byte, message } of cases) {
    await t.step(name, () => {
      assertFrameError(() => unpackBatch(record(bytes, events, ts), 9), 9, byte, message);
    });
  }
  await t.step("a record without its frame", () => {
    assert.throws(
      () => unpackBatch({ kind: "batch", bytes: 0, events: 0, ts: 0, thread: 1 }, 4),
      /^ProtocolError: line 4: a "batch" record came without its binary frame \("payload"\)$/,
    );
  });
});

Deno.test("BatchWriter fills frames up to their capacity, as the collector's buffer", () => {
  const writer = new BatchWriter(0, 1, 64);
  let ts = 0;
  const batches: ReturnType<BatchWriter["take"]>[] = [];
  const events: ProtocolEvent[] = [];
  for (let i = 0; i < 100; i++) {
    const event: NativeEvent = [0, 1 + (i % 3), ts += 1000, 0x7f0000000000 + i, 7, 0];
    if (!writer.add(event)) {
      batches.push(writer.take());
      assert.ok(writer.add(event));
    }
    events.push(protocolEvent(event));
  }
  batches.push(writer.take());
  assert.ok(batches.length > 10);
  assert.ok(batches.every(({ frame }) => frame.length <= 64 && frame.length > 64 - 15));
  // Each frame counts from the last time and thread of the one before.
  const decoded = batches.flatMap(({ record, frame }) =>
    unpackBatch({ ...record, payload: frame })
  );
  assert.deepEqual(decoded, events);
});

/**
 * A plain decoder of the format, written from docs/protocol.md apart from
 * src/batch.ts: the events, or the offset of the event (or thread switch)
 * where the frame breaks the format.
 */
function referenceDecode(
  frame: Uint8Array,
  count: number,
  ts: number,
  thread: number,
): { events: ProtocolEvent[] } | { byte: number } {
  const events: ProtocolEvent[] = [];
  let at = 0;
  let start = 0;
  const varint = (): number | undefined => {
    let value = 0n;
    for (let length = 0; length < 9; length++) {
      if (at >= frame.length) return undefined;
      const byte = frame[at++]!;
      value |= BigInt(byte & 0x7f) << BigInt(7 * length);
      if (byte < 0x80) return Number(value);
    }
    return undefined;
  };
  while (at < frame.length) {
    start = at;
    if (events.length === count) return { byte: start };
    const byte = frame[at++]!;
    const op = byte & 0x0f;
    const frameId = (byte & 0x10) !== 0;
    const timed = (byte & 0x40) !== 0;
    if (byte & 0x80 || (byte & 0x20 && !frameId)) return { byte: start };
    // Bit 6, a thread time after the other fields, on ops 0 to 7 only.
    if (timed && op > 7) return { byte: start };
    if (op === 15) {
      // An extended event: its op (less 16), dt, ref and, with bit 4, a frame id.
      const extended = varint();
      if (extended === undefined || extended > 5) return { byte: start };
      const dt = varint();
      if (dt === undefined || ts + dt >= 2 ** 63) return { byte: start };
      ts += dt;
      const ref = varint();
      if (ref === undefined) return { byte: start };
      let id = 0;
      if (frameId) {
        const width = byte & 0x20 ? 8 : 6;
        if (at + width > frame.length || (width === 8 && frame[at + 7]! >= 0x80)) {
          return { byte: start };
        }
        for (let i = width - 1; i >= 0; i--) id = id * 256 + frame[at + i]!;
        at += width;
      }
      events.push([(16 + extended) as ProtocolEvent[0], thread, ts, id, ref]);
      continue;
    }
    if (frameId && op > 4) return { byte: start };
    if (op === 13) {
      const id = varint();
      if (id === undefined) return { byte: start };
      thread = id;
      continue;
    }
    const dt = varint();
    if (dt === undefined || ts + dt >= 2 ** 63) return { byte: start };
    ts += dt;
    let id = 0;
    let ref = 0;
    if (op === 10 || op === 11) {
      const span = varint();
      if (span === undefined) return { byte: start };
      id = span;
    }
    if (op <= 1 || op === 5 || op === 8 || op === 9 || op === 10 || op === 14) {
      const value = varint();
      if (value === undefined) return { byte: start };
      ref = value;
    }
    if (frameId) {
      const width = byte & 0x20 ? 8 : 6;
      if (at + width > frame.length || (width === 8 && frame[at + 7]! >= 0x80)) {
        return { byte: start };
      }
      id = 0;
      for (let i = width - 1; i >= 0; i--) id = id * 256 + frame[at + i]!;
      at += width;
    }
    if (timed) {
      const threadTime = varint();
      if (threadTime === undefined) return { byte: start };
      events.push([op as ProtocolEvent[0], thread, ts, id, ref, threadTime]);
      continue;
    }
    events.push([op as ProtocolEvent[0], thread, ts, id, ref]);
  }
  return events.length === count ? { events } : { byte: frame.length };
}

/** A long run of random events: every op, ids and times of every varint length, switches. */
function randomEvents(seed: number, length: number): NativeEvent[] {
  let state = seed;
  const random = () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const sized = () =>
    Math.floor(random() * 2 ** [7, 7, 7, 14, 14, 21, 28, 35][Math.floor(random() * 8)]!);
  let ts = 1000;
  let thread = 1;
  return Array.from({ length }, () => {
    if (random() < 0.05) thread = 1 + Math.floor(random() * 300);
    ts += random() < 0.001 ? 2 ** 40 : sized();
    // 0 to 12, and 14 (a spawn) for 13.
    const op = Math.floor(random() * 13.2) === 13 ? 14 : Math.floor(random() * 13);
    const frame = op <= 4 && random() < 0.4
      ? random() < 0.8 ? 0x7f0000000000 + Math.floor(random() * 2 ** 30) * 16 : 2 ** 48 + 16
      : 0;
    const ref = op <= 1 || op === 5 || op === 8 || op === 9 || op === 10 || op === 14 ? sized() : 0;
    const span = op === 10 || op === 11 ? sized() : 0;
    // Some events carry a thread time (`--cpu-time`), of every length.
    if (op <= 7 && random() < 0.3) return [op, thread, ts, frame, ref, span, sized() * 100];
    return [op, thread, ts, frame, ref, span];
  });
}

Deno.test("unpackBatch decodes long frames as a plain decoder of the format does", async (t) => {
  for (const seed of [1, 2, 3]) {
    const events = randomEvents(seed, 5000);
    const { record, frame } = encodeBatch(events, 1000, 1);
    await t.step(`seed ${seed}: ${frame.length} bytes`, () => {
      assert.deepEqual(unpackBatch({ ...record, payload: frame }), events.map(protocolEvent));
      assert.deepEqual(referenceDecode(frame, record.events, 1000, 1), {
        events: events.map(protocolEvent),
      });
    });
    await t.step(`seed ${seed}: corrupted, it fails at the event the plain decoder does`, () => {
      for (let n = 0; n < 300; n++) {
        const bytes = frame.slice();
        const at = (n * 7919) % bytes.length;
        bytes[at] = [0x0e, 0x0f, 0x40, 0x80, 0xff, 0x1d, 0x22, 0x3d, 0x15, n & 0xff][n % 10]!;
        const events = record.events + (n % 11 === 0 ? 1 : 0);
        const expected = referenceDecode(bytes, events, 1000, 1);
        let actual: { events: ProtocolEvent[] } | { byte: number };
        try {
          actual = { events: unpackBatch({ ...record, events, payload: bytes }) };
        } catch (error) {
          assert.ok(error instanceof ProtocolError, String(error));
          actual = { byte: error.byte! };
        }
        assert.deepEqual(actual, expected, `byte ${at} set to ${bytes[at]}`);
      }
    });
  }
});
