import assert from "node:assert/strict";
import {
  type ConversionSummary,
  convert,
  type ConvertOptions,
  decodeNdjson,
  ProtocolError,
  type ProtocolRecord,
  toCatapult,
} from "../mod.ts";

// deno-lint-ignore no-explicit-any
type TraceEvent = Record<string, any>;
interface Trace {
  traceEvents: TraceEvent[];
  displayTimeUnit: string;
  // deno-lint-ignore no-explicit-any
  otherData: Record<string, any>;
}

function fixture(name: string): Promise<Uint8Array> {
  return Deno.readFile(new URL(`./fixtures/${name}`, import.meta.url));
}

/** Converts `chunks` and returns the output text, parsed, with the summary. */
async function convertChunks(
  chunks: Uint8Array[],
  options?: ConvertOptions,
): Promise<{ text: string; trace: Trace; summary: ConversionSummary }> {
  let text = "";
  const decoder = new TextDecoder();
  const summary = await convert(
    ReadableStream.from(chunks),
    new WritableStream({
      write: (chunk) => void (text += decoder.decode(chunk, { stream: true })),
    }),
    options,
  );
  return { text, trace: JSON.parse(text), summary };
}

/** The complete events, as `[name, tid, ts, dur]` plus their flow fields when present. */
function slices(trace: Trace): unknown[][] {
  return trace.traceEvents
    .filter((event) => event.ph === "X")
    .sort((a, b) => a.ts - b.ts || a.tid - b.tid)
    .map((event) => {
      const row: unknown[] = [event.name, event.tid, event.ts, event.dur];
      if (event.bind_id !== undefined) {
        row.push(event.bind_id, event.flow_in ?? false, event.flow_out ?? false);
      }
      return row;
    });
}

/** The last name each thread was given. */
function threadNames(trace: Trace): Record<number, string> {
  const names: Record<number, string> = {};
  for (const event of trace.traceEvents) {
    if (event.ph === "M" && event.name === "thread_name") names[event.tid] = event.args.name;
  }
  return names;
}

Deno.test("convert writes the protocol's example as a valid trace", async () => {
  const { text, trace, summary } = await convertChunks([await fixture("generator.ndjson")]);
  assert.deepEqual(slices(trace), [
    ["<module>", 1, 0, 0.7],
    ["numbers", 1, 0.1, 0.1, "0x1", false, true],
    ["print", 1, 0.3, 0.1],
    ["numbers", 1, 0.5, 0.1, "0x1", true, false],
    ["panopticon.flush", 1, 0.71, 0.04],
  ]);
  const numbers = trace.traceEvents.find((event) => event.name === "numbers")!;
  assert.equal(numbers.cat, "generator");
  assert.deepEqual(numbers.args, { file: "gen.py", line: 1 });
  assert.equal(numbers.pid, 4242);
  assert.deepEqual(threadNames(trace), { 1: "MainThread" });
  assert.equal(trace.traceEvents[0]!.args.name, "python gen.py");
  assert.equal(trace.displayTimeUnit, "ns");
  assert.equal(trace.otherData.complete, true);
  assert.deepEqual(summary, {
    complete: true,
    events: 8,
    recorded: 8,
    dropped: 0,
    reason: "exit",
    slices: 5,
    unfinished: 0,
    threads: 1,
    duration: 0.8,
    pid: 4242,
    pythonVersion: "3.12.1",
    engine: "monitoring",
    protocol: 3,
    omittedSlices: 0,
    pythonMaxRss: undefined,
    warnings: [],
    format: "json",
    bytes: new TextEncoder().encode(text).length,
  });
});

