import assert from "node:assert/strict";
import {
  type Mark,
  PerfettoWriter,
  type PerfettoWriterOptions,
  type ProcessInfo,
  readPerfetto,
  type Slice,
  type SliceSite,
  type TraceSummary,
} from "../mod.ts";
import { ProtoReader } from "../src/_protobuf.ts";

const PROCESS: ProcessInfo = {
  pid: 4242,
  name: "python async_hello.py",
  argv: ["async_hello.py", "--fast"],
  pythonVersion: "3.12.1",
  engine: "monitoring",
  protocol: 3,
};

const SUMMARY: TraceSummary = {
  complete: true,
  events: 8,
  recorded: 8,
  dropped: 0,
  reason: "exit",
  slices: 3,
  unfinished: 0,
  threads: 1,
  duration: 0.8,
  pid: 4242,
  pythonVersion: "3.12.1",
  engine: "monitoring",
  protocol: 3,
};

const MAIN: SliceSite = { name: "main", category: "function", file: "gen.py", line: 1 };
const NUMBERS: SliceSite = { name: "numbers", category: "generator", file: "gen.py", line: 3 };
const PRINT: SliceSite = { name: "print", category: "c_function" };

function slice(fields: Partial<Slice>): Slice {
  return {
    tid: 1,
    start: 0,
    duration: 1,
    site: NUMBERS,
    flow: 0,
    flowIn: false,
    flowOut: false,
    args: undefined,
    ...fields,
  };
}

/** Runs `write` against a writer whose output is collected; returns the chunks. */
async function collect(
  write: (writer: PerfettoWriter) => void,
  options?: PerfettoWriterOptions,
): Promise<Uint8Array[]> {
  const chunks: Uint8Array[] = [];
  const writer = new PerfettoWriter(
    new WritableStream({ write: (chunk) => void chunks.push(chunk) }),
    options,
  );
  write(writer);
  await writer.close();
  return chunks;
}

/** Writes a whole trace around `items` (slices, or marks) and reads it back, strictly. */
async function trace(items: (Slice | Mark)[], options?: PerfettoWriterOptions) {
  const chunks = await collect((writer) => {
    writer.process(PROCESS);
    writer.thread({ tid: 1, name: "MainThread", ident: 140001, nativeId: 4242 });
    writer.thread({ tid: 2, name: "Thread-1 (work)", ident: 140002, nativeId: 4243 });
    for (const item of items) {
      if ("kind" in item) writer.mark(item);
      else writer.slice(item);
    }
    writer.finish(SUMMARY);
  }, options);
  const bytes = join(chunks);
  return { bytes, chunks, ...(await readPerfetto(bytes, { strict: true })) };
}

function join(chunks: Uint8Array[]): Uint8Array {
  const bytes = new Uint8Array(chunks.reduce((n, chunk) => n + chunk.length, 0));
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.length;
  }
  return bytes;
}

/** The top-level packets, as readers of their fields. */
function packets(bytes: Uint8Array): ProtoReader[] {
  const top = new ProtoReader(bytes);
  const found: ProtoReader[] = [];
  while (top.next()) {
    assert.equal(top.field, 1, "a Trace holds only packets");
    found.push(top.message());
  }
  return found;
}

/** The fields a packet sets, by number (a message's value is its reader). */
function fields(packet: ProtoReader): Map<number, number | ProtoReader> {
  const found = new Map<number, number | ProtoReader>();
  while (packet.next()) {
    found.set(packet.field, packet.wire === 2 ? packet.message() : packet.uint());
  }
  return found;
}

Deno.test("PerfettoWriter writes one track per thread, under a track for the process", async () => {
  const { tracks, slices } = await trace([slice({ tid: 2, site: PRINT })]);
  const all = [...tracks.values()];
  const process = all.find((track) => track.process !== undefined)!;
  assert.deepEqual(process.process, {
    pid: 4242,
    name: "python async_hello.py",
    cmdline: ["async_hello.py", "--fast"],
  });
  const threads = all.filter((track) => track.thread !== undefined);
  assert.deepEqual(
    threads.map((track) => [track.parent, track.thread]),
    [
      [process.uuid, { pid: 4242, tid: 1, name: "MainThread" }],
      [process.uuid, { pid: 4242, tid: 2, name: "Thread-1 (work)" }],
    ],
  );
  assert.deepEqual([slices[0]!.tid, slices[0]!.thread], [2, "Thread-1 (work)"]);
});

