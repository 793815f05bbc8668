import assert from "node:assert/strict";
import {
  CatapultWriter,
  type CatapultWriterOptions,
  type ProcessInfo,
  type Slice,
  type SliceSite,
  type TraceSummary,
} from "../mod.ts";

const PROCESS: ProcessInfo = {
  pid: 4242,
  name: "python async_hello.py",
  argv: ["async_hello.py"],
  pythonVersion: "3.12.1",
  engine: "monitoring",
  protocol: 1,
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
  protocol: 1,
};

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

/** Runs `write` against a writer whose output is collected; returns the chunks, as text. */
async function collect(
  write: (writer: CatapultWriter) => void,
  options?: CatapultWriterOptions,
): Promise<string[]> {
  const chunks: Uint8Array[] = [];
  const writer = new CatapultWriter(
    new WritableStream({ write: (chunk) => void chunks.push(chunk) }),
    options,
  );
  write(writer);
  await writer.close();
  // Every chunk ends between two events, so it decodes on its own.
  return chunks.map((chunk) => new TextDecoder("utf-8", { fatal: true }).decode(chunk));
}

// deno-lint-ignore no-explicit-any
type TraceEvent = Record<string, any>;

/** Writes a whole trace around `slices` and parses it. */
async function trace(...slices: Slice[]) {
  const chunks = await collect((writer) => {
    writer.process(PROCESS);
    writer.thread({ tid: 1, name: "MainThread", ident: 140001, nativeId: 4242 });
    for (const item of slices) writer.slice(item);
    writer.finish(SUMMARY);
  });
  const text = chunks.join("");
  return { text, json: JSON.parse(text) as { traceEvents: TraceEvent[]; [key: string]: unknown } };
}

Deno.test("CatapultWriter writes a valid JSON trace, metadata first", async () => {
  const { text, json } = await trace(slice({}), slice({ site: PRINT, start: 0.3, duration: 0.1 }));
  assert.ok(text.startsWith('{"traceEvents":[\n'));
  assert.ok(text.endsWith("}\n"));
  // One event per line.
  assert.equal(text.split("\n").filter((line) => line.startsWith('{"ph":')).length, 5);
  assert.deepEqual(json.traceEvents.slice(0, 3), [
    { ph: "M", pid: 4242, name: "process_name", args: { name: "python async_hello.py" } },
    {
      ph: "M",
      pid: 4242,
      tid: 1,
      name: "thread_name",
      args: { name: "MainThread", ident: 140001, native_id: 4242 },
    },
    { ph: "M", pid: 4242, tid: 1, name: "thread_sort_index", args: { sort_index: 1 } },
  ]);
  assert.equal(json.displayTimeUnit, "ns");
});

Deno.test("CatapultWriter writes slices as complete events", async (t) => {
  const cases: { name: string; slice: Slice; event: TraceEvent }[] = [
    {
      name: "a Python slice with its file and line",
      slice: slice({ tid: 2, start: 0.1, duration: 0.123 }),
      event: {
        ph: "X",
        pid: 4242,
        tid: 2,
        ts: 0.1,
        dur: 0.123,
        name: "numbers",
        cat: "generator",
        args: { file: "gen.py", line: 3 },
      },
    },
    {
      name: "a C slice without args",
      slice: slice({ site: PRINT, start: 12.5, duration: 0 }),
      event: { ph: "X", pid: 4242, tid: 1, ts: 12.5, dur: 0, name: "print", cat: "c_function" },
    },
    {
      name: "an unfinished Python slice",
      slice: slice({ args: { unfinished: true } }),
      event: {
        ph: "X",
        pid: 4242,
        tid: 1,
        ts: 0,
        dur: 1,
        name: "numbers",
        cat: "generator",
        args: { file: "gen.py", line: 3, unfinished: true },
      },
    },
    {
      name: "an unbalanced C slice",
      slice: slice({ site: PRINT, args: { unbalanced: true } }),
      event: {
        ph: "X",
        pid: 4242,
        tid: 1,
        ts: 0,
        dur: 1,
        name: "print",
        cat: "c_function",
        args: { unbalanced: true },
      },
    },
    {
      name: "a flush",
      slice: slice({
        site: { name: "panopticon.flush", category: "panopticon" },
        args: { events: 8 },
      }),
      event: {
        ph: "X",
        pid: 4242,
        tid: 1,
        ts: 0,
        dur: 1,
        name: "panopticon.flush",
        cat: "panopticon",
        args: { events: 8 },
      },
    },
    {
      name: "names that need escaping",
      slice: slice({
        site: {
          name: 'quote " back \\ tab \t <module> 😀',
          category: "function",
          file: "C:\\src\\ünï.py",
          line: 1,
        },
      }),
      event: {
        ph: "X",
        pid: 4242,
        tid: 1,
        ts: 0,
        dur: 1,
        name: 'quote " back \\ tab \t <module> 😀',
        cat: "function",
        args: { file: "C:\\src\\ünï.py", line: 1 },
      },
    },
  ];
  for (const { name, slice: item, event } of cases) {
    await t.step(name, async () => {
      const { json } = await trace(item);
      assert.deepEqual(json.traceEvents.at(-1), event);
    });
  }
});

