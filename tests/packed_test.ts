import assert from "node:assert/strict";
import { ProtocolError, type ProtocolEvent, unpackEvents } from "../mod.ts";
import { EventBatch } from "../src/packed.ts";
import { packEvents } from "./_packed.ts";

interface PackedCase {
  name: string;
  events: ProtocolEvent[];
  packed: string;
}

/** Batches that CPython's marshal and base64 made (tests/fixtures/make_packed.py). */
const CASES: PackedCase[] = JSON.parse(
  await Deno.readTextFile(new URL("./fixtures/packed.json", import.meta.url)),
);

/** The events of a batch, as arrays. */
function eventsOf(batch: EventBatch): number[][] {
  return Array.from(
    { length: batch.length },
    (_, i) => Array.from(batch.values.subarray(5 * i, 5 * i + 5)),
  );
}

// Marshal bytes built by hand, for what CPython never writes.
type Bytes = number[];
const int32 = (value: number): Bytes => [
  value & 255,
  (value >> 8) & 255,
  (value >> 16) & 255,
  (value >>> 24) & 255,
];
const type = (char: string): Bytes => [char.charCodeAt(0)];
/** An `i` item. */
const i = (value: number): Bytes => [...type("i"), ...int32(value)];
/** An `l` item with these 15-bit digits, least significant first. */
const l = (digits: number[], sign = 1): Bytes => [
  ...type("l"),
  ...int32(sign * digits.length),
  ...digits.flatMap((digit) => [digit & 255, digit >> 8]),
];
const tuple = (...items: Bytes[]): Bytes => [...type("("), ...int32(items.length), ...items.flat()];
const list = (...items: Bytes[]): Bytes => [...type("["), ...int32(items.length), ...items.flat()];
/** The event `(op, 1, 2, 3, 4)`. */
const event = (op = 0): Bytes => tuple(i(op), i(1), i(2), i(3), i(4));
const base64 = (bytes: Bytes): string => Uint8Array.from(bytes).toBase64();

Deno.test("unpackEvents decodes what CPython's marshal writes", async (t) => {
  assert.ok(CASES.length >= 8);
  for (const { name, events, packed } of CASES) {
    await t.step(name, () => {
      assert.deepEqual(unpackEvents(packed), events);
    });
  }
});

Deno.test("packEvents, the tests' packer, writes what CPython's marshal writes", async (t) => {
  for (const { name, events, packed } of CASES) {
    await t.step(name, () => assert.equal(packEvents(events), packed));
  }
});

const python = await (async () => {
  try {
    const { success } = await new Deno.Command("python3", { args: ["-c", "pass"] }).output();
    return success;
  } catch {
    return false;
  }
})();

Deno.test({
  name: "EventBatch decodes batches that python3 packs as the collector does",
  ignore: !python,
  async fn(t) {
    // 8192 events (the collector's batch) with every kind of integer: zero,
    // negative, int32 bounds, and longs of one to four digits up to 2^53 - 1,
    // in marshal versions 2 and 4 (small tuples and back-references).
    const script = `
import base64, json, marshal, random
random.seed(7)
edges = [0, 1, -1, 2**31 - 1, -2**31, 2**31, -2**31 - 1, 2**47, 2**47 + 1, 2**52, 2**53 - 1, -(2**53 - 1)]
def value(i):
    r = random.random()
    if r < 0.3: return edges[i % len(edges)]
    if r < 0.6: return random.randrange(-2**31, 2**31)
    return random.randrange(-(2**53 - 1), 2**53)
# The collector's pattern too: one thread ident object shared by every
# event, which marshal version 4 writes once and then refers back to.
ident = 140484755450752 + random.randrange(2)
batches = []
for version in (2, 4):
    for size in (8192, 1, 0, 3000):
        events = [(i % 8, value(i), value(i + 1), value(i + 2), value(i + 3)) for i in range(size)]
        shared = [(i % 8, ident, value(i), 0, i % 300) for i in range(size)]
        for batch in (events, shared):
            packed = base64.b64encode(marshal.dumps(batch, version)).decode()
            batches.append({"version": version, "events": batch, "packed": packed})
print(json.dumps(batches))
`;
    const output = await new Deno.Command("python3", { args: ["-c", script] }).output();
    assert.ok(output.success, new TextDecoder().decode(output.stderr));
    const batches: { version: number; events: number[][]; packed: string }[] = JSON.parse(
      new TextDecoder().decode(output.stdout),
    );
    // One batch object for all, as the converter uses it: it must shrink
    // and grow without leaking events from one batch into the next.
    const batch = new EventBatch();
    for (const { version, events, packed } of batches) {
      await t.step(`${events.length} events, marshal version ${version}`, () => {
        batch.setPacked(packed, 1);
        assert.equal(batch.length, events.length);
        assert.deepEqual(eventsOf(batch), events);
        // The test's own packer writes version 2, byte for byte as Python.
        if (version === 2) assert.equal(packEvents(events as unknown as ProtocolEvent[]), packed);
      });
    }
  },
});

