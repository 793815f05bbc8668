import assert from "node:assert/strict";
import { FrameStateMachine } from "../src/frames.ts";
import type { ProtocolEvent, ProtocolRecord } from "../src/protocol.ts";
import {
  type FunctionSummary,
  sortFunctions,
  type SummaryOptions,
  type SummaryReport,
  SummarySink,
  type TaskSummary,
} from "../src/summary.ts";
import { toCatapult, toPerfetto } from "../src/convert.ts";
import { summarizeTrace } from "../src/trace_reader.ts";
import type { Slice, TraceSink } from "../src/trace_model.ts";
import { formatSummary } from "../src/summary_text.ts";
import { randomStream } from "./_streams.ts";
import { byKey, type Kept, reference } from "./_summary_reference.ts";

/** Runs `records` through the frame-state machine into a summary sink, keeping the slices too. */
function run(records: ProtocolRecord[], options: SummaryOptions = {}) {
  const summary = new SummarySink(options);
  const slices: Kept[] = [];
  const threads = new Map<number, string>();
  const keeper: TraceSink = {
    process: (process) => summary.process(process),
    thread: (thread) => {
      threads.set(thread.tid, thread.name);
      summary.thread(thread);
    },
    slice: (slice: Slice) => {
      const start = Math.round(slice.start * 1000);
      slices.push({
        tid: slice.tid,
        start,
        end: start + Math.round(slice.duration * 1000),
        name: slice.site.name,
        category: slice.site.category,
        file: slice.site.file,
        line: slice.site.line,
        flow: slice.flow,
        flowIn: slice.flowIn,
        unfinished: slice.args?.["unfinished"] === true,
      });
      summary.slice(slice);
    },
    mark: (mark) => summary.mark(mark),
    finish: (result) => summary.finish(result),
  };
  const machine = new FrameStateMachine(keeper);
  records.forEach((record, i) => machine.push(record, i + 1));
  machine.end();
  return { report: summary.report(), slices, threads };
}

Deno.test("SummarySink agrees with a plain computation on random streams", async (t) => {
  for (const seed of [1, 2, 3, 4, 5, 6, 7, 8, 20, 21]) {
    for (const memoryRecords of [262144, 0]) {
      const where = memoryRecords === 0 ? "in a temporary file" : "in memory";
      await t.step(`seed ${seed}, 4,000 events, records ${where}`, () => {
        const { report, slices } = run(randomStream(seed, 4000), { memoryRecords });
        assert.ok(slices.length > 1000);
        assert.deepEqual(byKey(report), reference(slices));
        assert.equal(report.run.slices, slices.length);
        assert.equal(report.run.unfinished, slices.filter((s) => s.unfinished).length);
      });
    }
  }
  await t.step("seed 9, one thread of a worker's name", () => {
    const { report, slices, threads } = run(randomStream(9, 4000), { thread: "worker-2" });
    const tids = new Set([...threads].filter(([, name]) => name === "worker-2").map(([t]) => t));
    assert.equal(report.thread, "worker-2");
    assert.deepEqual(byKey(report), reference(slices, tids));
  });
});

/** A stream with codes 1 (`main`), 2 (`gen`, a generator), 3 (`fib`) and C function 1 (`len`). */
function stream(events: ProtocolEvent[], end = true): ProtocolRecord[] {
  return [
    {
      kind: "hello",
      protocol: 2,
      pid: 9,
      python: "3.11.4",
      engine: "setprofile",
      t0: 0,
      main_thread: 1,
      argv: ["a.py", "x"],
    },
    { kind: "thread", thread: 1, native_id: 9, name: "MainThread" },
    { kind: "thread", thread: 2, native_id: 10, name: "worker" },
    {
      kind: "code",
      id: 1,
      module: "__main__",
      qualname: "main",
      file: "a.py",
      line: 1,
      type: "function",
    },
    {
      kind: "code",
      id: 2,
      module: "__main__",
      qualname: "gen",
      file: "a.py",
      line: 5,
      type: "generator",
    },
    {
      kind: "code",
      id: 3,
      module: "__main__",
      qualname: "fib",
      file: "a.py",
      line: 9,
      type: "function",
    },
    { kind: "cfunc", id: 1, name: "len" },
    { kind: "events", events },
    ...(end
      ? [{ kind: "end", ts: 100_000, events: events.length, dropped: 0, reason: "exit" } as const]
      : []),
  ];
}