Deno.test("PerfettoWriter announces a renamed thread again, on the same track", async () => {
  const chunks = await collect((writer) => {
    writer.process(PROCESS);
    writer.thread({ tid: 1, name: "Thread 140001", ident: 140001, nativeId: null });
    writer.slice(slice({}));
    writer.thread({ tid: 1, name: "MainThread", ident: 140001, nativeId: 4242 });
    writer.finish(SUMMARY);
  });
  const names = [];
  for await (
    const packet of (await import("../mod.ts")).decodePerfetto(join(chunks), { strict: true })
  ) {
    if (packet.kind === "track" && packet.track.thread) names.push(packet.track.thread.name);
  }
  assert.deepEqual(names, ["Thread 140001", "MainThread"]);
  const { slices } = await readPerfetto(join(chunks));
  assert.equal(slices[0]!.thread, "MainThread");
});

Deno.test("PerfettoWriter writes a slice as a BEGIN and an END, with what it shows", async (t) => {
  const cases: { name: string; slice: Slice; expect: Record<string, unknown> }[] = [
    {
      name: "a Python slice with its file and line",
      slice: slice({ start: 0.1, duration: 0.123 }),
      expect: {
        name: "numbers",
        category: "generator",
        ts: 100,
        dur: 123,
        file: "gen.py",
        line: 3,
        args: {},
      },
    },
    {
      name: "a C slice, without a source location",
      slice: slice({ site: PRINT, start: 12.5, duration: 0 }),
      expect: { name: "print", category: "c_function", ts: 12500, dur: 0, args: {} },
    },
    {
      name: "an unfinished slice",
      slice: slice({ args: { unfinished: true } }),
      expect: { name: "numbers", ts: 0, dur: 1000, args: { unfinished: true } },
    },
    {
      name: "an unbalanced C slice",
      slice: slice({ site: PRINT, args: { unbalanced: true } }),
      expect: { name: "print", args: { unbalanced: true } },
    },
    {
      name: "a flush, with its count of events",
      slice: slice({
        site: { name: "panopticon.flush", category: "panopticon" },
        args: { events: 8192 },
      }),
      expect: { name: "panopticon.flush", category: "panopticon", args: { events: 8192 } },
    },
    {
      name: "a span with every kind of argument; a null is left out, as for JSON",
      slice: slice({
        site: { name: "phase 2", category: "mark" },
        args: {
          s: "text é",
          i: -5,
          big: 2 ** 53 - 1,
          f: 2.5,
          b: false,
          n: null,
          o: { a: 1, nested: { c: "x" } },
          l: [1, "two", true, null],
        },
      }),
      expect: {
        name: "phase 2",
        category: "mark",
        args: {
          s: "text é",
          i: -5,
          big: 2 ** 53 - 1,
          f: 2.5,
          b: false,
          o: { a: 1, nested: { c: "x" } },
          l: [1, "two", true],
        },
      },
    },
    {
      name: "nanoseconds kept exactly",
      slice: slice({ start: 1234567.891, duration: 0.001 }),
      expect: { ts: 1234567891, dur: 1 },
    },
  ];
  for (const { name, slice: item, expect } of cases) {
    await t.step(name, async () => {
      const { slices, events } = await trace([item]);
      assert.equal(slices.length, 1);
      const [found] = slices;
      for (const [key, value] of Object.entries(expect)) {
        assert.deepEqual(found![key as keyof typeof found], value, key);
      }
      if (item.site.file === undefined) assert.equal(found!.file, undefined);
      assert.deepEqual(events.map((event) => event.type), ["begin", "end"]);
      assert.ok(events.every((event) => !event.absolute), "delta-encoded timestamps");
    });
  }
});

Deno.test("PerfettoWriter rejects a time that is not finite", async () => {
  const writer = new PerfettoWriter(new WritableStream());
  writer.process(PROCESS);
  assert.throws(() => writer.slice(slice({ start: NaN })), RangeError);
  assert.throws(() => writer.slice(slice({ duration: Infinity })), RangeError);
  await writer.abort();
});