Deno.test("convert writes the shared native fixture (protocol 4) as a valid trace", async (t) => {
  const bytes = await fixture("native.stream");
  const { text, trace, summary } = await convertChunks([bytes]);
  await t.step("its slices", () => {
    assert.deepEqual(slices(trace), [
      ["<module>", 1, 0, 73062634340949.25],
      ["hot", 1, 0.04, 21.1],
      ["print", 1, 0.14, 1],
      ["numbers", 1, 21.145, 3000, "0x1", false, true],
      ["work", 2, 3021.169, 300000.021],
      ["numbers", 2, 3021.179, 300000, "0x1", true, true],
      ["list.append", 1, 303021.202, 0.013],
      ["phase 2", 1, 303021.229, 40000000.003],
      ["time.sleep", 1, 40303021.229, 0.001],
      ["main", 1, 40303021.235, 0.015, "0x2", false, true],
      ["ticks", 1, 40303021.239, 0.005, "0x3", false, true],
      ["main", 2, 40303021.257, 0.027, "0x2", true, false],
      ["ticks", 2, 40303021.265, 0.009, "0x3", true, false],
      ["panopticon.flush", 1, 40303021.296, 0.001],
      ["list.append", 1, 40303021.307, 0.001],
      ["numbers", 1, 5040303021.308, 1000000000000.004, "0x1", true, false],
    ]);
  });
  await t.step("its marks, threads and summary", () => {
    const marks = trace.traceEvents.filter((event) => event.ph === "i" || event.ph === "C");
    assert.deepEqual(marks.map((event) => [event.ph, event.name, event.ts, event.args]), [
      ["i", "cache miss", 3021.152, { key: "k" }],
      ["C", "queue depth", 3021.16, { depth: 3 }],
    ]);
    assert.deepEqual(threadNames(trace), { 1: "MainThread", 2: "renamed" });
    const names = trace.traceEvents.filter((event) => event.name === "thread_name");
    assert.deepEqual(names.map((event) => event.args), [
      { name: "MainThread", ident: 140245061072704, native_id: 4242, serial: 1 },
      { name: "Thread 2", ident: null, native_id: null, serial: 2 },
      { name: "Thread-1 (worker)", ident: 140245052679936, native_id: 4243, serial: 2 },
      { name: "renamed", ident: 140245052679936, native_id: 4243, serial: 2 },
    ]);
    assert.deepEqual(summary.warnings, []);
    assert.equal(summary.events, 33);
    assert.equal(summary.threads, 2);
    assert.deepEqual(
      [summary.protocol, summary.collector, summary.clock],
      [4, "native", "tsc"],
    );
    const { otherData } = trace;
    assert.deepEqual(
      [otherData.protocol, otherData.collector, otherData.clock, otherData.complete],
      [4, "native", "tsc", true],
    );
    assert.equal(otherData.limited, undefined);
  });
  await t.step("the same whatever the chunks", async () => {
    for (const size of [1, 3, 64, 1000]) {
      const chunks: Uint8Array[] = [];
      for (let at = 0; at < bytes.length; at += size) chunks.push(bytes.slice(at, at + size));
      assert.equal((await convertChunks(chunks)).text, text, `chunks of ${size} bytes`);
    }
  });
});

Deno.test("convert records in otherData that recording stopped at --max-events", async () => {
  const stream = [
    '{"kind":"hello","protocol":4,"pid":7,"python":"3.13.1","engine":"monitoring","t0":0,"main_thread":1,"argv":["a.py"],"collector":"native","thread_ids":"serial"}',
    '{"kind":"cfunc","id":1,"name":"print"}',
    '{"kind":"events","events":[[5,1,1000,0,1]]}',
    '{"kind":"limit","ts":1500,"events":1,"thread":1}',
    '{"kind":"end","ts":9000,"events":1,"dropped":0,"reason":"exit"}',
  ].join("\n") + "\n";
  const { trace, summary } = await convertChunks([new TextEncoder().encode(stream)]);
  assert.deepEqual(trace.otherData.limited, { ts: 1.5, events: 1 });
  assert.deepEqual(summary.limited, { ts: 1.5, events: 1 });
  assert.deepEqual(summary.warnings, [
    "recording stopped at 0.000 s after 1 events (--max-events): the rest of the run is not in the trace",
  ]);
  const instant = trace.traceEvents.find((event) => event.ph === "i")!;
  assert.deepEqual(
    [instant.name, instant.cat, instant.tid, instant.ts, instant.args],
    ["recording stopped: --max-events reached", "panopticon", 1, 1.5, { events: 1 }],
  );
  assert.deepEqual(slices(trace), [["print", 1, 1, 8]]);
  assert.equal(trace.traceEvents.find((event) => event.ph === "X")!.args.unfinished, true);
});