Deno.test("EventBatch reuses its buffers from batch to batch", () => {
  const batch = new EventBatch();
  const big = CASES.find((each) => each.events.length === 10)!;
  const small = CASES.find((each) => each.events.length === 1)!;
  batch.setPacked(big.packed, 1);
  const values = batch.values;
  batch.setPacked(small.packed, 2);
  assert.equal(batch.values, values);
  assert.deepEqual(eventsOf(batch), small.events);
  batch.setEvents(big.events);
  assert.equal(batch.values, values);
  assert.deepEqual(eventsOf(batch), big.events);
  // A batch larger than the buffer gets a larger one.
  const many = Array.from({ length: 10_000 }, (_, n) => [n % 8, n, n, n, n] as ProtocolEvent);
  batch.setEvents(many);
  assert.equal(batch.length, 10_000);
  assert.deepEqual(eventsOf(batch).at(-1), [7, 9999, 9999, 9999, 9999]);
});

Deno.test("EventBatch.setPacked rejects what is not a marshalled batch, naming the line", async (t) => {
  const twoEvents = list(tuple(i(0), l([1, 2, 3, 4]), i(2), i(3), i(4)), event());
  const cases: { name: string; bytes?: Bytes; packed?: string; message: string | RegExp }[] = [
    {
      name: "text that is not base64",
      packed: "WwAA*AA=",
      message: /^line 9: expected "packed" to be base64 in an "events" record \(.+\)$/,
    },
    {
      name: "no bytes",
      bytes: [],
      message: 'line 9: the "packed" events are malformed: expected a marshalled list, got 0 bytes',
    },
    {
      name: "a tuple where the list belongs",
      bytes: event(),
      message: 'line 9: the "packed" events are malformed: expected a list (type byte "["), ' +
        'got type byte 0x28 ("(")',
    },
    {
      name: "a back-reference to an object not seen yet",
      bytes: list(tuple(i(0), [0x72, ...int32(0)], i(2), i(3), i(4))),
      message: /: event 1 refers to object 0, which is not an integer before it$/,
    },
    {
      name: "a back-reference to the list itself",
      bytes: [0x5b | 0x80, ...list(tuple(i(0), [0x72, ...int32(0)], i(2), i(3), i(4))).slice(1)],
      message: /: event 1 refers to object 0, which is not an integer before it$/,
    },
    {
      name: "a list that claims more items than were sent",
      bytes: [...type("["), ...int32(2), ...event()],
      message: 'line 9: the "packed" events are malformed: the list claims 2 items but only ' +
        "35 bytes were sent (truncated?)",
    },
    {
      name: "a list of a negative size",
      bytes: [...type("["), ...int32(-1)],
      message: /: the list claims -1 items but only 5 bytes were sent \(truncated\?\)$/,
    },
    {
      name: "a tuple of four items",
      bytes: list(event(), tuple(i(0), l([1, 1, 1, 1]), l([2, 2, 2, 2]), l([3, 3, 3, 3]))),
      message: 'line 9: the "packed" events are malformed: expected event 2 to be a tuple of ' +
        "5 integers, got one of 4 items",
    },
    {
      name: "a tuple of seven items",
      bytes: list(tuple(i(0), i(1), i(2), i(3), i(4), i(5), i(6))),
      message: /: expected event 1 to be a tuple of 5 integers, got one of 7 items$/,
    },
    {
      name: "a thread time on an op that carries none",
      bytes: list(tuple(i(8), i(1), i(2), i(0), i(4), i(5))),
      message: /: expected event 1 \(op 8\) to have 5 items: only ops 0 to 7 carry a thread time$/,
    },
    {
      name: "a list where an event belongs",
      bytes: list(list(i(0), i(1), i(2), i(3), i(4))),
      message:
        /: expected event 1 to be a tuple \(type byte "\(" or "\)"\), got type byte 0x5b \("\["\)$/,
    },
    {
      name: "a float among the integers",
      bytes: list(tuple(i(0), i(1), [...type("g"), 0, 0, 0, 0, 0, 0, 0, 0], i(3), i(4))),
      message: 'line 9: the "packed" events are malformed: expected the integers of event 1, ' +
        'got type byte 0x67 ("g") at byte 20 (only list "[", tuples "(" and ")", int "i", ' +
        'long "l" and reference "r" occur)',
    },
    {
      name: "None among the integers",
      bytes: list(tuple(type("N"), i(1), i(2), i(3), l([4, 4, 4, 4]))),
      message: /: expected the integers of event 1, got type byte 0x4e \("N"\) at byte 10 /,
    },
    {
      name: "bytes cut in an int",
      bytes: twoEvents.slice(0, -3),
      message: 'line 9: the "packed" events are malformed: truncated at event 2 of 2',
    },
    {
      name: "bytes cut after a type byte",
      bytes: twoEvents.slice(0, -5),
      message: /: truncated at event 2 of 2$/,
    },
    {
      name: "bytes cut in the digits of a long",
      bytes: list(tuple(i(0), i(1), i(2), i(3), l([1, 2, 3, 4]))).slice(0, -1),
      message: /: truncated at event 1 of 1$/,
    },
    {
      name: "a long of six digits",
      bytes: list(tuple(i(0), l([1, 1, 1, 1, 1, 1]), i(2), i(3), i(4))),
      message: /: an integer of event 1 is not below 2\^63$/,
    },
    {
      name: "a long of 2^63",
      bytes: list(tuple(i(0), i(1), l([0, 0, 0, 0, 8], -1), i(3), i(4))),
      message: /: an integer of event 1 is not below 2\^63$/,
    },
    {
      name: "a digit of 16 bits",
      bytes: list(tuple(i(0), i(1), i(2), l([0x8000]), i(4))),
      message: /: a digit of a long integer of event 1 is out of range$/,
    },
    {
      name: "op 13",
      bytes: list(event(13)),
      message:
        'line 9: the "packed" events are malformed: expected the op of event 1 to be 0 to 12, 14 or 16 to 21, got 13',
    },
    {
      name: "op 15",
      bytes: list(event(15)),
      message: /: expected the op of event 1 to be 0 to 12, 14 or 16 to 21, got 15$/,
    },
    {
      name: "op -1",
      bytes: list(event(-1)),
      message: /: expected the op of event 1 to be 0 to 12, 14 or 16 to 21, got -1$/,
    },
    {
      name: "op 2^32",
      bytes: list(tuple(l([0, 0, 4]), i(1), i(2), i(3), i(4))),
      message: /: expected the op of event 1 to be 0 to 12, 14 or 16 to 21, got 4294967296$/,
    },
    {
      name: "bytes after the list",
      bytes: [...list(event()), 0x30],
      message: 'line 9: the "packed" events are malformed: 1 bytes follow the list of 1 events',
    },
  ];
  for (const { name, bytes, packed, message } of cases) {
    await t.step(name, () => {
      assert.throws(() => new EventBatch().setPacked(packed ?? base64(bytes!), 9), (error) => {
        assert.ok(error instanceof ProtocolError, `not a ProtocolError: ${error}`);
        assert.equal(error.line, 9);
        if (typeof message === "string") assert.equal(error.message, message);
        else assert.match(error.message, message);
        return true;
      });
    });
  }
});

