import assert from "node:assert/strict";
import {
  convert,
  decodePerfetto,
  PerfettoDecoder,
  type PerfettoPacket,
  PerfettoReadError,
  readPerfetto,
} from "../mod.ts";
import { ProtoWriter } from "../src/_protobuf.ts";

/** The protocol's example converted to a protobuf trace. */
async function example(): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  await convert(
    (await Deno.open(new URL("./fixtures/generator.ndjson", import.meta.url))).readable,
    new WritableStream({ write: (chunk) => void chunks.push(chunk) }),
    { format: "perfetto" },
  );
  const bytes = new Uint8Array(chunks.reduce((n, chunk) => n + chunk.length, 0));
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.length;
  }
  return bytes;
}

/** A trace of the given packets. */
function traceOf(...packets: ProtoWriter[]): Uint8Array {
  const trace = new ProtoWriter();
  for (const packet of packets) trace.message(1, packet);
  return trace.finish().slice();
}

Deno.test("readPerfetto reads the protocol's example as the JSON trace shows it", async () => {
  const trace = await readPerfetto(await example(), { strict: true });
  assert.deepEqual(
    trace.slices.map((s) => [s.name, s.category, s.ts, s.dur, s.depth, s.thread]),
    [
      ["<module>", "function", 0, 700, 0, "MainThread"],
      ["numbers", "generator", 100, 100, 1, "MainThread"],
      ["print", "c_function", 300, 100, 1, "MainThread"],
      ["numbers", "generator", 500, 100, 1, "MainThread"],
      ["panopticon.flush", "panopticon", 710, 40, 0, "MainThread"],
    ],
  );
  assert.deepEqual([trace.slices[1]!.file, trace.slices[1]!.line], ["gen.py", 1]);
  assert.deepEqual(trace.slices[4]!.args, { events: 8 });
  assert.deepEqual(trace.flows, [{ id: 1, from: 1, to: 3 }]);
  assert.equal(trace.metadata.complete, true);
  assert.equal(trace.metadata.events, 8);
});

Deno.test("PerfettoDecoder decodes a trace however its bytes are split", async () => {
  const bytes = await example();
  const whole: PerfettoPacket[] = [];
  new PerfettoDecoder().push(bytes, (packet) => whole.push(packet));
  for (const size of [1, 2, 3, 7, 64]) {
    const decoder = new PerfettoDecoder({ strict: true });
    const packets: PerfettoPacket[] = [];
    for (let at = 0; at < bytes.length; at += size) {
      decoder.push(bytes.subarray(at, at + size), (packet) => packets.push(packet));
    }
    decoder.finish();
    assert.deepEqual(packets, whole, `in pieces of ${size}`);
  }
});

Deno.test("decodePerfetto reads a stream", async () => {
  const bytes = await example();
  const kinds = [];
  for await (
    const packet of decodePerfetto(ReadableStream.from([bytes.slice(0, 10), bytes.slice(10)]))
  ) {
    kinds.push(packet.kind);
  }
  assert.deepEqual(kinds.filter((kind) => kind !== "event"), [
    "track",
    "track",
    // A sequence each for print, the numbers slice held until its frame
    // resumed, and <module>, which closed last and began first.
    "sequence",
    "sequence",
    "sequence",
    "metadata",
  ]);
});

Deno.test("PerfettoDecoder says what is wrong with a trace it cannot read", async (t) => {
  const bytes = await example();
  const cases: { name: string; bytes: Uint8Array; error: RegExp }[] = [
    {
      name: "cut short",
      bytes: bytes.subarray(0, bytes.length - 3),
      error: /the trace ends inside a packet: \d+ bytes from byte \d+ are left over/,
    },
    {
      name: "not a trace",
      bytes: new TextEncoder().encode('{"traceEvents":[]}'),
      error: /byte 0: expected a TracePacket \(field 1 of Trace\), got tag 123/,
    },
    {
      name: "a name never interned",
      bytes: traceOf(
        new ProtoWriter().varint(8, 5).varint(10, 1).message(
          11,
          new ProtoWriter().varint(9, 3).varint(10, 42),
        ),
      ),
      error: /event name 42 is not interned on sequence 1/,
    },
    {
      name: "a delta on a clock the sequence never set up",
      bytes: traceOf(
        new ProtoWriter().varint(8, 5).varint(58, 64).varint(10, 1).message(
          11,
          new ProtoWriter().varint(9, 3),
        ),
      ),
      error: /a timestamp on clock 64, which sequence 1 has no snapshot of/,
    },
    {
      name: "an event of no type",
      bytes: traceOf(new ProtoWriter().varint(8, 5).message(11, new ProtoWriter())),
      error: /a track event of unknown type 0/,
    },
    {
      name: "a varint cut off inside a packet",
      bytes: new Uint8Array([0x0a, 0x02, 0x40, 0xff]),
      error: /malformed protobuf: a varint cut off by the end of its message at byte 4/,
    },
  ];
  for (const { name, bytes, error } of cases) {
    await t.step(name, async () => {
      await assert.rejects(
        readPerfetto(bytes),
        (e) => e instanceof PerfettoReadError && error.test(e.message),
      );
    });
  }
});

Deno.test("PerfettoDecoder skips fields it does not know, unless strict", async () => {
  const bytes = traceOf(
    new ProtoWriter().varint(8, 5).string(999, "future").message(
      11,
      new ProtoWriter().varint(9, 3).string(23, "inline name"),
    ),
  );
  const trace = await readPerfetto(bytes);
  assert.equal(trace.slices.length, 1);
  assert.equal(trace.slices[0]!.ts, 5);
  await assert.rejects(
    readPerfetto(bytes, { strict: true }),
    /field 999 \(wire type 2\) of TracePacket, which the reader does not know/,
  );
});

Deno.test("readPerfetto nests as the trace processor does, and reads fixed64 flows", async () => {
  // Two slices begun on one track at once close innermost first; a BEGIN
  // without an END never ends; fixed64 flow ids work as varint ones.
  const event = (ts: number, type: number, more: (event: ProtoWriter) => ProtoWriter = (e) => e) =>
    new ProtoWriter().varint(8, ts).message(
      11,
      more(new ProtoWriter().varint(9, type).varint(11, 9)),
    );
  const trace = await readPerfetto(traceOf(
    event(10, 1, (e) => e.fixed64(47, 5)),
    event(20, 2),
    event(30, 1, (e) => e.fixed64(48, 5)),
    event(40, 1),
    event(50, 2),
  ));
  assert.deepEqual(trace.slices.map((s) => [s.ts, s.dur, s.depth]), [[10, 10, 0], [30, -1, 0], [
    40,
    10,
    1,
  ]]);
  assert.deepEqual(trace.flows, [{ id: 5, from: 0, to: 1 }]);
});