Deno.test("convert follows a generator resumed on another thread", async () => {
  const { trace, summary } = await convertChunks([await fixture("threads.ndjson")]);
  assert.deepEqual(slices(trace), [
    ["<module>", 1, 0, 13],
    ["produce", 1, 1, 1, "0x1", false, true],
    ["time.sleep", 1, 3, 7],
    ["threading.Thread.run", 2, 4, 5],
    ["wörker", 2, 5, 3],
    ["produce", 2, 6, 1, "0x1", true, true],
    ["panopticon.flush", 2, 9.1, 0.2],
    ["threading.Thread.run", 3, 9.5, 0.3],
    ["wörker", 3, 9.6, 0.1],
    ["produce", 1, 11, 1, "0x1", true, false],
  ]);
  assert.deepEqual(threadNames(trace), {
    1: "MainThread",
    2: "Thread-1 (wörker 😀)",
    3: "Thread-2 (wörker)",
  });
  const idents = trace.traceEvents
    .filter((event) => event.name === "thread_name")
    .map((event) => [event.tid, event.args.ident, event.args.native_id]);
  assert.deepEqual(idents.at(-1), [3, 200, 5152]);
  assert.equal(summary.threads, 3);
  assert.equal(summary.complete, true);
  assert.deepEqual(summary.warnings, []);
});

Deno.test("convert reads packed events (protocol 2) as it reads JSON events (protocol 1)", async () => {
  const v2 = await convertChunks([await fixture("threads.ndjson")]);
  const v1 = await convertChunks([await fixture("threads_v1.ndjson")]);
  assert.deepEqual(v2.trace.traceEvents, v1.trace.traceEvents);
  assert.equal(v2.summary.protocol, 2);
  assert.equal(v1.summary.protocol, 1);
  assert.deepEqual(
    { ...v2.summary, protocol: 1, pythonMaxRss: undefined, bytes: v1.summary.bytes },
    v1.summary,
  );
  // Only protocol 2 reports the Python process's peak memory.
  assert.equal(v2.summary.pythonMaxRss, 31_457_280);
  assert.equal(v2.trace.otherData.python_max_rss, 31_457_280);
  assert.equal("python_max_rss" in v1.trace.otherData, false);
  assert.deepEqual(
    { ...v2.trace.otherData, protocol: 1, python_max_rss: undefined },
    { ...v1.trace.otherData, python_max_rss: undefined },
  );
});

Deno.test("convert leaves out slices deeper than maxDepth", async (t) => {
  const bytes = await fixture("threads.ndjson");
  const cases: { maxDepth: number; names: string[]; omitted: number }[] = [
    {
      maxDepth: 1,
      names: ["<module>", "threading.Thread.run", "panopticon.flush", "threading.Thread.run"],
      omitted: 6,
    },
    {
      maxDepth: 2,
      names: [
        "<module>",
        "produce",
        "time.sleep",
        "threading.Thread.run",
        "wörker",
        "panopticon.flush",
        "threading.Thread.run",
        "wörker",
        // Back at depth 2; its slice at depth 3 on thread 2 is left out, and
        // so are both flows to and from it.
        "produce",
      ],
      omitted: 1,
    },
    {
      maxDepth: Infinity,
      names: slices((await convertChunks([bytes])).trace).map((row) => row[0] as string),
      omitted: 0,
    },
  ];
  for (const { maxDepth, names, omitted } of cases) {
    await t.step(`maxDepth ${maxDepth}`, async () => {
      const { trace, summary } = await convertChunks([bytes], { maxDepth });
      assert.deepEqual(slices(trace).map((row) => row[0]), names);
      assert.equal(summary.omittedSlices, omitted);
      assert.equal(summary.slices, names.length);
      assert.equal(trace.otherData.omitted_slices, omitted || undefined);
      // No flow arrow is left without its other end.
      const ends = new Map<string, number>();
      for (const event of trace.traceEvents) {
        if (event.bind_id === undefined) continue;
        const balance = (event.flow_out ? 1 : 0) - (event.flow_in ? 1 : 0);
        ends.set(event.bind_id, (ends.get(event.bind_id) ?? 0) + balance);
      }
      for (const [id, balance] of ends) assert.equal(balance, 0, `flow ${id}`);
    });
  }
  await t.step("rejects maxDepth 0, leaving the streams untouched", async () => {
    const input = ReadableStream.from([bytes]);
    const output = new WritableStream<Uint8Array>();
    await assert.rejects(
      () => convert(input, output, { maxDepth: 0 }),
      new RangeError("maxDepth must be a positive integer or Infinity, got 0"),
    );
    assert.equal(input.locked, false);
    assert.equal(output.locked, false);
  });
});