Deno.test("EventBatch decodes longs of every sign and size as Python does", async (t) => {
  const cases: { bytes: Bytes; value: number }[] = [
    { bytes: l([]), value: 0 },
    { bytes: l([5], -1), value: -5 },
    { bytes: l([0x7fff, 0x7fff]), value: 2 ** 30 - 1 },
    { bytes: l([0, 0, 0, 128]), value: 2 ** 52 },
    { bytes: l([0x7fff, 0x7fff, 0x7fff, 0xff], -1), value: -(2 ** 53 - 1) },
    // A perf_counter_ns() clock after about 104 days of uptime: above 2^53,
    // read as the nearest double (so is the expected value written here).
    { bytes: l([8, 0, 0, 0, 4]), value: 2 ** 62 + 8 },
    { bytes: l([0, 0, 0, 0x7fff, 7]), value: 2 ** 62 + 2 ** 61 + 2 ** 60 + (2 ** 60 - 2 ** 45) },
  ];
  for (const { bytes, value } of cases) {
    await t.step(String(value), () => {
      const batch = new EventBatch();
      batch.setPacked(base64(list(tuple(i(0), i(1), bytes, i(3), i(4)))), 1);
      assert.deepEqual(eventsOf(batch), [[0, 1, value, 3, 4]]);
    });
  }
});

Deno.test("EventBatch follows marshal version 4's back-references and small tuples", () => {
  // [(1, 7), (1, 7)] with the 7s shared: the list flagged (object 0), the
  // first 1 and 7 flagged (objects 1 and 2), then referred back to.
  const ref = (index: number): Bytes => [0x72, ...int32(index)];
  const small = (...items: Bytes[]): Bytes => [0x29, items.length, ...items.flat()];
  const flagged = (bytes: Bytes): Bytes => [bytes[0]! | 0x80, ...bytes.slice(1)];
  const bytes = [
    0x5b | 0x80,
    ...int32(2),
    ...small(flagged(i(1)), flagged(i(7)), i(30), i(0), ref(2)),
    ...small(ref(1), ref(2), i(40), i(0), ref(1)),
  ];
  const batch = new EventBatch();
  batch.setPacked(base64(bytes), 1);
  assert.deepEqual(eventsOf(batch), [[1, 7, 30, 0, 7], [1, 7, 40, 0, 1]]);
});