function figures(report: SummaryReport, name: string): FunctionSummary {
  const found = report.functions.find((f) => f.name === name);
  assert.ok(found, `no function ${name}`);
  return found;
}

Deno.test("SummarySink counts calls, total and self time as cProfile does", async (t) => {
  await t.step("nested calls and a C call", () => {
    const { report } = run(stream([
      [0, 1, 0, 0, 1], // main
      [0, 1, 1000, 0, 3], // fib
      [5, 1, 2000, 0, 1], // len
      [6, 1, 2500, 0, 0],
      [2, 1, 4000, 0, 3],
      [0, 1, 5000, 0, 3], // fib again
      [2, 1, 6000, 0, 3],
      [2, 1, 10_000, 0, 1],
    ]));
    assert.deepEqual(
      [
        figures(report, "main").calls,
        figures(report, "main").totalNs,
        figures(report, "main").selfNs,
      ],
      [1, 10_000, 6000],
    );
    const fib = figures(report, "fib");
    assert.deepEqual([fib.calls, fib.totalNs, fib.selfNs, fib.meanNs, fib.maxNs], [
      2,
      4000,
      3500,
      2000,
      3000,
    ]);
    assert.deepEqual([figures(report, "len").kind, figures(report, "len").selfNs], [
      "c_function",
      500,
    ]);
    assert.equal(figures(report, "len").file, undefined);
    assert.deepEqual([fib.file, fib.line], ["a.py", 9]);
  });

  await t.step("recursion counts every call but the time once", () => {
    const { report } = run(stream([
      [0, 1, 0, 0, 3],
      [0, 1, 1000, 0, 3],
      [0, 1, 2000, 0, 3],
      [2, 1, 3000, 0, 3],
      [2, 1, 4000, 0, 3],
      [2, 1, 8000, 0, 3],
    ]));
    const fib = figures(report, "fib");
    assert.deepEqual([fib.calls, fib.totalNs, fib.selfNs, fib.maxNs], [3, 8000, 8000, 8000]);
  });

  await t.step("a generator's slice held past its caller's return", () => {
    // main calls next(gen) and returns; the generator resumes later, at
    // the top level: its first slice reaches the sink after main's.
    const { report, slices } = run(stream([
      [0, 1, 0, 0, 1],
      [0, 1, 1000, 0x70, 2],
      [4, 1, 3000, 0x70, 2],
      [2, 1, 4000, 0, 1],
      [1, 1, 6000, 0x70, 2],
      [2, 1, 7000, 0x70, 2],
    ]));
    assert.deepEqual(slices.map((s) => s.name), ["main", "gen", "gen"]);
    assert.deepEqual([figures(report, "main").totalNs, figures(report, "main").selfNs], [
      4000,
      2000,
    ]);
    const gen = figures(report, "gen");
    assert.deepEqual(
      [gen.calls, gen.slices, gen.maxSlices, gen.ranNs, gen.livedNs, gen.selfNs, gen.totalNs],
      [1, 2, 2, 3000, 6000, 3000, 3000],
    );
  });

  await t.step("a generator resumed on another thread is one instance", () => {
    const { report } = run(stream([
      [0, 1, 0, 0x70, 2],
      [4, 1, 1000, 0x70, 2],
      [0, 2, 2000, 0, 1],
      [1, 2, 3000, 0x70, 2],
      [4, 2, 4000, 0x70, 2],
      [2, 2, 5000, 0, 1],
      [1, 1, 7000, 0x70, 2],
      [2, 1, 9000, 0x70, 2],
    ]));
    const gen = figures(report, "gen");
    assert.deepEqual([gen.calls, gen.slices, gen.ranNs, gen.livedNs], [1, 3, 4000, 9000]);
    assert.equal(figures(report, "main").selfNs, 2000);
  });

  await t.step("--thread: the slices of that thread, an instance across threads by its own", () => {
    const events: ProtocolEvent[] = [
      [0, 1, 0, 0x70, 2],
      [4, 1, 1000, 0x70, 2],
      [1, 2, 3000, 0x70, 2],
      [4, 2, 4000, 0x70, 2],
      [1, 1, 7000, 0x70, 2],
      [2, 1, 9000, 0x70, 2],
    ];
    const worker = run(stream(events), { thread: "worker" }).report;
    assert.deepEqual(worker.functions.map((f) => [f.name, f.calls, f.slices, f.livedNs]), [
      ["gen", 1, 1, 1000],
    ]);
    const main = run(stream(events), { thread: "MainThread" }).report;
    assert.deepEqual(main.functions.map((f) => [f.name, f.calls, f.slices, f.ranNs, f.livedNs]), [
      ["gen", 1, 2, 3000, 9000],
    ]);
    assert.throws(
      () => run(stream(events), { thread: "nobody" }),
      /no thread named "nobody": its threads are "MainThread", "worker"/,
    );
  });

  await t.step("frames open at the end are unfinished", () => {
    const { report } = run(
      stream([[0, 1, 0, 0, 1], [0, 1, 1000, 0, 3], [5, 1, 1500, 0, 1]], false),
    );
    assert.deepEqual(report.functions.map((f) => [f.name, f.unfinished]), [
      ["main", 1],
      ["fib", 1],
      ["len", 1],
    ]);
    assert.equal(report.run.unfinished, 3);
    assert.equal(report.run.complete, false);
  });

  await t.step("the collector's flushes are its own time, not a function's", () => {
    const { report } = run([
      ...stream([], false).slice(0, -1),
      { kind: "events", events: [[0, 1, 0, 0, 1]] },
      { kind: "flush", thread: 1, start: 2000, end: 3000, events: 1 },
      { kind: "events", events: [[2, 1, 5000, 0, 1]] },
      { kind: "end", ts: 6000, events: 2, dropped: 0, reason: "exit" },
    ]);
    assert.deepEqual(report.functions.map((f) => [f.name, f.totalNs, f.selfNs]), [
      ["main", 5000, 4000],
    ]);
    assert.deepEqual([report.run.flushes, report.run.collectorNs], [1, 1000]);
  });
});