Deno.test("convert writes a trace of a stream cut short", async () => {
  const warned: string[] = [];
  const { trace, summary } = await convertChunks([await fixture("truncated.ndjson")], {
    onWarning: (message) => warned.push(message),
  });
  const expected = [
    "line 7 is incomplete (the stream ended in the middle of it): it was dropped",
    'the event stream ended without an "end" record (the program exited abruptly): ' +
    "open slices were closed at the last timestamp",
  ];
  assert.deepEqual(summary.warnings, expected);
  assert.deepEqual(warned, expected);
  assert.equal(summary.complete, false);
  assert.equal(summary.unfinished, 3);
  assert.deepEqual(slices(trace), [
    ["<module>", 1, 0, 4],
    ["ticker", 1, 1, 1, "0x1", false, true],
    ["ticker", 1, 3, 1, "0x1", true, false],
    ["os._exit", 1, 4, 0],
  ]);
  const unfinished = trace.traceEvents.filter((event) => event.args?.unfinished === true);
  assert.deepEqual(unfinished.map((event) => event.name).sort(), [
    "<module>",
    "os._exit",
    "ticker",
  ]);
  assert.equal(trace.otherData.complete, false);
});

Deno.test("convert rejects a malformed stream, naming the line, and aborts the output", async () => {
  let aborted: unknown;
  let cancelled: unknown;
  const bytes = await fixture("malformed.ndjson");
  const input = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(bytes);
    },
    cancel(reason) {
      cancelled = reason;
    },
  });
  const output = new WritableStream<Uint8Array>({
    abort(reason) {
      aborted = reason;
    },
  });
  await assert.rejects(() => convert(input, output), (error) => {
    assert.ok(error instanceof ProtocolError);
    assert.equal(error.line, 4);
    assert.match(error.message, /^line 4: expected a JSON object, got text that is not JSON \(/);
    return true;
  });
  assert.ok(aborted instanceof ProtocolError);
  assert.ok(cancelled instanceof ProtocolError);
});