Deno.test("CatapultWriter writes times in microseconds, at most to the nanosecond", async (t) => {
  const cases: { us: number; text: string }[] = [
    { us: 0, text: "0" },
    { us: 2, text: "2" },
    { us: 0.001, text: "0.001" },
    { us: 0.01, text: "0.01" },
    { us: 0.1, text: "0.1" },
    { us: 0.12, text: "0.12" },
    { us: 0.105, text: "0.105" },
    { us: 1.5, text: "1.5" },
    { us: 1234.567, text: "1234.567" },
    { us: 1234.06, text: "1234.06" },
    { us: 1_000_000_000.001, text: "1000000000.001" },
    { us: -1.5, text: "-1.5" },
    { us: -0.002, text: "-0.002" },
    { us: 0.0004, text: "0" },
    { us: 12.0006, text: "12.001" },
  ];
  for (const { us, text } of cases) {
    await t.step(`${us} µs`, async () => {
      const chunks = await collect((writer) => {
        writer.slice(slice({ site: PRINT, start: us, duration: us }));
      });
      assert.match(chunks.join(""), new RegExp(`,"ts":${text},"dur":${text}}`));
    });
  }
});

Deno.test("CatapultWriter writes times beyond 2^53 ns as JSON numbers, and refuses NaN", async (t) => {
  // Found by tests/fuzz_test.ts (through the converter, before it refused
  // such input): 1e300 µs wrote digits past the slice's room, Infinity
  // looped forever and NaN wrote a NUL byte.
  const cases: { us: number; text: string }[] = [
    { us: 18014398509481.98, text: "18014398509481.98" },
    { us: -18014398509481.98, text: "-18014398509481.98" },
    { us: 1e300, text: "1e\\+300" },
  ];
  for (const { us, text } of cases) {
    await t.step(`${us} µs`, async () => {
      const { text: written, json } = await trace(
        slice({ site: PRINT, start: us, duration: Math.abs(us) }),
      );
      assert.match(written, new RegExp(`,"ts":${text},"dur":${text.replace(/^-/, "")}}`));
      assert.equal(json.traceEvents.at(-1)!.ts, us);
    });
  }
  for (const us of [NaN, Infinity, -Infinity]) {
    await t.step(`${us} µs`, () => {
      const writer = new CatapultWriter(new WritableStream());
      assert.throws(
        () => writer.slice(slice({ site: PRINT, start: us })),
        new RangeError(`a slice's time is not finite: ${Math.abs(us)} µs`),
      );
    });
  }
});

Deno.test("CatapultWriter joins slices with v2 flows", async (t) => {
  const cases: { name: string; slice: Slice; flow: TraceEvent }[] = [
    {
      name: "a flow leaving",
      slice: slice({ flow: 1, flowOut: true }),
      flow: { bind_id: "0x1", flow_out: true },
    },
    {
      name: "a flow passing through",
      slice: slice({ flow: 26, flowIn: true, flowOut: true }),
      flow: { bind_id: "0x1a", flow_in: true, flow_out: true },
    },
    {
      name: "a flow arriving",
      slice: slice({ flow: 255, flowIn: true }),
      flow: { bind_id: "0xff", flow_in: true },
    },
    { name: "no flow", slice: slice({}), flow: {} },
  ];
  for (const { name, slice: item, flow } of cases) {
    await t.step(name, async () => {
      const { json } = await trace(item);
      const event = json.traceEvents.at(-1)!;
      assert.equal(event.ph, "X");
      assert.deepEqual(
        {
          bind_id: event.bind_id,
          flow_in: event.flow_in,
          flow_out: event.flow_out,
        },
        { bind_id: undefined, flow_in: undefined, flow_out: undefined, ...flow },
      );
      // No v1 flow events (s, t, f): Perfetto never closes their ids.
      assert.ok(json.traceEvents.every((each) => each.ph === "M" || each.ph === "X"));
    });
  }
});