Deno.test("SummarySink reports the run's facts", () => {
  const { report } = run(stream([[0, 1, 0, 0, 1], [2, 1, 5000, 0, 1]]));
  assert.deepEqual(report.run, {
    program: "python a.py x",
    pids: [9],
    python: "3.11.4",
    engine: "setprofile",
    durationNs: 5000,
    events: 2,
    complete: true,
    reason: "exit",
    dropped: 0,
    slices: 1,
    unfinished: 0,
    omittedSlices: 0,
    threads: [{ tid: 1, name: "MainThread", slices: 1 }, { tid: 2, name: "worker", slices: 0 }],
    collectorNs: 0,
    flushes: 0,
  });
});

Deno.test("sortFunctions() sorts the most first, ties by name", () => {
  const f = (name: string, calls: number, selfNs: number): FunctionSummary => ({
    name,
    kind: "function",
    calls,
    slices: calls,
    totalNs: selfNs,
    selfNs,
    meanNs: 0,
    maxNs: calls * 10,
    unfinished: 0,
  });
  const functions = [f("b", 1, 5), f("a", 3, 5), f("c", 2, 9)];
  sortFunctions(functions, "self");
  assert.deepEqual(functions.map((x) => x.name), ["c", "a", "b"]);
  sortFunctions(functions, "calls");
  assert.deepEqual(functions.map((x) => x.name), ["a", "c", "b"]);
  sortFunctions(functions, "max");
  assert.deepEqual(functions.map((x) => x.name), ["a", "c", "b"]);
});