Deno.test("convert rejects streams that break the protocol", async (t) => {
  const hello =
    '{"kind":"hello","protocol":1,"pid":1,"python":"3.12.1","engine":"setprofile","t0":0,"main_thread":1,"argv":[]}';
  const cases: { name: string; text: string; message: string }[] = [
    {
      name: "an empty stream",
      text: "",
      message:
        'line 1: expected a "hello" record, got the end of the stream (the collector sent nothing)',
    },
    {
      name: "a stream of blank lines",
      text: "\n\n",
      message:
        'line 1: expected a "hello" record, got the end of the stream (the collector sent nothing)',
    },
    {
      name: "a first record that is not hello",
      text: '\n{"kind":"events","events":[]}\n',
      message: 'line 2: expected a "hello" record first, got "events"',
    },
    {
      name: "a newer protocol",
      text: `${hello.replace('"protocol":1', '"protocol":5')}\n`,
      message:
        "line 1: the stream speaks protocol 5 but this converter understands up to 4: upgrade panopticon",
    },
    {
      name: "packed events that are not base64",
      text: `${hello}\n\n{"kind":"events","packed":"W$=="}\n`,
      message:
        'line 3: expected "packed" to be base64 in an "events" record (Found a character that cannot be part of a valid base64 string.)',
    },
    {
      name: "packed events cut short",
      text: `${hello}\n{"kind":"events","packed":"WwEAAAAoBQAAAGkAAAAAaeEiAgBp6AMAAGkAAAAA"}\n`,
      message: 'line 2: the "packed" events are malformed: the list claims 1 items but only ' +
        "30 bytes were sent (truncated?)",
    },
    {
      name: "an unknown kind",
      text: `${hello}\n{"kind":"sample"}\n`,
      message:
        'line 2: unknown record kind "sample": expected hello, thread, code, cfunc, mark, events, batch, limit, flush, end, exception, values, gc or cpu',
    },
    {
      name: "a missing field",
      text: `${hello}\n{"kind":"flush","thread":1,"start":1,"end":2}\n`,
      message: 'line 2: expected an integer "events" in a "flush" record',
    },
    {
      // Found by tests/fuzz_test.ts: this looped forever.
      name: "JSON events with a timestamp of 1e400",
      text: `${hello}\n{"kind":"events","events":[[5,1,2,0,1],[6,1,1e400,0,1]]}\n`,
      message:
        'line 2: expected event 2 of an "events" record to be [op, thread, ts, frame, ref], ' +
        "five integers below 2^63 with op 0 to 12, 14 or 16 to 21 (six, with the thread time, for ops 0 to 7), got [6,1,Infinity,0,1]",
    },
    {
      // Found by tests/fuzz_test.ts: this wrote `"ident":Infinity`, which is not JSON.
      name: "JSON events on thread 1e400",
      text: `${hello}\n{"kind":"events","events":[[5,1e400,2,0,1]]}\n`,
      message:
        'line 2: expected event 1 of an "events" record to be [op, thread, ts, frame, ref], ' +
        "five integers below 2^63 with op 0 to 12, 14 or 16 to 21 (six, with the thread time, for ops 0 to 7), got [5,Infinity,2,0,1]",
    },
  ];
  for (const { name, text, message } of cases) {
    await t.step(name, async () => {
      await assert.rejects(
        () => convertChunks([new TextEncoder().encode(text)]),
        (error) => {
          assert.ok(error instanceof ProtocolError);
          assert.equal(error.message, message);
          return true;
        },
      );
    });
  }
});

Deno.test("convert checks the run's secret", async (t) => {
  const text = new TextDecoder().decode(await fixture("generator.ndjson"));
  const withSecret = (secret: string) => text.replace('"argv"', `"secret":"${secret}","argv"`);
  const cases: { name: string; text: string; secret?: string; ok: boolean }[] = [
    { name: "the right secret", text: withSecret("t0k3n"), secret: "t0k3n", ok: true },
    { name: "a wrong secret", text: withSecret("guess"), secret: "t0k3n", ok: false },
    { name: "no secret in the stream", text, secret: "t0k3n", ok: false },
    { name: "an empty secret expected", text: withSecret("x"), secret: "", ok: false },
    { name: "no secret expected", text: withSecret("anything"), ok: true },
  ];
  for (const { name, text, secret, ok } of cases) {
    await t.step(name, async () => {
      const run = () => convertChunks([new TextEncoder().encode(text)], { secret });
      if (ok) {
        assert.equal((await run()).summary.complete, true);
      } else {
        await assert.rejects(run, (error) => {
          assert.ok(error instanceof ProtocolError);
          assert.equal(error.message, "line 1: the event stream did not present this run's secret");
          return true;
        });
      }
    });
  }
});