Deno.test("PerfettoWriter nests slices that arrive children first, on clocks that never go back", async () => {
  // main [0, 10] calls a [1, 4] (which calls print [2, 3]) and b [5, 9]
  // (which calls print [6, 7]): they close print, a, print, b, main.
  const order = [
    slice({ site: PRINT, start: 2, duration: 1 }),
    slice({ site: NUMBERS, start: 1, duration: 3 }),
    slice({ site: PRINT, start: 6, duration: 1 }),
    slice({ site: NUMBERS, start: 5, duration: 4 }),
    slice({ site: MAIN, start: 0, duration: 10 }),
  ];
  const { slices, events, sequencePackets } = await trace(order);
  assert.deepEqual(
    slices.map((s) => [s.name, s.ts / 1000, s.dur / 1000, s.depth]),
    [
      ["main", 0, 10, 0],
      ["numbers", 1, 3, 1],
      ["print", 2, 1, 2],
      ["numbers", 5, 4, 1],
      ["print", 6, 1, 2],
    ],
  );
  assert.deepEqual(slices.map((s) => s.parent), [undefined, 0, 1, 0, 3]);
  assert.ok(events.every((event) => !event.absolute), "every time is a delta");
  // Each sequence's own times never go back.
  const last = new Map<number, number>();
  for (const event of events) {
    assert.ok(event.ts >= (last.get(event.sequence) ?? 0), `sequence ${event.sequence}`);
    last.set(event.sequence, event.ts);
  }
  // A sequence per level of the stack: three.
  assert.equal(sequencePackets, 3);
});

Deno.test("PerfettoWriter interns a site once per sequence", async () => {
  const many = Array.from(
    { length: 100 },
    (_, i) => slice({ site: PRINT, start: i, duration: 0.5 }),
  );
  const { bytes, slices } = await trace(many);
  assert.equal(slices.length, 100);
  let interned = 0;
  let events = 0;
  for (const packet of packets(bytes)) {
    const set = fields(packet);
    if (set.has(12)) interned++;
    if (set.has(11)) events++;
  }
  assert.equal(events, 200);
  assert.equal(interned, 1, "the name and category go with the first BEGIN only");
  // After the first, a C call is 26 bytes: a BEGIN of 15 (the packet's tag
  // and length, a delta of 500 ns, the sequence, the event's tag and length,
  // its type, name and category) and an END of 11.
  const sizes = new Map<number, number>();
  const top = new ProtoReader(bytes);
  let index = 0;
  while (top.next()) {
    const [start, end] = top.span();
    const set = fields(new ProtoReader(bytes, start, end));
    if (set.has(11) && !set.has(12)) sizes.set(index, end - start + 2);
    index++;
  }
  assert.deepEqual(new Set(sizes.values()), new Set([15, 11]));
});

Deno.test("PerfettoWriter sets each sequence up: cleared state, defaults, an incremental clock", async () => {
  const { bytes } = await trace([slice({})]);
  const setups = packets(bytes).map(fields).filter((set) => set.has(6));
  assert.equal(setups.length, 1);
  const setup = setups[0]!;
  assert.equal(setup.get(13), 1, "SEQ_INCREMENTAL_STATE_CLEARED");
  assert.equal(setup.get(87), 1, "first_packet_on_sequence");
  const defaults = fields(setup.get(59) as ProtoReader);
  assert.equal(defaults.get(58), 64, "timestamps on the sequence's own clock by default");
  assert.ok(
    (fields(defaults.get(11) as ProtoReader).get(11) as number) > 0,
    "the thread's track by default",
  );
  const snapshot = setup.get(6) as ProtoReader;
  const clocks = [];
  while (snapshot.next()) clocks.push(Object.fromEntries(fields(snapshot.message())));
  assert.deepEqual(clocks, [{ 1: 6, 2: 0 }, { 1: 64, 2: 0, 3: 1 }]);
});

Deno.test("PerfettoWriter joins a frame's slices with one flow, ended on its last slice", async () => {
  const { slices, flows, events } = await trace([
    slice({ start: 0, duration: 1, flow: 7, flowOut: true }),
    slice({ start: 2, duration: 1, flow: 7, flowIn: true, flowOut: true, tid: 2 }),
    slice({ start: 4, duration: 1, flow: 7, flowIn: true }),
    // Another frame's lone slice has no flow.
    slice({ start: 6, duration: 1 }),
  ]);
  assert.deepEqual(flows, [
    { id: 7, from: slices[0]!.id, to: slices[1]!.id },
    { id: 7, from: slices[1]!.id, to: slices[2]!.id },
  ]);
  const begins = events.filter((event) => event.type === "begin");
  assert.deepEqual(begins.map((event) => [event.flowIds, event.terminatingFlowIds]), [
    [[7], []],
    [[7], []],
    [[], [7]],
    [[], []],
  ]);
  assert.deepEqual(slices.map((s) => s.tid), [1, 2, 1, 1]);
});