Deno.test("SummarySink counts exceptions by type and place, apart from the calls", () => {
  const summary = new SummarySink();
  summary.thread({ tid: 1, name: "MainThread", ident: 1, nativeId: 1, pid: 9 });
  summary.thread({ tid: 2, name: "worker", ident: 2, nativeId: 2, pid: 9 });
  const main = { name: "main", category: "function", file: "a.py", line: 1 };
  const raise = { name: "raise ValueError", category: "exception" };
  const handler = { name: "swallowed ValueError", category: "exception" };
  const slice = (
    tid: number,
    site: Slice["site"],
    start: number,
    args?: Slice["args"],
    flow = 0,
  ): Slice => ({
    tid,
    site,
    start,
    duration: site === main ? 100 : 0,
    flow,
    flowIn: site === handler,
    flowOut: site === raise && flow !== 0,
    args,
  });
  const at = (line: number, more: Record<string, string | boolean> = {}) => ({
    type: "ValueError",
    message: "bad",
    file: "a.py",
    line,
    ...more,
  });
  // Swallowed twice at a.py:5 (once on each thread), caught once, one left to the top.
  summary.slice(slice(1, raise, 1, at(3, { caught: "a.py:5", swallowed: true }), 1));
  summary.slice(slice(1, handler, 2, { file: "a.py", line: 5, raised: "a.py:3" }, 1));
  summary.slice(slice(2, raise, 3, at(3, { caught: "a.py:5", swallowed: true }), 2));
  summary.slice(slice(1, raise, 4, at(3, { caught: "a.py:6", swallowed: false }), 3));
  summary.slice(slice(1, raise, 5, at(9)));
  summary.slice(slice(1, main, 0));
  summary.finish({
    events: 10,
    slices: 6,
    dropped: 0,
    threads: 2,
    complete: true,
    unfinished: 0,
    omittedSlices: 0,
  } as never);
  const report = summary.report();
  // The instants are no function, and no generator's instance.
  assert.deepEqual(report.functions.map((f) => f.name), ["main"]);
  assert.deepEqual(report.exceptions, [
    {
      type: "ValueError",
      raisedAt: "a.py:3",
      raised: 3,
      caught: 1,
      swallowed: 2,
      swallowedAt: ["a.py:5"],
    },
    { type: "ValueError", raisedAt: "a.py:9", raised: 1, caught: 0, swallowed: 0, swallowedAt: [] },
  ]);
  const text = formatSummary(report, { cwd: "/" });
  assert.match(text, /\nExceptions by how many were raised \(all 2\):\n/);
  assert.match(text, /\n {2}raised +caught +swallowed +exception +raised at +swallowed at\n/);
  assert.match(text, /\n +3 +1 +2 +ValueError +a\.py:3 +a\.py:5\n/);

  const worker = new SummarySink({ thread: "worker" });
  worker.thread({ tid: 1, name: "MainThread", ident: 1, nativeId: 1, pid: 9 });
  worker.thread({ tid: 2, name: "worker", ident: 2, nativeId: 2, pid: 9 });
  worker.slice(slice(1, raise, 1, at(3, { caught: "a.py:5", swallowed: true }), 1));
  worker.slice(slice(2, raise, 3, at(3, { caught: "a.py:5", swallowed: true }), 2));
  assert.deepEqual(worker.report().exceptions.map((e) => [e.raised, e.swallowed]), [[1, 1]]);
});

/**
 * asyncio tasks (issue 14), as the collector tells of them: `<module>`
 * creates task 1 (through asyncio's `create_task`), whose coroutine `main`
 * creates task 2, `fetch`, running `leaf`, which is cancelled; `main` returns.
 */
function taskRecords(): ProtocolRecord[] {
  const code = (id: number, module: string, qualname: string, line: number, type: string) => ({
    kind: "code" as const,
    id,
    module,
    qualname,
    file: module === "__main__" ? "a.py" : "base_events.py",
    line,
    type: type as "function",
  });
  const mark = (id: number, name: string, category: string, task?: number): ProtocolRecord => ({
    kind: "mark",
    id,
    name,
    category,
    args: task === undefined ? {} : { task },
  });
  const events: [number, number, number, number][] = [
    [0, 1000, 10, 4], // <module>
    [0, 1100, 11, 1], // create_task
    [8, 1200, 0, 1], // task 1 created
    [2, 1300, 11, 0],
    [0, 2000, 100, 2], // main: task 1's first step
    [8, 2100, 0, 2],
    [0, 2200, 12, 1], // create_task
    [8, 2300, 0, 5], // task 2 created
    [2, 2400, 12, 0],
    [4, 2500, 100, 0], // main waits
    [0, 3000, 200, 3], // leaf: task 2's first step
    [8, 3100, 0, 4],
    [4, 3500, 200, 0],
    [1, 4000, 100, 2], // main again
    [4, 4200, 100, 0],
    [1, 5000, 200, 3], // leaf, cancelled
    [8, 5100, 0, 3],
    [3, 5300, 200, 0],
    [1, 6000, 100, 2], // main returns
    [2, 6400, 100, 0],
    [2, 7000, 10, 0],
  ];
  return [
    {
      kind: "hello",
      protocol: 4,
      pid: 7,
      python: "3.13.0",
      engine: "monitoring",
      t0: 0,
      main_thread: 1,
      argv: ["a.py"],
      thread_ids: "serial",
      collector: "native",
    },
    code(1, "asyncio.base_events", "create_task", 1, "function"),
    code(2, "__main__", "main", 2, "coroutine"),
    code(3, "__main__", "leaf", 9, "coroutine"),
    code(4, "__main__", "<module>", 1, "function"),
    mark(1, "task created", "asyncio.created", 1),
    mark(2, "Task-1", "asyncio.task", 1),
    mark(3, "task cancelled", "asyncio.cancelled"),
    mark(4, "fetch", "asyncio.task", 2),
    mark(5, "task created", "asyncio.created", 2),
    {
      kind: "events",
      events: events.map(([op, ts, frame, ref]) => [op, 1, ts, frame, ref]) as never,
    },
    { kind: "end", ts: 7000, events: events.length, dropped: 0, reason: "exit" },
  ];
}