Deno.test("convert writes the same trace whatever the chunk boundaries", async (t) => {
  for (const name of ["threads.ndjson", "threads_v1.ndjson", "truncated.ndjson"]) {
    await t.step(name, async () => {
      const bytes = await fixture(name);
      const reference = (await convertChunks([bytes])).text;
      for (let at = 1; at < bytes.length; at++) {
        const { text } = await convertChunks([bytes.slice(0, at), bytes.slice(at)]);
        assert.equal(text, reference, `split at byte ${at}`);
      }
      const { text } = await convertChunks(Array.from(bytes, (byte) => Uint8Array.of(byte)));
      assert.equal(text, reference, "one byte per chunk");
    });
  }
});

Deno.test("convert reads no faster than its output is written", async () => {
  const encoder = new TextEncoder();
  const head = encoder.encode(
    '{"kind":"hello","protocol":1,"pid":1,"python":"3.12.1","engine":"setprofile","t0":0,"main_thread":1,"argv":[]}\n' +
      '{"kind":"code","id":1,"module":"__main__","qualname":"f","file":"f.py","line":1,"type":"function"}\n',
  );
  const batches = 200;
  let pulls = 0;
  const input = new ReadableStream<Uint8Array>({
    pull(controller) {
      pulls++;
      if (pulls === 1) return controller.enqueue(head);
      if (pulls > batches + 1) return controller.close();
      const base = pulls * 10_000;
      const events = Array.from(
        { length: 1000 },
        (_, i) => `[${i % 2 === 0 ? 0 : 2},1,${base + i},0,1]`,
      );
      controller.enqueue(encoder.encode(`{"kind":"events","events":[${events.join(",")}]}\n`));
    },
  }, { highWaterMark: 0 });
  let release = () => {};
  const gate = new Promise<void>((resolve) => release = resolve);
  const output = new WritableStream<Uint8Array>({
    async write() {
      await gate;
    },
  });
  const conversion = convert(input, output);
  await new Promise((resolve) => setTimeout(resolve, 100));
  // The output is blocked: only a few batches may be read ahead.
  assert.ok(pulls < 10, `${pulls} batches were read while the output was blocked`);
  release();
  const summary = await conversion;
  assert.equal(summary.events, batches * 1000);
  assert.equal(summary.slices, batches * 500);
});

async function records(name: string): Promise<ProtocolRecord[]> {
  return await Array.fromAsync(
    ReadableStream.from([await fixture(name)]).pipeThrough(decodeNdjson()),
  );
}

Deno.test("toCatapult converts bytes, record streams and async iterables alike", async (t) => {
  const bytes = await fixture("threads.ndjson");
  const reference = (await convertChunks([bytes])).text;
  const decoded = await records("threads.ndjson");
  const cases: { name: string; input: () => Parameters<typeof toCatapult>[0] }[] = [
    {
      name: "a byte stream",
      input: () => ReadableStream.from([bytes.slice(0, 100), bytes.slice(100)]),
    },
    { name: "a record stream", input: () => ReadableStream.from(decoded) },
    {
      name: "an async iterable of records",
      input: () =>
        (async function* () {
          yield* decoded;
        })(),
    },
  ];
  for (const { name, input } of cases) {
    await t.step(name, async () => {
      const text = (await Array.fromAsync(toCatapult(input()))).join("");
      assert.equal(text, reference);
    });
  }
});