Deno.test("CatapultWriter records the summary in otherData", async (t) => {
  await t.step("a complete stream", async () => {
    const { json } = await trace();
    assert.deepEqual(json.otherData, {
      panopticon: "0.1.0",
      python: "3.12.1",
      engine: "monitoring",
      protocol: 1,
      pid: 4242,
      complete: true,
      reason: "exit",
      events: 8,
      recorded: 8,
      dropped: 0,
      slices: 3,
      unfinished: 0,
    });
  });
  await t.step("a stream cut short, with a given version", async () => {
    const chunks = await collect((writer) => {
      writer.process(PROCESS);
      writer.finish({ ...SUMMARY, complete: false, recorded: undefined, reason: undefined });
    }, { version: "9.9.9" });
    const { otherData } = JSON.parse(chunks.join(""));
    assert.equal(otherData.panopticon, "9.9.9");
    assert.equal(otherData.complete, false);
    assert.equal("recorded" in otherData, false);
    assert.equal("reason" in otherData, false);
  });
});

Deno.test("CatapultWriter renames a thread without repeating its sort index", async () => {
  const chunks = await collect((writer) => {
    writer.process(PROCESS);
    writer.thread({ tid: 1, name: "MainThread", ident: 1, nativeId: 10 });
    writer.thread({ tid: 2, name: "Thread 7", ident: 7, nativeId: null });
    writer.thread({ tid: 2, name: "Worker", ident: 7, nativeId: 70 });
    writer.finish(SUMMARY);
  });
  const events: TraceEvent[] = JSON.parse(chunks.join("")).traceEvents;
  assert.deepEqual(
    events.filter((event) => event.tid === 2).map((event) => [event.name, event.args]),
    [
      ["thread_name", { name: "Thread 7", ident: 7, native_id: null }],
      ["thread_sort_index", { sort_index: 2 }],
      ["thread_name", { name: "Worker", ident: 7, native_id: 70 }],
    ],
  );
});

Deno.test("CatapultWriter writes in chunks of about chunkSize", async (t) => {
  const write = (writer: CatapultWriter) => {
    writer.process(PROCESS);
    for (let i = 0; i < 1000; i++) writer.slice(slice({ start: i, flow: i + 1, flowOut: true }));
    writer.finish(SUMMARY);
  };
  const reference = (await collect(write)).join("");
  for (const chunkSize of [1, 100, 4096, 65536]) {
    await t.step(`chunkSize ${chunkSize}`, async () => {
      const chunks = await collect(write, { chunkSize });
      assert.equal(chunks.join(""), reference);
      const longestEvent = 200;
      for (const chunk of chunks.slice(0, -1)) {
        assert.ok(chunk.length >= chunkSize, `a chunk of ${chunk.length} < ${chunkSize}`);
        assert.ok(chunk.length < chunkSize + longestEvent, `a chunk of ${chunk.length}`);
      }
      const expected = Math.max(1, Math.floor(reference.length / Math.max(chunkSize, 1)));
      assert.ok(chunks.length <= expected + 1, `${chunks.length} chunks, expected ~${expected}`);
    });
  }
});

Deno.test("CatapultWriter reports a failing output", async (t) => {
  await t.step("from ready() and close()", async () => {
    const failure = new Error("disk full");
    const writer = new CatapultWriter(
      new WritableStream({
        write() {
          throw failure;
        },
      }),
      { chunkSize: 10 },
    );
    writer.process(PROCESS);
    await assert.rejects(() => writer.ready(), failure);
    await assert.rejects(() => writer.close(), failure);
  });
  await t.step("abort() aborts the output", async () => {
    let reason: unknown;
    const writer = new CatapultWriter(
      new WritableStream({
        abort(why) {
          reason = why;
        },
      }),
    );
    writer.process(PROCESS);
    await writer.abort("malformed");
    assert.equal(reason, "malformed");
  });
});