Deno.test("PerfettoWriter writes instants on their thread and counters on a track per series", async () => {
  const { slices, counters, tracks } = await trace([
    slice({ start: 0, duration: 10 }),
    { kind: "instant", tid: 1, ts: 5, name: "cache miss", category: "mark", args: { key: "k" } },
    { kind: "instant", tid: 2, ts: 6, name: "tick", category: "panopticon", args: {} },
    {
      kind: "counter",
      tid: 0,
      ts: 7,
      name: "queue",
      category: "mark",
      args: { depth: 3, load: 0.5 },
    },
    {
      kind: "counter",
      tid: 0,
      ts: 8,
      name: "queue",
      category: "mark",
      args: { depth: 4, load: 0.25 },
    },
  ]);
  const instants = slices.filter((s) => s.instant);
  assert.deepEqual(
    instants.map((s) => [s.name, s.category, s.ts, s.dur, s.thread, s.args, s.depth]),
    [
      ["cache miss", "mark", 5000, 0, "MainThread", { key: "k" }, 1],
      ["tick", "panopticon", 6000, 0, "Thread-1 (work)", {}, 0],
    ],
  );
  assert.deepEqual(Object.fromEntries(counters), {
    "queue depth": [{ ts: 7000, value: 3 }, { ts: 8000, value: 4 }],
    "queue load": [{ ts: 7000, value: 0.5 }, { ts: 8000, value: 0.25 }],
  });
  const process = [...tracks.values()].find((track) => track.process)!;
  const counterTracks = [...tracks.values()].filter((track) => track.counter);
  assert.deepEqual(counterTracks.map((track) => [track.name, track.parent]), [
    ["queue depth", process.uuid],
    ["queue load", process.uuid],
  ]);
});

Deno.test("PerfettoWriter writes the run's summary as metadata, last", async () => {
  const { metadata, bytes } = await trace([]);
  assert.deepEqual(metadata, {
    panopticon: "0.1.0",
    python: "3.12.1",
    engine: "monitoring",
    protocol: 3,
    pid: 4242,
    complete: true,
    reason: "exit",
    events: 8,
    recorded: 8,
    dropped: 0,
    slices: 3,
    unfinished: 0,
  });
  assert.ok(fields(packets(bytes).at(-1)!).has(5), "the last packet is the metadata");
  const partial = await collect((writer) => {
    writer.process(PROCESS);
    writer.finish({
      ...SUMMARY,
      complete: false,
      recorded: undefined,
      reason: undefined,
      omittedSlices: 4,
      pythonMaxRss: 31_457_280,
    });
  }, { version: "9.9.9" });
  const { metadata: cut } = await readPerfetto(join(partial), { strict: true });
  assert.equal(cut.complete, false);
  assert.equal(cut.panopticon, "9.9.9");
  assert.equal("recorded" in cut, false);
  assert.equal("reason" in cut, false);
  assert.equal(cut.omitted_slices, 4);
  assert.equal(cut.python_max_rss, 31_457_280);
});

Deno.test("PerfettoWriter writes absolute times where no sequence fits, past maxSequencesPerThread", async () => {
  const { slices, events } = await trace([
    slice({ site: PRINT, start: 2, duration: 1 }),
    slice({ site: NUMBERS, start: 1, duration: 3 }),
    slice({ site: MAIN, start: 0, duration: 10 }),
  ], { maxSequencesPerThread: 1 });
  assert.deepEqual(slices.map((s) => [s.name, s.ts, s.dur, s.depth]), [
    ["main", 0, 10000, 0],
    ["numbers", 1000, 3000, 1],
    ["print", 2000, 1000, 2],
  ]);
  assert.deepEqual(events.map((event) => event.absolute), [false, false, true, false, true, false]);
  assert.throws(
    () => new PerfettoWriter(new WritableStream(), { maxSequencesPerThread: 0 }),
    new RangeError("maxSequencesPerThread must be a positive integer, got 0"),
  );
});

Deno.test("PerfettoWriter needs sequences by the stack's depth, not by the number of slices", async () => {
  // 20,000 calls at depths 1 to 8, as they close: a recursion that unwinds
  // and starts again.
  const items: Slice[] = [];
  let time = 0;
  for (let round = 0; round < 2500; round++) {
    const start = time;
    for (let depth = 8; depth >= 1; depth--) {
      items.push(
        slice({
          site: depth === 8 ? PRINT : MAIN,
          start: start + 8 - depth,
          duration: 2 * depth - 1,
        }),
      );
    }
    time += 20;
  }
  const { slices, sequencePackets, events } = await trace(items);
  assert.equal(slices.length, 20_000);
  assert.equal(Math.max(...slices.map((s) => s.depth)), 7);
  assert.equal(sequencePackets, 8);
  assert.ok(events.every((event) => !event.absolute));
});