Deno.test("toCatapult errors its stream on a broken input", async (t) => {
  const malformed = await fixture("malformed.ndjson");
  const hello: ProtocolRecord = {
    kind: "hello",
    protocol: 1,
    pid: 1,
    python: "3.12.1",
    engine: "monitoring",
    t0: 0,
    main_thread: 1,
    argv: [],
  };
  const cases: {
    name: string;
    input: () => Parameters<typeof toCatapult>[0];
    options?: ConvertOptions;
    error: RegExp;
  }[] = [
    {
      name: "malformed bytes",
      input: () => ReadableStream.from([malformed]),
      error: /ProtocolError: line 4: expected a JSON object/,
    },
    {
      name: "a malformed record",
      input: () =>
        ReadableStream.from(
          [hello, { kind: "events", events: [[13, 1, 2, 3, 4]] }] as ProtocolRecord[],
        ),
      error: /ProtocolError: line 2: expected event 1 of an "events" record/,
    },
    {
      name: "a wrong secret",
      input: () => ReadableStream.from([hello]),
      options: { secret: "s" },
      error: /ProtocolError: line 1: the event stream did not present this run's secret$/,
    },
    {
      name: "JSON events with an infinite timestamp",
      input: () =>
        ReadableStream.from(
          [hello, {
            kind: "events",
            events: [[5, 1, 2, 0, 1], [6, 1, Infinity, 0, 1]],
          }] as ProtocolRecord[],
        ),
      error:
        /ProtocolError: line 2: expected event 2 of an "events" record .* got \[6,1,Infinity,0,1\]$/,
    },
    {
      name: "bytes and records mixed",
      input: () =>
        ReadableStream.from<Uint8Array | ProtocolRecord>([
          hello,
          new Uint8Array(1),
        ]) as ReadableStream<ProtocolRecord>,
      error: /mixes bytes and records/,
    },
  ];
  for (const { name, input, options, error } of cases) {
    await t.step(name, async () => {
      await assert.rejects(() => Array.fromAsync(toCatapult(input(), options)), error);
    });
  }
});

Deno.test("toCatapult errors its stream on a bad maxDepth, leaving the input untouched", async () => {
  // Found by tests/fuzz_test.ts: the option was refused before the output
  // was locked, and nothing errored the returned stream, so a reader waited
  // forever.
  const input = ReadableStream.from([await fixture("generator.ndjson")]);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error("the stream neither ended nor errored")), 2000);
  });
  try {
    await assert.rejects(
      () => Promise.race([Array.fromAsync(toCatapult(input, { maxDepth: 0 })), hang]),
      new RangeError("maxDepth must be a positive integer or Infinity, got 0"),
    );
  } finally {
    clearTimeout(timer);
  }
  assert.equal(input.locked, false);
});

Deno.test("toCatapult cancels its input when its output is cancelled", async () => {
  let cancelled: unknown;
  const encoder = new TextEncoder();
  let pulls = 0;
  // A valid stream that never ends.
  const input = new ReadableStream<Uint8Array>({
    pull(controller) {
      controller.enqueue(encoder.encode(
        pulls++ === 0
          ? '{"kind":"hello","protocol":1,"pid":1,"python":"3.12.1","engine":"monitoring","t0":0,"main_thread":1,"argv":[]}\n'
          : '{"kind":"events","events":[]}\n',
      ));
    },
    cancel(reason) {
      cancelled = reason ?? "cancelled";
    },
  });
  const output = toCatapult(input);
  const reader = output.getReader();
  await reader.cancel("enough");
  // The cancellation reaches the input on the conversion's next turn.
  for (let i = 0; i < 50 && cancelled === undefined; i++) {
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  assert.notEqual(cancelled, undefined);
  assert.ok(!(cancelled instanceof ProtocolError), `cancelled by ${cancelled}`);
  assert.ok(pulls > 1);
});

Deno.test("convert hands a tee sink what it writes, as it writes it", async () => {
  const seen: string[] = [];
  let finished: boolean | undefined;
  const { trace } = await convertChunks([await fixture("generator.ndjson")], {
    tee: {
      process: (process) => seen.push(`process ${process.pid}`),
      thread: (thread) => seen.push(`thread ${thread.tid} ${thread.name}`),
      slice: (slice) => seen.push(`slice ${slice.site.name} ${slice.start}+${slice.duration}`),
      finish: (summary) => finished = summary.complete,
    },
  });
  const written = trace.traceEvents.filter((e) => e.ph === "X")
    .map((e) => `slice ${e.name} ${e.ts}+${e.dur}`);
  assert.deepEqual(seen.filter((line) => line.startsWith("slice")), written);
  assert.deepEqual(seen.slice(0, 2), ["process 4242", "thread 1 MainThread"]);
  assert.equal(finished, true);
});