Deno.test("CatapultWriter writes instants on their thread and counters on the process", async () => {
  const chunks = await collect((writer) => {
    writer.process(PROCESS);
    writer.mark({
      kind: "instant",
      tid: 1,
      ts: 1.2345678,
      name: 'cache "miss"',
      category: "mark",
      args: { key: "k", nested: [1, { a: null }] },
    });
    writer.mark({
      kind: "counter",
      tid: 0,
      ts: 2,
      name: "queue depth",
      category: "mark",
      args: { value: 3 },
    });
    writer.finish(SUMMARY);
  });
  const json = JSON.parse(chunks.join(""));
  assert.deepEqual(json.traceEvents.slice(1), [
    {
      ph: "i",
      s: "t",
      name: 'cache "miss"',
      cat: "mark",
      args: { key: "k", nested: [1, { a: null }] },
      pid: 4242,
      tid: 1,
      ts: 1.235,
    },
    { ph: "C", name: "queue depth", cat: "mark", args: { value: 3 }, pid: 4242, ts: 2 },
  ]);
});

Deno.test("CatapultWriter writes the threads of several processes, and the arrows between them", async (t) => {
  const chunks = await collect((writer) => {
    writer.process({ ...PROCESS, sortIndex: 1 });
    writer.thread({ tid: 1, name: "MainThread", ident: 1, nativeId: 4242, pid: 4242 });
    writer.process({ ...PROCESS, pid: 4243, name: "python worker.py", sortIndex: 2 });
    writer.thread({ tid: 2, name: "MainThread", ident: 1, nativeId: 4243, pid: 4243 });
    // A fork call that started two children, and a generator slice that started one.
    writer.slice(slice({ tid: 1, site: PRINT, childFlows: [7, 8] }));
    writer.slice(slice({ tid: 1, start: 2, flow: 3, flowOut: true, childFlows: [9] }));
    writer.slice(slice({ tid: 2, start: 5, parentFlow: 7 }));
    writer.mark({
      kind: "instant",
      tid: 2,
      ts: 6,
      name: "m",
      category: "mark",
      args: {},
      pid: 4243,
    });
    writer.finish(SUMMARY);
  });
  const events: TraceEvent[] = JSON.parse(chunks.join("")).traceEvents;
  await t.step("a track group per process, in the order given", () => {
    assert.deepEqual(
      events.filter((e) => e.name === "process_sort_index").map((e) => [e.pid, e.args]),
      [[4242, { sort_index: 1 }], [4243, { sort_index: 2 }]],
    );
    assert.deepEqual(
      events.filter((e) => e.name === "thread_name").map((e) => [e.pid, e.tid]),
      [[4242, 1], [4243, 2]],
    );
  });
  await t.step("each slice and instant with its thread's process", () => {
    assert.deepEqual(
      events.filter((e) => e.ph === "X" || e.ph === "i").map((e) => [e.name, e.pid, e.tid]),
      [
        ["print", 4242, 1],
        ["spawn", 4242, 1],
        ["numbers", 4242, 1],
        ["spawn", 4242, 1],
        ["numbers", 4243, 2],
        ["m", 4243, 2],
      ],
    );
  });
  await t.step("an arrow binds to its slice, or to a slice of no length at its start", () => {
    assert.deepEqual(
      events.filter((e) => e.bind_id !== undefined).map((e) => [
        e.name,
        e.ts,
        e.dur,
        e.bind_id,
        e.flow_in ?? false,
        e.flow_out ?? false,
      ]),
      [
        ["print", 0, 1, "0x7", false, true],
        ["spawn", 0, 0, "0x8", false, true],
        ["numbers", 2, 1, "0x3", false, true],
        ["spawn", 2, 0, "0x9", false, true],
        ["numbers", 5, 1, "0x7", true, false],
      ],
    );
  });
});

Deno.test("CatapultWriter writes a slice's thread time as tts and tdur", async () => {
  const { json } = await trace(
    slice({ start: 1, duration: 2, threadStart: 0.5, threadDuration: 1.25 }),
  );
  const event = json.traceEvents.find((e) => e.ph === "X")!;
  assert.equal(event.tts, 0.5);
  assert.equal(event.tdur, 1.25);
  assert.equal(event.dur, 2);
});