Deno.test("PerfettoWriter writes chunks of about chunkSize bytes, of whole packets", async () => {
  const items = Array.from({ length: 200 }, (_, i) => slice({ start: i, duration: 0.5 }));
  const chunks = await collect((writer) => {
    writer.process(PROCESS);
    writer.thread({ tid: 1, name: "MainThread", ident: 1, nativeId: 1 });
    for (const item of items) writer.slice(item);
    writer.finish(SUMMARY);
  }, { chunkSize: 256 });
  assert.ok(chunks.length > 10);
  for (const chunk of chunks.slice(0, -1)) {
    assert.ok(chunk.length >= 256 && chunk.length < 256 + 64, `a chunk of ${chunk.length} bytes`);
    // Each chunk is whole packets: it decodes on its own.
    packets(chunk);
  }
  const { slices } = await readPerfetto(join(chunks), { strict: true });
  assert.equal(slices.length, 200);
});

Deno.test("PerfettoWriter reports its output's failure", async () => {
  const writer = new PerfettoWriter(
    new WritableStream({ write: () => Promise.reject(new Error("disk full")) }),
    { chunkSize: 16 },
  );
  writer.process(PROCESS);
  writer.thread({ tid: 1, name: "MainThread", ident: 1, nativeId: 1 });
  writer.slice(slice({}));
  await assert.rejects(writer.ready(), /disk full/);
  await assert.rejects(writer.close(), /disk full/);
});

Deno.test("PerfettoWriter puts each depth on its own sequence, and what does not fit in a pool", async () => {
  // A recursion 50 deep that unwinds, twice: the slices close deepest
  // first, and each depth's come in the order they began.
  const items: Slice[] = [];
  for (let round = 0; round < 2; round++) {
    const base = round * 200;
    for (let depth = 50; depth >= 1; depth--) {
      items.push(slice({ site: MAIN, start: base + 50 - depth, duration: 2 * depth, depth }));
    }
  }
  // A generator's slice at depth 1, held and written after the recursion
  // that came later: it fits no depth, and goes to the pool.
  items.push(slice({ site: NUMBERS, start: 110, duration: 5, depth: 1 }));
  const { slices, events, sequencePackets } = await trace(items);
  assert.equal(slices.length, 101);
  assert.deepEqual(
    slices.filter((s) => s.ts < 200_000).map((s) => s.depth).slice(0, 3),
    [0, 1, 2],
  );
  assert.equal(Math.max(...slices.map((s) => s.depth)), 49);
  assert.deepEqual(slices.find((s) => s.name === "numbers")!.depth, 0);
  assert.ok(events.every((event) => !event.absolute), "every time a delta");
  // A sequence per depth, and one in the pool.
  assert.equal(sequencePackets, 51);
  // Each sequence's own times never go back.
  const last = new Map<number, number>();
  for (const event of events) {
    assert.ok(event.ts >= (last.get(event.sequence) ?? 0), `sequence ${event.sequence}`);
    last.set(event.sequence, event.ts);
  }
});

Deno.test("PerfettoWriter writes a slice's thread time as thread_time_absolute_us", async (t) => {
  const cases: [string, Partial<Slice>][] = [
    ["a plain slice", {}],
    ["a slice with args", { args: { unfinished: true } }],
    ["a slice with a flow", { flow: 3, flowOut: true }],
  ];
  for (const [name, extra] of cases) {
    await t.step(name, async () => {
      const { bytes } = await trace([
        slice({ start: 10, duration: 5, threadStart: 1234.4, threadDuration: 2.2, ...extra }),
      ]);
      // TrackEvent field 17 on the BEGIN and on the END, in whole µs.
      const times: [type: number | undefined, us: number][] = [];
      for (const packet of packets(bytes)) {
        const event = fields(packet).get(11);
        if (!(event instanceof ProtoReader)) continue;
        const found = fields(event);
        const us = found.get(17);
        if (typeof us === "number") times.push([found.get(9) as number, us]);
      }
      assert.deepEqual(times, [[1, 1234], [2, 1237]]);
      const { slices } = await readPerfetto(bytes, { strict: true });
      assert.equal(slices.length, 1);
      assert.equal(slices[0]!.dur, 5000);
      assert.equal(slices[0]!.threadTs, 1234);
      assert.equal(slices[0]!.threadDur, 3);
    });
  }
});