const TASKS: TaskSummary[] = [
  {
    name: "Task-1",
    coroutine: "main",
    createdBy: "<module>",
    createdAt: "a.py:1",
    lifetimeNs: 5200,
    ranNs: 1100,
    steps: 3,
    ended: "result",
  },
  {
    name: "fetch",
    coroutine: "leaf",
    createdBy: "main",
    createdAt: "a.py:2",
    lifetimeNs: 3000,
    ranNs: 800,
    steps: 2,
    ended: "cancelled",
  },
];

Deno.test("SummarySink sums up each asyncio task from its track", () => {
  const sink = new SummarySink();
  const machine = new FrameStateMachine(sink);
  for (const record of taskRecords()) machine.push(record);
  machine.end();
  const report = sink.report();
  // Who created a task: the innermost frame outside asyncio's own.
  assert.deepEqual(report.tasks, TASKS);
  // The arrows' ends are no function of the program.
  assert.equal(report.functions.find((f) => f.kind === "asyncio"), undefined);
});

Deno.test("summarizeTrace() reads the tasks back alike from JSON, gzipped JSON and protobuf", async (t) => {
  const records = taskRecords();
  const live = new SummarySink();
  const machine = new FrameStateMachine(live);
  for (const record of records) machine.push(record);
  machine.end();
  const expected = live.report();
  const json = (await Array.fromAsync(toCatapult(ReadableStream.from(records)))).join("");
  const gzipped = ReadableStream.from([new TextEncoder().encode(json)])
    .pipeThrough(new CompressionStream("gzip") as TransformStream<Uint8Array, Uint8Array>);
  const inputs: [string, () => ReadableStream<Uint8Array>][] = [
    ["JSON", () => ReadableStream.from([new TextEncoder().encode(json)])],
    ["gzipped JSON", () => gzipped],
    ["protobuf", () => toPerfetto(ReadableStream.from(records))],
  ];
  for (const [what, input] of inputs) {
    await t.step(what, async () => {
      const { report } = await summarizeTrace(input());
      assert.deepEqual(report.tasks, TASKS);
      // And the rest of the summary as the recording's: the arrows are no slices.
      assert.deepEqual(report.functions, expected.functions);
    });
  }
});

Deno.test("formatSummary() shows the tasks by time running, and none without", () => {
  const sink = new SummarySink();
  const machine = new FrameStateMachine(sink);
  for (const record of taskRecords()) machine.push(record);
  machine.end();
  const report = sink.report();
  const text = formatSummary(report, { cwd: "/nowhere" });
  const lines = text.split("\n");
  const at = lines.indexOf("Tasks by time running (all 2):");
  assert.ok(at > 0, text);
  assert.match(
    lines[at + 1]!,
    /^ +ran +lifetime +waited +steps +ended +task +coroutine +created by$/,
  );
  assert.match(
    lines[at + 2]!,
    /^ +1\.10 µs +5\.20 µs +79% +3 +result +Task-1 +main +<module> \(a\.py:1\)$/,
  );
  assert.match(
    lines[at + 3]!,
    /^ +800 ns +3\.00 µs +73% +2 +cancelled +fetch +leaf +main \(a\.py:2\)$/,
  );
  assert.match(formatSummary(report, { top: 1 }), /^Tasks by time running \(top 1 of 2\):$/m);
  const unseen = {
    ...report,
    tasks: [{ ...TASKS[1]!, createdBy: undefined, createdAt: undefined }],
  };
  delete unseen.tasks[0]!.createdBy;
  delete unseen.tasks[0]!.createdAt;
  assert.match(formatSummary(unseen), /cancelled +fetch +leaf +\(not seen\)$/m);
  assert.doesNotMatch(formatSummary({ ...report, tasks: [] }), /^Tasks/m);
});
