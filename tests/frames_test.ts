import assert from "node:assert/strict";
import {
  type CodeRecord,
  type CodeType,
  countingIds,
  FrameStateMachine,
  type FrameStateMachineOptions,
  type HelloRecord,
  type Mark,
  type ProcessInfo,
  ProtocolError,
  type ProtocolEvent,
  type ProtocolRecord,
  type Slice,
  type ThreadInfo,
  type TraceSink,
  type TraceSummary,
} from "../mod.ts";
import { marshalEvents, packEvents } from "./_packed.ts";
import { encodeBatch, nativeEvent } from "./_batch.ts";

/** A sink that keeps everything, slices rendered as short strings. */
class RecordingSink implements TraceSink {
  processes: ProcessInfo[] = [];
  threads: ThreadInfo[] = [];
  slices: string[] = [];
  /** The slices as objects, copied (the machine reuses its object). */
  raw: Slice[] = [];
  summaries: TraceSummary[] = [];

  process(process: ProcessInfo): void {
    this.processes.push(process);
  }
  thread(thread: ThreadInfo): void {
    this.threads.push({ ...thread });
  }
  slice(slice: Slice): void {
    this.raw.push({ ...slice });
    this.slices.push(show(slice));
  }
  finish(summary: TraceSummary): void {
    this.summaries.push(summary);
  }
}

/** `name tid:start-end`, then `flowN in out` and the args when present. */
function show(slice: Slice): string {
  let text = `${slice.site.name} ${slice.tid}:${slice.start}-${slice.start + slice.duration}`;
  if (slice.flow !== 0) {
    text += ` flow${slice.flow}${slice.flowIn ? " in" : ""}${slice.flowOut ? " out" : ""}`;
  }
  if (slice.args !== undefined) text += ` ${JSON.stringify(slice.args)}`;
  if (slice.childFlows !== undefined) text += ` to-child${slice.childFlows.join(",")}`;
  if (slice.parentFlow) text += ` from-parent${slice.parentFlow}`;
  return text;
}

const HELLO: HelloRecord = {
  kind: "hello",
  protocol: 2,
  pid: 4242,
  python: "3.12.1",
  engine: "monitoring",
  t0: 0,
  main_thread: 1,
  argv: ["prog.py", "--flag"],
};

function code(
  id: number,
  qualname: string,
  type: CodeType = "function",
  module = "__main__",
): CodeRecord {
  return { kind: "code", id, module, qualname, file: "prog.py", line: id * 10, type };
}

/** The code and C functions every case below may use. */
const DEFINITIONS: ProtocolRecord[] = [
  code(1, "<module>"),
  code(2, "numbers", "generator"),
  code(3, "outer"),
  code(4, "inner"),
  code(5, "main", "coroutine"),
  code(6, "ticks", "async_generator"),
  { kind: "cfunc", id: 1, name: "print" },
  { kind: "cfunc", id: 2, name: "time.sleep" },
];

function events(...list: ProtocolEvent[]): ProtocolRecord {
  return { kind: "events", events: list };
}

const END: ProtocolRecord = { kind: "end", ts: 0, events: 0, dropped: 0, reason: "exit" };

const HELLO_4: HelloRecord = { ...HELLO, protocol: 4 };

/** A `batch` record of `list` (times that never go back), counting from the first event's time. */
function batchOf(list: readonly ProtocolEvent[], thread = list[0]?.[1] ?? 1): ProtocolRecord {
  const { record, frame } = encodeBatch(list.map(nativeEvent), list[0]?.[2] ?? 0, thread);
  return { ...record, payload: frame };
}

/** An `events` record of `list` with `marshal` (protocol 4), and its frame. */
function marshalOf(list: readonly ProtocolEvent[]): ProtocolRecord {
  const payload = marshalEvents(list);
  return { kind: "events", marshal: payload.length, payload };
}

/** Runs hello, the definitions and `records` through a machine, then ends it. */
function run(
  records: ProtocolRecord[],
  hello: HelloRecord = HELLO,
  options: FrameStateMachineOptions = {},
) {
  const sink = new RecordingSink();
  const warnings: string[] = [];
  const machine = new FrameStateMachine(sink, {
    ...options,
    onWarning: (message) => warnings.push(message),
  });
  for (const record of [hello, ...DEFINITIONS, ...records]) machine.push(record);
  const summary = machine.end();
  return { sink, warnings, summary };
}

/** The slices rendered, in start order (ties by thread), for order-free comparison. */
function sorted(sink: RecordingSink): string[] {
  return sink.raw
    .map((slice, i) => ({ slice, text: sink.slices[i]! }))
    .sort((a, b) => a.slice.start - b.slice.start || a.slice.tid - b.slice.tid)
    .map(({ text }) => text);
}

Deno.test("FrameStateMachine turns events into slices as the protocol says", async (t) => {
  const cases: { name: string; events: ProtocolEvent[]; slices: string[] }[] = [
    {
      name: "nests calls and returns",
      events: [[0, 1, 1000, 0, 3], [0, 1, 2000, 0, 4], [2, 1, 3000, 0, 4], [2, 1, 4000, 0, 3]],
      slices: ["outer 1:1-4", "inner 1:2-3"],
    },
    {
      name: "nests frames sent with frame id 0 by the stack",
      events: [[0, 1, 1000, 0, 3], [0, 1, 2000, 0, 3], [2, 1, 3000, 0, 0], [3, 1, 4000, 0, 0]],
      slices: ["outer 1:1-4", "outer 1:2-3"],
    },
    {
      name: "joins the slices of a suspended generator with one flow",
      events: [
        [0, 1, 1000, 0, 1],
        [0, 1, 2000, 70, 2],
        [4, 1, 3000, 70, 0],
        [5, 1, 4000, 0, 1],
        [6, 1, 5000, 0, 0],
        [1, 1, 6000, 70, 2],
        [2, 1, 7000, 70, 0],
        [2, 1, 8000, 0, 0],
      ],
      slices: [
        "<module> 1:1-8",
        "numbers 1:2-3 flow1 out",
        "print 1:4-5",
        "numbers 1:6-7 flow1 in",
      ],
    },
    {
      name: "gives middle slices flows both ways",
      events: [
        [0, 1, 1000, 70, 2],
        [4, 1, 2000, 70, 2],
        [1, 1, 3000, 70, 2],
        [4, 1, 4000, 70, 2],
        [1, 1, 5000, 70, 2],
        [2, 1, 6000, 70, 2],
      ],
      slices: [
        "numbers 1:1-2 flow1 out",
        "numbers 1:3-4 flow1 in out",
        "numbers 1:5-6 flow1 in",
      ],
    },
    {
      name: "follows a generator resumed on another thread",
      events: [
        [0, 1, 1000, 70, 2],
        [4, 1, 2000, 70, 2],
        [1, 2, 3000, 70, 2],
        [4, 2, 4000, 70, 2],
        [1, 1, 5000, 70, 2],
        [2, 1, 6000, 70, 2],
      ],
      slices: [
        "numbers 1:1-2 flow1 out",
        "numbers 2:3-4 flow1 in out",
        "numbers 1:5-6 flow1 in",
      ],
    },
    {
      name: "retires a frame id at its final return",
      events: [
        [0, 1, 1000, 70, 2],
        [4, 1, 2000, 70, 2],
        [1, 1, 3000, 70, 2],
        [2, 1, 4000, 70, 2],
        [0, 1, 5000, 70, 2],
        [4, 1, 6000, 70, 2],
        [1, 1, 7000, 70, 2],
        [3, 1, 8000, 70, 2],
      ],
      slices: [
        "numbers 1:1-2 flow1 out",
        "numbers 1:3-4 flow1 in",
        "numbers 1:5-6 flow2 out",
        "numbers 1:7-8 flow2 in",
      ],
    },
    {
      name: "retires a suspended instance whose id is called again",
      events: [[0, 1, 1000, 70, 2], [4, 1, 2000, 70, 2], [0, 1, 3000, 70, 5], [2, 1, 4000, 70, 5]],
      slices: ["numbers 1:1-2", "main 1:3-4"],
    },
    {
      name: "keeps the newer of two instances suspended under one id",
      events: [
        [0, 1, 1000, 70, 2],
        [0, 2, 1500, 70, 5],
        [4, 2, 2000, 70, 5],
        [4, 1, 2500, 70, 2],
        [1, 1, 3000, 70, 2],
        [2, 1, 4000, 70, 2],
      ],
      slices: ["numbers 1:1-2.5 flow1 out", "main 2:1.5-2", "numbers 1:3-4 flow1 in"],
    },
    {
      name: "ends a generator that is closed",
      events: [[0, 1, 1000, 70, 2], [4, 1, 2000, 70, 2], [1, 1, 3000, 70, 2], [3, 1, 4000, 70, 0]],
      slices: ["numbers 1:1-2 flow1 out", "numbers 1:3-4 flow1 in"],
    },
    {
      name: "continues a generator that is thrown into and yields again",
      events: [
        [0, 1, 1000, 70, 2],
        [4, 1, 2000, 70, 2],
        [1, 1, 3000, 70, 2],
        [4, 1, 4000, 70, 2],
        [1, 1, 5000, 70, 2],
        [3, 1, 6000, 70, 2],
      ],
      slices: [
        "numbers 1:1-2 flow1 out",
        "numbers 1:3-4 flow1 in out",
        "numbers 1:5-6 flow1 in",
      ],
    },
    {
      name: "gives a generator that never suspends no flow",
      events: [[0, 1, 1000, 70, 2], [2, 1, 2000, 70, 2]],
      slices: ["numbers 1:1-2"],
    },
    {
      name: "gives a generator suspended and never resumed no flow",
      events: [[0, 1, 1000, 70, 2], [4, 1, 2000, 70, 2], [2, 1, 9000, 70, 2]],
      slices: ["numbers 1:1-2"],
    },
    {
      name: "joins coroutine and async generator slices",
      events: [
        [0, 1, 1000, 80, 5],
        [4, 1, 2000, 80, 5],
        [0, 1, 3000, 81, 6],
        [4, 1, 4000, 81, 6],
        [1, 1, 5000, 80, 5],
        [2, 1, 6000, 80, 5],
        [1, 1, 7000, 81, 6],
        [2, 1, 8000, 81, 6],
      ],
      slices: [
        "main 1:1-2 flow1 out",
        "ticks 1:3-4 flow2 out",
        "main 1:5-6 flow1 in",
        "ticks 1:7-8 flow2 in",
      ],
    },
    {
      name: "continues a suspended plain function without flows",
      events: [[0, 1, 1000, 90, 3], [4, 1, 2000, 90, 3], [1, 1, 3000, 90, 3], [2, 1, 4000, 90, 3]],
      slices: ["outer 1:1-2", "outer 1:3-4"],
    },
    {
      name: "resumes an unknown frame as an instance started before recording",
      events: [
        [1, 1, 1000, 80, 5],
        [4, 1, 2000, 80, 5],
        [1, 1, 3000, 80, 5],
        [2, 1, 4000, 80, 5],
        [1, 1, 5000, 81, 5],
        [2, 1, 6000, 81, 5],
      ],
      slices: ["main 1:1-2 flow1 out", "main 1:3-4 flow1 in", "main 1:5-6"],
    },
    {
      name: "closes the frames above an unbalanced return",
      events: [[0, 1, 1000, 10, 3], [0, 1, 2000, 11, 4], [5, 1, 3000, 0, 1], [2, 1, 5000, 10, 3]],
      slices: [
        "outer 1:1-5",
        'inner 1:2-5 {"unbalanced":true}',
        'print 1:3-5 {"unbalanced":true}',
      ],
    },
    {
      name: "closes a generator above a return of frame 0",
      events: [[0, 1, 1000, 0, 3], [0, 1, 2000, 70, 2], [2, 1, 3000, 0, 3]],
      slices: ["outer 1:1-3", 'numbers 1:2-3 {"unbalanced":true}'],
    },
    {
      name: "closes the frames above an unbalanced suspend",
      events: [[0, 1, 1000, 70, 2], [5, 1, 2000, 0, 1], [4, 1, 3000, 70, 2], [1, 1, 4000, 70, 2]],
      slices: [
        "numbers 1:1-3 flow1 out",
        'print 1:2-3 {"unbalanced":true}',
        'numbers 1:4-4 flow1 in {"unfinished":true}',
      ],
    },
    {
      name: "ignores ends of frames that are not open",
      events: [
        [2, 1, 1000, 99, 0],
        [4, 1, 2000, 98, 0],
        [3, 1, 3000, 0, 0],
        [6, 1, 4000, 0, 0],
        [0, 1, 5000, 0, 3],
        [6, 1, 6000, 0, 1],
        [7, 1, 6500, 0, 1],
        [2, 1, 7000, 0, 3],
      ],
      slices: ["outer 1:5-7"],
    },
    {
      name: "ignores the end of a frame open on another thread",
      events: [[0, 1, 1000, 70, 2], [2, 2, 2000, 70, 2], [2, 1, 3000, 70, 2]],
      slices: ["numbers 1:1-3"],
    },
    {
      name: "pairs C calls with their returns and raises",
      events: [[5, 1, 1000, 0, 1], [5, 1, 2000, 0, 2], [7, 1, 3000, 0, 2], [6, 1, 4000, 0, 1]],
      slices: ["print 1:1-4", "time.sleep 1:2-3"],
    },
    {
      name: "nests Python frames called from C",
      events: [[5, 1, 1000, 0, 1], [0, 1, 2000, 0, 4], [2, 1, 3000, 0, 4], [6, 1, 4000, 0, 1]],
      slices: ["print 1:1-4", "inner 1:2-3"],
    },
  ];
  for (const { name, events: list, slices } of cases) {
    await t.step(name, () => {
      const { sink } = run([events(...list)]);
      assert.deepEqual(sorted(sink), slices);
      // The same events in a native batch (protocol 4), where they fit one.
      if (list.every((event, i) => i === 0 || event[2] >= list[i - 1]![2])) {
        const batch = run([batchOf(list)], HELLO_4);
        assert.deepEqual(sorted(batch.sink), slices, "from a batch frame");
        assert.deepEqual(batch.sink.slices, sink.slices, "from a batch frame, in order");
      }
    });
  }
});

Deno.test("FrameStateMachine reads packed, marshal and batch events as it reads JSON events", async (t) => {
  const list: ProtocolEvent[] = [
    [0, 1, 1000, 0, 1],
    [0, 1, 2000, 140245060931392, 2],
    [4, 1, 3000, 140245060931392, 2],
    [5, 140245061072704, 4000, 0, 1],
    [6, 140245061072704, 5000, 0, 1],
    [1, 1, 6000, 140245060931392, 2],
    [2, 1, 7000, 140245060931392, 0],
    [2, 1, 1_718_034_712_345_678, 0, 0],
  ];
  const json = run([events(...list)]);
  const cases: { name: string; records: ProtocolRecord[] }[] = [
    { name: "one batch", records: [{ kind: "events", packed: packEvents(list) }] },
    {
      name: "a batch per event, with empty batches",
      records: list.flatMap((event) => [
        { kind: "events", packed: packEvents([event]) },
        { kind: "events", packed: packEvents([]) },
      ]),
    },
    {
      name: "packed and JSON batches mixed",
      records: [
        { kind: "events", packed: packEvents(list.slice(0, 3)) },
        events(...list.slice(3, 5)),
        { kind: "events", packed: packEvents(list.slice(5)) },
      ],
    },
  ];
  for (const { name, records } of cases) {
    await t.step(name, () => {
      const packed = run(records);
      assert.deepEqual(packed.sink.slices, json.sink.slices);
      assert.deepEqual(packed.sink.threads, json.sink.threads);
      assert.equal(packed.summary.events, list.length);
    });
  }
  const binary: { name: string; records: ProtocolRecord[] }[] = [
    { name: "marshal frames (protocol 4)", records: [marshalOf(list)] },
    {
      name: "batch frames (protocol 4), one an event, with empty ones",
      records: list.flatMap((event) => [batchOf([event]), batchOf([])]),
    },
    {
      name: "batch, marshal, packed and JSON mixed",
      records: [
        batchOf(list.slice(0, 2)),
        marshalOf(list.slice(2, 3)),
        events(...list.slice(3, 5)),
        { kind: "events", packed: packEvents(list.slice(5, 6)) },
        batchOf(list.slice(6)),
      ],
    },
  ];
  for (const { name, records } of binary) {
    await t.step(name, () => {
      const framed = run(records, HELLO_4);
      assert.deepEqual(framed.sink.slices, json.sink.slices);
      assert.deepEqual(framed.sink.threads, json.sink.threads);
      assert.equal(framed.summary.events, list.length);
    });
  }
  await t.step("one batch of every event", () => {
    const framed = run([batchOf(list, 1)], HELLO_4);
    assert.deepEqual(framed.sink.slices, json.sink.slices);
  });
  await t.step("of protocol 1", () => {
    const old = run([events(...list)], { ...HELLO, protocol: 1 });
    assert.deepEqual(old.sink.slices, json.sink.slices);
    assert.equal(old.summary.protocol, 1);
  });
});

Deno.test("FrameStateMachine leaves out slices deeper than maxDepth", async (t) => {
  const cases: {
    name: string;
    maxDepth: number;
    events: ProtocolEvent[];
    slices: string[];
    omitted: number;
  }[] = [
    {
      name: "keeps every slice at or above the limit",
      maxDepth: 2,
      events: [
        [0, 1, 1000, 0, 3], // outer, depth 1
        [0, 1, 2000, 0, 4], // inner, depth 2
        [0, 1, 3000, 0, 4], // inner, depth 3
        [0, 1, 3500, 0, 4], // inner, depth 4
        [2, 1, 3600, 0, 4],
        [2, 1, 4000, 0, 4],
        [2, 1, 5000, 0, 4],
        [0, 1, 6000, 0, 4], // inner, depth 2 again
        [2, 1, 7000, 0, 4],
        [2, 1, 8000, 0, 3],
      ],
      slices: ["outer 1:1-8", "inner 1:2-5", "inner 1:6-7"],
      omitted: 2,
    },
    {
      name: "counts a C call as a level",
      maxDepth: 2,
      events: [
        [0, 1, 1000, 0, 3],
        [5, 1, 2000, 0, 1], // print, depth 2
        [0, 1, 3000, 0, 4], // inner called from C, depth 3
        [2, 1, 4000, 0, 4],
        [6, 1, 5000, 0, 1],
        [2, 1, 6000, 0, 3],
      ],
      slices: ["outer 1:1-6", "print 1:2-5"],
      omitted: 1,
    },
    {
      name: "counts each thread's stack on its own",
      maxDepth: 1,
      events: [
        [0, 1, 1000, 0, 3],
        [0, 2, 2000, 0, 4],
        [0, 1, 3000, 0, 4],
        [2, 1, 4000, 0, 4],
        [2, 2, 5000, 0, 4],
        [2, 1, 6000, 0, 3],
      ],
      slices: ["outer 1:1-6", "inner 2:2-5"],
      omitted: 1,
    },
    {
      name: "keeps the flows of a generator whose slices are all kept",
      maxDepth: 2,
      events: [
        [0, 1, 1000, 0, 3],
        [0, 1, 2000, 70, 2],
        [4, 1, 3000, 70, 2],
        [1, 1, 4000, 70, 2],
        [2, 1, 5000, 70, 2],
        [2, 1, 6000, 0, 3],
      ],
      slices: ["outer 1:1-6", "numbers 1:2-3 flow1 out", "numbers 1:4-5 flow1 in"],
      omitted: 0,
    },
    {
      name: "writes no flow of a generator whose slices are all left out",
      maxDepth: 1,
      events: [
        [0, 1, 1000, 0, 3],
        [0, 1, 2000, 70, 2],
        [4, 1, 3000, 70, 2],
        [1, 1, 4000, 70, 2],
        [4, 1, 5000, 70, 2],
        [1, 1, 6000, 70, 2],
        [2, 1, 7000, 70, 2],
        [2, 1, 8000, 0, 3],
        [0, 1, 9000, 80, 5], // a later coroutine at depth 1 gets flow 1
        [4, 1, 9500, 80, 5],
        [1, 1, 10000, 80, 5],
        [2, 1, 10500, 80, 5],
      ],
      slices: ["outer 1:1-8", "main 1:9-9.5 flow1 out", "main 1:10-10.5 flow1 in"],
      omitted: 3,
    },
    {
      name: "writes no flow between a kept slice and a left-out one",
      maxDepth: 2,
      events: [
        [0, 1, 1000, 80, 5], // main, depth 1
        [4, 1, 2000, 80, 5],
        [0, 1, 2500, 0, 3], // outer, depth 1
        [0, 1, 2600, 0, 4], // inner, depth 2
        [1, 1, 3000, 80, 5], // main resumed at depth 3: left out
        [4, 1, 4000, 80, 5],
        [2, 1, 4500, 0, 4],
        [2, 1, 4600, 0, 3],
        [1, 1, 5000, 80, 5], // resumed at depth 1: kept, but no flow from depth 3
        [4, 1, 6000, 80, 5],
        [1, 1, 7000, 80, 5], // kept: a flow joins it to the one before
        [2, 1, 8000, 80, 5],
      ],
      slices: [
        "main 1:1-2",
        "outer 1:2.5-4.6",
        "inner 1:2.6-4.5",
        "main 1:5-6 flow1 out",
        "main 1:7-8 flow1 in",
      ],
      omitted: 1,
    },
    {
      name: "gives a chain broken by a left-out slice a new flow id",
      maxDepth: 1,
      events: [
        [0, 1, 1000, 80, 5],
        [4, 1, 2000, 80, 5],
        [1, 1, 3000, 80, 5],
        [4, 1, 4000, 80, 5],
        [0, 1, 4500, 0, 3],
        [1, 1, 5000, 80, 5], // depth 2: left out
        [4, 1, 6000, 80, 5],
        [2, 1, 6500, 0, 3],
        [1, 1, 7000, 80, 5],
        [4, 1, 8000, 80, 5],
        [1, 1, 9000, 80, 5],
        [2, 1, 10000, 80, 5],
      ],
      slices: [
        "main 1:1-2 flow1 out",
        "main 1:3-4 flow1 in",
        "outer 1:4.5-6.5",
        "main 1:7-8 flow2 out",
        "main 1:9-10 flow2 in",
      ],
      omitted: 1,
    },
    {
      name: "leaves out deep unbalanced and unfinished slices too",
      maxDepth: 1,
      events: [
        [0, 1, 1000, 10, 3],
        [0, 1, 2000, 11, 4],
        [2, 1, 3000, 10, 3], // closes inner, unbalanced
        [0, 1, 4000, 0, 3],
        [5, 1, 5000, 0, 1], // still open at the end
      ],
      slices: ["outer 1:1-3", 'outer 1:4-5 {"unfinished":true}'],
      omitted: 2,
    },
    {
      name: "leaves out nothing with an infinite limit",
      maxDepth: Infinity,
      events: [[0, 1, 1000, 0, 3], [0, 1, 2000, 0, 4], [2, 1, 3000, 0, 4], [2, 1, 4000, 0, 3]],
      slices: ["outer 1:1-4", "inner 1:2-3"],
      omitted: 0,
    },
  ];
  for (const { name, maxDepth, events: list, slices, omitted } of cases) {
    await t.step(name, () => {
      const { sink, summary } = run([events(...list)], HELLO, { maxDepth });
      assert.deepEqual(sorted(sink), slices);
      assert.equal(summary.omittedSlices, omitted);
      assert.equal(summary.slices, slices.length);
      assert.equal(summary.unfinished, slices.filter((s) => s.includes("unfinished")).length);
    });
  }
  await t.step("keeps the collector's flushes", () => {
    const { sink } = run(
      [
        events([0, 1, 1000, 0, 3], [0, 1, 2000, 0, 4]),
        { kind: "flush", thread: 1, start: 2500, end: 2600, events: 2 },
      ],
      HELLO,
      { maxDepth: 1 },
    );
    assert.deepEqual(sorted(sink), [
      'outer 1:1-2.6 {"unfinished":true}',
      'panopticon.flush 1:2.5-2.6 {"events":2}',
    ]);
  });
  for (const maxDepth of [0, -1, 1.5, NaN, -Infinity]) {
    await t.step(`rejects maxDepth ${maxDepth}`, () => {
      assert.throws(
        () => new FrameStateMachine(new RecordingSink(), { maxDepth }),
        (error) => {
          assert.ok(error instanceof RangeError);
          assert.equal(
            error.message,
            `maxDepth must be a positive integer or Infinity, got ${maxDepth}`,
          );
          return true;
        },
      );
    });
  }
});

Deno.test("FrameStateMachine closes what is open at the end at the last timestamp", async (t) => {
  const open = events(
    [0, 1, 1000, 0, 3],
    [0, 1, 2000, 70, 2],
    [4, 1, 3000, 70, 2],
    [0, 1, 4000, 0, 4],
    [5, 1, 5000, 0, 1],
    [0, 2, 5500, 0, 3],
  );
  const cases: { name: string; records: ProtocolRecord[]; last: number; complete: boolean }[] = [
    { name: "of a stream cut short", records: [open], last: 5.5, complete: false },
    {
      name: "of a stream cut short after a flush",
      records: [open, { kind: "flush", thread: 1, start: 8000, end: 9000, events: 6 }],
      last: 9,
      complete: false,
    },
    {
      name: "of a complete stream",
      records: [open, { ...END, ts: 12000, events: 6 } as ProtocolRecord],
      last: 12,
      complete: true,
    },
  ];
  for (const { name, records, last, complete } of cases) {
    await t.step(name, () => {
      const { sink, summary } = run(records);
      const unfinished = sorted(sink).filter((slice) => slice.endsWith('{"unfinished":true}'));
      assert.deepEqual(unfinished, [
        `outer 1:1-${last} {"unfinished":true}`,
        `inner 1:4-${last} {"unfinished":true}`,
        `print 1:5-${last} {"unfinished":true}`,
        `outer 2:5.5-${last} {"unfinished":true}`,
      ]);
      // The suspended generator's slice ended when it suspended.
      assert.ok(sink.slices.includes("numbers 1:2-3"));
      assert.equal(summary.unfinished, 4);
      assert.equal(summary.complete, complete);
      assert.equal(summary.duration, last);
    });
  }
});

Deno.test("FrameStateMachine emits each slice as it closes", () => {
  const sink = new RecordingSink();
  const machine = new FrameStateMachine(sink);
  for (const record of [HELLO, ...DEFINITIONS]) machine.push(record);
  machine.push(events([0, 1, 1000, 0, 3], [0, 1, 2000, 0, 4], [2, 1, 3000, 0, 4]));
  assert.deepEqual(sink.slices, ["inner 1:2-3"]);
  machine.push(events([2, 1, 4000, 0, 3]));
  assert.deepEqual(sink.slices, ["inner 1:2-3", "outer 1:1-4"]);
  assert.equal(sink.summaries.length, 0);
  machine.end();
  assert.equal(sink.summaries.length, 1);
});

Deno.test("FrameStateMachine holds nothing for frames that have ended", () => {
  // 10,000 generator chains on reused ids: once each has returned, the end
  // of the stream has nothing left to close or emit.
  const sink = new RecordingSink();
  const machine = new FrameStateMachine(sink);
  for (const record of [HELLO, ...DEFINITIONS]) machine.push(record);
  const list: ProtocolEvent[] = [];
  for (let i = 0; i < 10_000; i++) {
    const frame = 100 + (i % 7);
    const ts = i * 10;
    list.push([0, 1, ts, frame, 2], [4, 1, ts + 1, frame, 2], [1, 2, ts + 2, frame, 2]);
    list.push([2, 2, ts + 3, frame, 2]);
  }
  machine.push(events(...list));
  const before = sink.slices.length;
  const summary = machine.end();
  assert.equal(sink.slices.length, before);
  assert.equal(summary.slices, 20_000);
  assert.equal(summary.unfinished, 0);
  // A fresh flow id per instance, never the frame id.
  assert.equal(new Set(sink.raw.map((slice) => slice.flow)).size, 10_000);
  assert.equal(Math.max(...sink.raw.map((slice) => slice.flow)), 10_000);
});

Deno.test("FrameStateMachine names slices from their code", async (t) => {
  const cases: { module: string; qualname: string; type: CodeType; name: string }[] = [
    { module: "__main__", qualname: "gen_text", type: "generator", name: "gen_text" },
    { module: "__main__", qualname: "<module>", type: "function", name: "<module>" },
    {
      module: "asyncio.runners",
      qualname: "run",
      type: "function",
      name: "asyncio.runners.run",
    },
    {
      module: "threading",
      qualname: "Thread.run",
      type: "function",
      name: "threading.Thread.run",
    },
    {
      module: "pkg.mod",
      qualname: "outer.<locals>.inner",
      type: "coroutine",
      name: "pkg.mod.outer.<locals>.inner",
    },
    { module: "", qualname: "anonymous", type: "async_generator", name: "anonymous" },
  ];
  for (const { module, qualname, type, name } of cases) {
    await t.step(`${JSON.stringify(module)} ${qualname}`, () => {
      const { sink } = run([
        { kind: "code", id: 50, module, qualname, file: "m.py", line: 7, type },
        events([0, 1, 1000, 0, 50], [2, 1, 2000, 0, 50]),
      ]);
      assert.equal(sink.raw.length, 1);
      const { site } = sink.raw[0]!;
      assert.deepEqual(
        { name: site.name, category: site.category, file: site.file, line: site.line },
        { name, category: type, file: "m.py", line: 7 },
      );
    });
  }
  await t.step("C functions", () => {
    const { sink } = run([events([5, 1, 1000, 0, 2], [6, 1, 2000, 0, 2])]);
    const { site } = sink.raw[0]!;
    assert.deepEqual(
      { name: site.name, category: site.category, file: site.file, line: site.line },
      { name: "time.sleep", category: "c_function", file: undefined, line: undefined },
    );
  });
  await t.step("flushes", () => {
    const { sink } = run([{ kind: "flush", thread: 1, start: 1000, end: 1500, events: 3 }]);
    assert.deepEqual(sink.slices, ['panopticon.flush 1:1-1.5 {"events":3}']);
    assert.equal(sink.raw[0]!.site.category, "panopticon");
  });
});

Deno.test("FrameStateMachine converts nanoseconds to microseconds since t0", async (t) => {
  const cases: { t0: number; start: number; end: number; us: [number, number] }[] = [
    { t0: 0, start: 1000, end: 2000, us: [1, 1] },
    { t0: 1000, start: 1001, end: 1002, us: [0.001, 0.001] },
    {
      t0: 123_456_789_012_345,
      start: 123_456_789_013_579,
      end: 123_456_789_018_023,
      us: [1.234, 4.444],
    },
    { t0: 5000, start: 6500, end: 6400, us: [1.5, 0] },
  ];
  for (const { t0, start, end, us } of cases) {
    await t.step(`t0 ${t0}, ${start} to ${end}`, () => {
      const { sink } = run([events([0, 1, start, 0, 3], [2, 1, end, 0, 3])], { ...HELLO, t0 });
      const slice = sink.raw[0]!;
      assert.deepEqual([slice.start, slice.duration], us);
    });
  }
});

Deno.test("FrameStateMachine maps thread idents to dense threads", async (t) => {
  const thread = (ident: number, name: string, nativeId: number | null = null): ProtocolRecord => ({
    kind: "thread",
    thread: ident,
    native_id: nativeId,
    name,
  });
  const cases: {
    name: string;
    records: ProtocolRecord[];
    threads: string[];
    slices: string[];
  }[] = [
    {
      name: "names the main thread from its first thread record",
      records: [thread(1, "MainThread", 4242), events([0, 1, 1000, 0, 3], [2, 1, 2000, 0, 3])],
      threads: ["1 MainThread 1/4242"],
      slices: ["outer 1:1-2"],
    },
    {
      name: "numbers threads in order of first appearance, the main thread first",
      records: [
        events([0, 7, 1000, 0, 3], [0, 1, 1500, 0, 3], [0, 9, 2000, 0, 3]),
        events([2, 9, 3000, 0, 3], [2, 1, 3500, 0, 3], [2, 7, 4000, 0, 3]),
      ],
      threads: ["2 Thread 7 7/null", "1 MainThread 1/null", "3 Thread 9 9/null"],
      slices: ["outer 2:1-4", "outer 1:1.5-3.5", "outer 3:2-3"],
    },
    {
      name: "renames a thread that is inside a frame",
      records: [
        events([0, 7, 1000, 0, 3]),
        thread(7, "Thread-1 (work)", 77),
        events([2, 7, 2000, 0, 3]),
      ],
      threads: ["2 Thread 7 7/null", "2 Thread-1 (work) 7/77", "1 MainThread 1/null"],
      slices: ["outer 2:1-2"],
    },
    {
      name: "names a thread first seen through its events",
      records: [events([0, 7, 1000, 0, 3], [2, 7, 2000, 0, 3]), thread(7, "Worker", 77)],
      threads: ["2 Thread 7 7/null", "2 Worker 7/77", "1 MainThread 1/null"],
      slices: ["outer 2:1-2"],
    },
    {
      name: "starts a new thread when a named thread's ident is reused",
      records: [
        thread(7, "Thread-1", 71),
        events([0, 7, 1000, 0, 3], [2, 7, 2000, 0, 3]),
        thread(7, "Thread-2", 72),
        events([0, 7, 3000, 0, 4], [2, 7, 4000, 0, 4]),
        thread(1, "MainThread", 4242),
      ],
      threads: ["2 Thread-1 7/71", "3 Thread-2 7/72", "1 MainThread 1/4242"],
      slices: ["outer 2:1-2", "inner 3:3-4"],
    },
    {
      name: "starts a new main thread when its ident is reused after it was named",
      records: [
        thread(1, "MainThread", 4242),
        thread(1, "Thread-9", 4243),
        events([0, 1, 1000, 0, 3], [2, 1, 2000, 0, 3]),
      ],
      threads: ["1 MainThread 1/4242", "2 Thread-9 1/4243"],
      slices: ["outer 2:1-2"],
    },
    {
      name: "announces a thread that only flushed",
      records: [{ kind: "flush", thread: 5, start: 1000, end: 2000, events: 0 }],
      threads: ["2 Thread 5 5/null", "1 MainThread 1/null"],
      slices: ['panopticon.flush 2:1-2 {"events":0}'],
    },
    {
      name: "announces the main thread at the end even if it did nothing",
      records: [],
      threads: ["1 MainThread 1/null"],
      slices: [],
    },
  ];
  for (const { name, records, threads, slices } of cases) {
    await t.step(name, () => {
      const { sink, summary } = run(records);
      assert.deepEqual(
        sink.threads.map((info) => `${info.tid} ${info.name} ${info.ident}/${info.nativeId}`),
        threads,
      );
      assert.deepEqual(sorted(sink), slices);
      assert.equal(summary.threads, Math.max(...sink.threads.map((info) => info.tid)));
    });
  }
});

Deno.test("FrameStateMachine renames threads by their serial ids (protocol 4)", async (t) => {
  const serial: HelloRecord = { ...HELLO_4, thread_ids: "serial", main_thread: 1 };
  const thread = (id: number, name: string, ident?: number): ProtocolRecord => ({
    kind: "thread",
    thread: id,
    native_id: id === 1 ? 4242 : 4242 + id,
    name,
    ...(ident === undefined ? {} : { ident }),
  });
  const cases: { name: string; records: ProtocolRecord[]; threads: string[] }[] = [
    {
      name: "names the main thread, with its Python ident",
      records: [thread(1, "MainThread", 140001), events([0, 1, 1000, 0, 3], [2, 1, 2000, 0, 3])],
      threads: ["1 MainThread 140001/4242 #1"],
    },
    {
      name: "renames a named thread that is inside no frame, where idents would start anew",
      records: [
        thread(2, "Thread-1", 140002),
        events([0, 2, 1000, 0, 3], [2, 2, 2000, 0, 3]),
        thread(2, "renamed", 140002),
        events([0, 2, 3000, 0, 4], [2, 2, 4000, 0, 4]),
      ],
      threads: [
        "2 Thread-1 140002/4244 #2",
        "2 renamed 140002/4244 #2",
        "1 MainThread null/null #1",
      ],
    },
    {
      name: "names a thread first seen through its events; its ident is unknown till then",
      records: [events([0, 3, 1000, 0, 3], [2, 3, 2000, 0, 3]), thread(3, "Worker", 140003)],
      threads: [
        "2 Thread 3 null/null #3",
        "2 Worker 140003/4245 #3",
        "1 MainThread null/null #1",
      ],
    },
    {
      name: "keeps the ident of a thread renamed by a record without one",
      records: [thread(2, "Thread-1", 140002), thread(2, "renamed")],
      threads: [
        "2 Thread-1 140002/4244 #2",
        "2 renamed 140002/4244 #2",
        "1 MainThread null/null #1",
      ],
    },
    {
      name: "does not announce a record that changes nothing",
      records: [thread(2, "Thread-1", 140002), thread(2, "Thread-1", 140002)],
      threads: ["2 Thread-1 140002/4244 #2", "1 MainThread null/null #1"],
    },
  ];
  for (const { name, records, threads } of cases) {
    await t.step(name, () => {
      const { sink } = run(records, serial);
      assert.deepEqual(
        sink.threads.map((info) =>
          `${info.tid} ${info.name} ${info.ident}/${info.nativeId} #${info.serial}`
        ),
        threads,
      );
    });
  }
  await t.step("idents, the default, are not serial numbers", () => {
    const { sink } = run([thread(1, "MainThread", 5)], HELLO_4);
    assert.deepEqual(sink.threads, [{ tid: 1, name: "MainThread", ident: 1, nativeId: 4242 }]);
  });
});

Deno.test("FrameStateMachine marks where recording stopped at --max-events (protocol 4)", () => {
  const sink = new RecordingSink();
  const marks: Mark[] = [];
  const warnings: string[] = [];
  const machine = new FrameStateMachine(
    Object.assign(sink, { mark: (mark: Mark) => marks.push({ ...mark }) }),
    { onWarning: (message) => warnings.push(message) },
  );
  for (
    const record of [
      { ...HELLO_4, t0: 1000 },
      ...DEFINITIONS,
      events([0, 1, 1000, 0, 3], [0, 7, 1500, 0, 4], [0, 1, 2000, 0, 4]),
      { kind: "limit", ts: 1_234_568_000, events: 3, thread: 7 },
      { kind: "flush", thread: 1, start: 1_234_569_000, end: 1_234_570_000, events: 3 },
      { kind: "end", ts: 2_000_001_000, events: 3, dropped: 0, reason: "exit" },
    ] as ProtocolRecord[]
  ) {
    machine.push(record);
  }
  const summary = machine.end();
  assert.deepEqual(marks, [{
    kind: "instant",
    tid: 2,
    ts: 1234567,
    name: "recording stopped: --max-events reached",
    category: "panopticon",
    args: { events: 3 },
  }]);
  assert.deepEqual(warnings, [
    "recording stopped at 1.235 s after 3 events (--max-events): the rest of the run is not in the trace",
  ]);
  assert.deepEqual(summary.limited, { ts: 1234567, events: 3 });
  assert.equal(summary.complete, true);
  // What was open stays open, as for a program still running, until the end.
  assert.deepEqual(sorted(sink), [
    'outer 1:0-2000000 {"unfinished":true}',
    'inner 2:0.5-2000000 {"unfinished":true}',
    'inner 1:1-2000000 {"unfinished":true}',
    'panopticon.flush 1:1234568-1234569 {"events":3}',
  ]);
  assert.equal(summary.unfinished, 3);
});

Deno.test("FrameStateMachine needs the binary frame of a record built in memory", async (t) => {
  for (
    const record of [
      { kind: "batch", bytes: 2, events: 1, ts: 0, thread: 1 },
      { kind: "events", marshal: 5 },
    ] as ProtocolRecord[]
  ) {
    await t.step(record.kind, () => {
      const machine = new FrameStateMachine(new RecordingSink());
      machine.push(HELLO_4, 1);
      assert.throws(() => machine.push(record, 2), (error) => {
        assert.ok(error instanceof ProtocolError);
        assert.match(
          error.message,
          /^line 2: an? "(batch|events)" record came without its binary frame/,
        );
        return true;
      });
    });
  }
  await t.step("a malformed frame names the record's line and the byte", () => {
    const machine = new FrameStateMachine(new RecordingSink());
    machine.push(HELLO_4, 1);
    const payload = Uint8Array.of(6, 1, 15, 9, 1, 1);
    assert.throws(
      () => machine.push({ kind: "batch", bytes: 6, events: 2, ts: 0, thread: 1, payload }, 9),
      /^ProtocolError: the binary frame after line 9, byte 2: event 2 \(extended\): unknown extended op 25/,
    );
  });
  await t.step("a malformed marshal frame too", () => {
    const machine = new FrameStateMachine(new RecordingSink());
    machine.push(HELLO_4, 1);
    const payload = Uint8Array.of(0x5b, 0, 0, 0, 0, 0x69);
    assert.throws(
      () => machine.push({ kind: "events", marshal: 6, payload }, 9),
      /^ProtocolError: the binary frame after line 9, byte 5: the marshal events are malformed: 1 bytes follow the list of 0 events$/,
    );
  });
});

Deno.test("FrameStateMachine describes the process", () => {
  const { sink } = run([], { ...HELLO, argv: ["async hello.py", "it's", "-v"] });
  assert.deepEqual(sink.processes, [{
    pid: 4242,
    name: "python 'async hello.py' 'it'\\''s' -v",
    argv: ["async hello.py", "it's", "-v"],
    pythonVersion: "3.12.1",
    engine: "monitoring",
    protocol: 2,
  }]);
  assert.equal(run([]).sink.processes[0]!.name, "python prog.py --flag");
});

Deno.test("FrameStateMachine summarises the stream and warns", async (t) => {
  const two = events([0, 1, 1000, 0, 3], [2, 1, 2000, 0, 3]);
  const end = (fields: Partial<Record<"ts" | "events" | "dropped", number>>): ProtocolRecord => ({
    ...END,
    ts: 3000,
    events: 2,
    ...fields,
  } as ProtocolRecord);
  const cases: {
    name: string;
    records: ProtocolRecord[];
    summary: Partial<TraceSummary>;
    warnings: string[];
  }[] = [
    {
      name: "a complete stream",
      records: [two, end({})],
      summary: {
        complete: true,
        events: 2,
        recorded: 2,
        dropped: 0,
        reason: "exit",
        slices: 1,
        unfinished: 0,
        threads: 1,
        duration: 3,
        pid: 4242,
        pythonVersion: "3.12.1",
        engine: "monitoring",
        protocol: 2,
        omittedSlices: 0,
        pythonMaxRss: undefined,
      },
      warnings: [],
    },
    {
      name: "the peak memory of the Python process",
      records: [two, { ...end({}), max_rss: 31_457_280 } as ProtocolRecord],
      summary: { complete: true, pythonMaxRss: 31_457_280 },
      warnings: [],
    },
    {
      name: "a stream cut short",
      records: [two],
      summary: { complete: false, events: 2, recorded: undefined, dropped: 0, reason: undefined },
      warnings: [
        'the event stream ended without an "end" record (the program exited abruptly): ' +
        "open slices were closed at the last timestamp",
      ],
    },
    {
      name: "events the collector dropped",
      records: [two, end({ events: 5, dropped: 3 })],
      summary: { complete: true, events: 2, recorded: 5, dropped: 3 },
      warnings: [
        "the collector dropped 3 of the 5 events it recorded (reason: exit): the trace lacks them",
      ],
    },
    {
      name: "events lost on the way",
      records: [two, end({ events: 4 })],
      summary: { complete: true, events: 2, recorded: 4 },
      warnings: ["the collector sent 4 events but 2 arrived"],
    },
    {
      name: "code that no record defined",
      records: [
        events([0, 1, 1000, 0, 42], [2, 1, 2000, 0, 42], [5, 1, 2500, 0, 9]),
        end({ events: 3 }),
      ],
      summary: { complete: true, events: 3, slices: 2, unfinished: 1 },
      warnings: [
        'line 10: an event refers to code 42, which no "code" record defined: its slices are named "<code 42>"',
        'line 10: an event refers to cfunc 9, which no "cfunc" record defined: its slices are named "<cfunc 9>"',
      ],
    },
    {
      name: "records after the end",
      records: [end({ events: 2 }), two],
      summary: { complete: true, events: 2, slices: 1 },
      warnings: ['line 11: records follow the "end" record: they were converted anyway'],
    },
  ];
  for (const { name, records, summary, warnings: expected } of cases) {
    await t.step(name, () => {
      const { sink, summary: actual, warnings } = run(records);
      assert.deepEqual(warnings, expected);
      for (const [key, value] of Object.entries(summary)) {
        assert.deepEqual(actual[key as keyof TraceSummary], value, key);
      }
      assert.deepEqual(sink.summaries, [actual]);
    });
  }
});

Deno.test("FrameStateMachine rejects streams out of order", async (t) => {
  const cases: {
    name: string;
    push: (machine: FrameStateMachine) => void;
    message: string;
    line: number;
  }[] = [
    {
      name: "a first record that is not hello",
      push: (machine) => machine.push(events()),
      message: 'line 1: expected a "hello" record first, got "events"',
      line: 1,
    },
    {
      name: "a first record that is not hello, at a given line",
      push: (machine) => machine.push({ kind: "cfunc", id: 1, name: "print" }, 3),
      message: 'line 3: expected a "hello" record first, got "cfunc"',
      line: 3,
    },
    {
      name: "a newer protocol",
      push: (machine) => machine.push({ ...HELLO, protocol: 5 }),
      message:
        "line 1: the stream speaks protocol 5 but this converter understands up to 4: upgrade panopticon",
      line: 1,
    },
    {
      name: "protocol 0",
      push: (machine) => machine.push({ ...HELLO, protocol: 0 }),
      message: "line 1: the stream claims protocol 0, which does not exist: expected 1 to 4",
      line: 1,
    },
    {
      name: "packed events that do not unpack",
      push: (machine) => {
        machine.push(HELLO, 1);
        machine.push({ kind: "events", packed: "WwEAAAA=" }, 5);
      },
      message: 'line 5: the "packed" events are malformed: the list claims 1 items but only ' +
        "5 bytes were sent (truncated?)",
      line: 5,
    },
    {
      name: "a second hello",
      push: (machine) => {
        machine.push(HELLO, 1);
        machine.push(HELLO, 4);
      },
      message: 'line 4: expected one "hello" record, got a second one (the first was on line 1)',
      line: 4,
    },
    {
      name: "no hello at all",
      push: (machine) => machine.end(),
      message:
        'line 1: expected a "hello" record, got the end of the stream (the collector sent nothing)',
      line: 1,
    },
  ];
  for (const { name, push, message, line } of cases) {
    await t.step(name, () => {
      const machine = new FrameStateMachine(new RecordingSink());
      assert.throws(() => push(machine), (error) => {
        assert.equal((error as Error).name, "ProtocolError");
        assert.equal((error as Error).message, message);
        assert.equal((error as { line: number }).line, line);
        return true;
      });
    });
  }
  await t.step("a record after end()", () => {
    const machine = new FrameStateMachine(new RecordingSink());
    machine.push(HELLO);
    machine.end();
    assert.throws(() => machine.push(events()), /after end\(\)/);
    assert.throws(() => machine.end(), /twice/);
  });
});

Deno.test("FrameStateMachine follows the collector's hidden frames and shows the program's marks", async (t) => {
  const HIDDEN: ProtocolRecord[] = [
    { ...code(7, "__enter__"), module: "panopticon", hidden: true },
    { ...code(8, "__exit__"), module: "panopticon", hidden: true },
    { kind: "cfunc", id: 3, name: "list.append" },
    { kind: "mark", id: 1, name: "phase 2", category: "mark", args: { items: 3 } },
    { kind: "mark", id: 2, name: "cache miss", category: "mark", args: { key: "cart:42" } },
    { kind: "mark", id: 3, name: "queue depth", category: "mark", args: { value: 3 } },
  ];
  const hello = { ...HELLO, protocol: 3 };
  const runWith = (list: ProtocolEvent[], options: FrameStateMachineOptions = {}) => {
    const sink = new RecordingSink();
    const marks: unknown[] = [];
    const machine = new FrameStateMachine(
      Object.assign(sink, { mark: (mark: unknown) => marks.push(structuredClone(mark)) }),
      options,
    );
    for (const record of [hello, ...DEFINITIONS, ...HIDDEN, events(...list)]) machine.push(record);
    const summary = machine.end();
    return { slices: sorted(sink), marks, summary };
  };

  await t.step("a hidden frame is not shown, nor its own C calls; what it calls is", () => {
    const { slices, summary } = runWith([
      [0, 1, 1000, 0, 3], // outer
      [0, 1, 2000, 0, 7], // __enter__ (hidden)
      [5, 1, 2100, 0, 3], // list.append from __enter__: hidden with it
      [6, 1, 2200, 0, 0],
      [0, 1, 2300, 0, 4], // inner, called by the hidden frame: shown
      [2, 1, 2400, 0, 0],
      [2, 1, 2500, 0, 0], // __enter__ returns
      [2, 1, 4000, 0, 0], // outer returns
    ]);
    assert.deepEqual(slices, ["outer 1:1-4", "inner 1:2.3-2.4"]);
    assert.equal(summary.slices, 2);
  });

  await t.step("a hidden frame takes no level of --max-depth", () => {
    const { slices } = runWith([
      [0, 1, 1000, 0, 3],
      [0, 1, 2000, 0, 7],
      [0, 1, 2300, 0, 4], // depth 2, not 3
      [2, 1, 2400, 0, 0],
      [2, 1, 2500, 0, 0],
      [2, 1, 4000, 0, 0],
    ], { maxDepth: 2 });
    assert.deepEqual(slices, ["outer 1:1-4", "inner 1:2.3-2.4"]);
  });

  await t.step("a span opened and closed inside hidden frames nests where the program is", () => {
    const { slices } = runWith([
      [0, 1, 1000, 0, 3], // outer
      [0, 1, 1500, 0, 7], // span.__enter__ (hidden)
      [10, 1, 1600, 5, 1], // span 5 opens, mark "phase 2"
      [2, 1, 1700, 0, 0], // __enter__ returns: the span stays open
      [0, 1, 2000, 0, 4], // inner, inside the span
      [2, 1, 3000, 0, 0],
      [0, 1, 3500, 0, 8], // span.__exit__ (hidden)
      [11, 1, 3600, 5, 0], // span 5 closes
      [2, 1, 3700, 0, 0], // __exit__ returns: outer stays open
      [2, 1, 5000, 0, 0],
    ]);
    assert.deepEqual(slices, [
      "outer 1:1-5",
      'phase 2 1:1.6-3.6 {"items":3}',
      "inner 1:2-3",
    ]);
  });

  await t.step("a span left open closes at the end as unfinished", () => {
    const { slices } = runWith([[10, 1, 1000, 6, 1], [0, 1, 2000, 0, 4], [2, 1, 3000, 0, 0]]);
    assert.deepEqual(slices, ['phase 2 1:1-3 {"items":3,"unfinished":true}', "inner 1:2-3"]);
  });

  await t.step("instants go to their thread, counters to the process", () => {
    const { marks } = runWith([[8, 1, 1000, 0, 2], [9, 2, 2500, 0, 3]]);
    assert.deepEqual(marks, [
      {
        kind: "instant",
        tid: 1,
        ts: 1,
        name: "cache miss",
        category: "mark",
        args: { key: "cart:42" },
      },
      {
        kind: "counter",
        tid: 0,
        ts: 2.5,
        name: "queue depth",
        category: "mark",
        args: { value: 3 },
      },
    ]);
  });

  await t.step("a counter shows only its numbers, and nothing without one", () => {
    const sink = new RecordingSink();
    const marks: { args: unknown }[] = [];
    const machine = new FrameStateMachine(
      Object.assign(sink, { mark: (mark: { args: unknown }) => marks.push(structuredClone(mark)) }),
    );
    const records: ProtocolRecord[] = [
      hello,
      { kind: "mark", id: 1, name: "c", category: "mark", args: { a: 1, b: "x", c: [2] } },
      { kind: "mark", id: 2, name: "d", category: "mark", args: { b: "x" } },
      events([9, 1, 1000, 0, 1], [9, 1, 2000, 0, 2]),
    ];
    for (const record of records) machine.push(record);
    machine.end();
    assert.deepEqual(marks.map((m) => m.args), [{ a: 1 }]);
  });

  await t.step("stop closes what is open on its thread only, hidden frames silently", () => {
    const { slices } = runWith([
      [0, 1, 1000, 0, 3], // outer on thread 1
      [0, 2, 1000, 0, 4], // inner on thread 2
      [0, 1, 1500, 0, 8], // __exit__ (hidden)
      [12, 1, 2000, 0, 0], // recording stops on thread 1
      [2, 1, 2100, 0, 0], // an end after the stop: ignored
      [2, 2, 3000, 0, 0],
    ]);
    assert.deepEqual(slices, ['outer 1:1-2 {"unfinished":true}', "inner 2:1-3"]);
  });

  await t.step("suspended frames survive a stop and join their next slice", () => {
    const { slices } = runWith([
      [0, 1, 1000, 70, 2], // numbers starts
      [4, 1, 2000, 70, 0], // suspends
      [12, 1, 2500, 0, 0],
      [1, 1, 3000, 70, 2], // resumes after recording starts again
      [2, 1, 4000, 70, 0],
    ]);
    assert.deepEqual(slices, ["numbers 1:1-2 flow1 out", "numbers 1:3-4 flow1 in"]);
  });

  await t.step("an undefined mark is named and warned about", () => {
    const sink = new RecordingSink();
    const warnings: string[] = [];
    const machine = new FrameStateMachine(sink, { onWarning: (w) => warnings.push(w) });
    for (const record of [hello, events([8, 1, 1000, 0, 9])]) machine.push(record);
    machine.end();
    assert.match(warnings[0]!, /mark 9, which no "mark" record defined/);
  });
});

Deno.test("FrameStateMachine draws arrows to and from other processes (protocol 4)", async (t) => {
  const HIDDEN = { ...code(7, "fork_wrapper"), module: "panopticon", hidden: true };
  const hello: HelloRecord = { ...HELLO_4, thread_ids: "serial" };
  /** Runs `list` with spawn tokens mapped to flow 100 + token, and the tokens asked about. */
  const runWith = (
    records: ProtocolRecord[],
    options: FrameStateMachineOptions = {},
  ) => {
    const tokens: number[] = [];
    const { sink, summary } = run([HIDDEN, ...records], hello, {
      spawnFlow: (token) => {
        tokens.push(token);
        return 100 + token;
      },
      ...options,
    });
    return { slices: sorted(sink), tokens, summary };
  };
  const fork: ProtocolEvent[] = [
    [0, 1, 1000, 0, 3], // outer
    [5, 1, 2000, 0, 2], // a C call, posix.fork
    [14, 1, 2500, 0, 1], // spawn, token 1
    [6, 1, 3000, 0, 0],
    [14, 1, 3500, 0, 2], // spawn, token 2, straight from outer
    [2, 1, 4000, 0, 0],
  ];
  const expected = ["outer 1:1-4 to-child102", "time.sleep 1:2-3 to-child101"];

  await t.step("the arrow leaves the innermost open slice, in every encoding", () => {
    for (
      const records of [
        [events(...fork)],
        [{ kind: "events", packed: packEvents(fork) } as ProtocolRecord],
        [marshalOf(fork)],
        [batchOf(fork)],
      ]
    ) {
      const { slices, tokens, summary } = runWith(records);
      assert.deepEqual(slices, expected);
      assert.deepEqual(tokens, [1, 2]);
      assert.equal(summary.events, fork.length);
    }
  });

  await t.step("a hidden spawner gives its arrow to the slice shown beneath it", () => {
    const { slices } = runWith([events(
      [0, 1, 1000, 0, 3],
      [0, 1, 1500, 0, 7], // the collector's wrapper (hidden)
      [5, 1, 2000, 0, 2], // its C call: hidden too
      [14, 1, 2500, 0, 1],
      [6, 1, 3000, 0, 0],
      [2, 1, 3200, 0, 0],
      [2, 1, 4000, 0, 0],
    )]);
    assert.deepEqual(slices, ["outer 1:1-4 to-child101"]);
  });

  await t.step("a spawner deeper than maxDepth gives it to the deepest slice written", () => {
    const { slices } = runWith([events(...fork)], { maxDepth: 1 });
    assert.deepEqual(slices, ["outer 1:1-4 to-child101,102"]);
  });

  await t.step("with nothing open, the spawn is told of but no slice carries it", () => {
    const { slices, tokens } = runWith([events([14, 1, 500, 0, 1], [0, 1, 1000, 0, 3], [
      2,
      1,
      2000,
      0,
      0,
    ])]);
    assert.deepEqual(slices, ["outer 1:1-2"]);
    assert.deepEqual(tokens, [1]);
  });

  await t.step("a flow id of 0 draws nothing", () => {
    const { slices, tokens } = runWith([events(...fork)], { spawnFlow: () => 0 });
    assert.deepEqual(slices, ["outer 1:1-4", "time.sleep 1:2-3"]);
    assert.deepEqual(tokens, []);
  });

  await t.step("a generator that spawns keeps the arrow on the slice it suspends", () => {
    const { slices } = runWith([events(
      [0, 1, 1000, 9, 2], // numbers, a generator
      [14, 1, 1500, 0, 1],
      [4, 1, 2000, 9, 0],
      [1, 1, 3000, 9, 2],
      [2, 1, 4000, 9, 0],
    )]);
    assert.deepEqual(slices, [
      "numbers 1:1-2 flow1 out to-child101",
      "numbers 1:3-4 flow1 in",
    ]);
  });

  await t.step("the first slice shown gets the arrow from the parent", () => {
    const { slices } = runWith([events(
      [6, 1, 500, 0, 0], // the fork's return, begun in the parent: ignored
      [0, 1, 1000, 0, 7], // hidden
      [0, 1, 2000, 0, 3], // the first shown
      [2, 1, 3000, 0, 0],
      [0, 1, 4000, 0, 4],
      [2, 1, 5000, 0, 0],
      [2, 1, 6000, 0, 0],
    )], { parentFlow: 55 });
    assert.deepEqual(slices, ["outer 1:2-3 from-parent55", "inner 1:4-5"]);
  });

  await t.step("machines sharing ids and an origin never reuse a thread or a flow", () => {
    const ids = countingIds();
    const gen: ProtocolEvent[] = [
      [0, 1, 1000, 9, 2],
      [4, 1, 2000, 9, 0],
      [1, 1, 3000, 9, 2],
      [2, 1, 4000, 9, 0],
    ];
    const first = run([events(...gen)], { ...hello, t0: 500 }, { ids, origin: 0 });
    const second = run(
      [events(
        ...gen.map((
          [op, thread, ts, frame, ref],
        ): ProtocolEvent => [op, thread, ts + 10_000, frame, ref]),
      )],
      { ...hello, pid: 4343, t0: 10_000 },
      { ids, origin: 0 },
    );
    assert.deepEqual(first.sink.slices, ["numbers 1:1-2 flow1 out", "numbers 1:3-4 flow1 in"]);
    assert.deepEqual(second.sink.slices, [
      "numbers 2:11-12 flow2 out",
      "numbers 2:13-14 flow2 in",
    ]);
    assert.equal(first.summary.threads, 1);
    assert.equal(second.summary.threads, 1);
    assert.equal(second.summary.duration, 14);
  });
});

Deno.test("FrameStateMachine gives each slice its depth on its thread's stack", () => {
  // <module> calls outer, which calls print and the generator numbers;
  // numbers is resumed later, one level up; a flush comes inside outer.
  const { sink } = run([
    events(
      [0, 1, 1000, 0, 1],
      [0, 1, 2000, 0, 3],
      [5, 1, 3000, 0, 1],
      [6, 1, 4000, 0, 1],
      [0, 1, 5000, 70, 2],
      [4, 1, 6000, 70, 2],
    ),
    { kind: "flush", thread: 1, start: 6500, end: 6600, events: 6 },
    events([2, 1, 7000, 0, 3], [1, 1, 8000, 70, 2], [2, 1, 9000, 70, 2], [2, 1, 10000, 0, 1]),
    END,
  ]);
  assert.deepEqual(
    sink.raw.map((slice) => [slice.site.name, slice.start, slice.depth]),
    [
      ["print", 3, 3],
      ["panopticon.flush", 6.5, 3],
      ["outer", 2, 2],
      ["numbers", 5, 3],
      ["numbers", 8, 2],
      ["<module>", 1, 1],
    ],
  );
});

Deno.test("FrameStateMachine gives slices their thread time with hello.thread_time", async (t) => {
  const hello: HelloRecord = { ...HELLO_4, thread_ids: "serial", thread_time: true };
  // [op, thread, ts, frame, ref, threadTime]: a generator's two slices
  // around a C call, and <module> left open.
  const list: ProtocolEvent[] = [
    [0, 1, 1000, 0, 1, 100],
    [0, 1, 2000, 7002, 2, 200],
    [4, 1, 3000, 7002, 0, 700],
    [5, 1, 4000, 0, 1, 800],
    [6, 1, 5000, 0, 0, 900],
    [1, 1, 6000, 7002, 2, 1000],
    [2, 1, 9000, 7002, 0, 2500],
  ];
  const expected = [
    // name, start, duration, threadStart, threadDuration (µs)
    ["print", 4, 1, 0.8, 0.1],
    // The held slice of a suspension is emitted when the frame resumes.
    ["numbers", 2, 1, 0.2, 0.5],
    ["numbers", 6, 3, 1, 1.5],
    // Unfinished: it ends at the thread's last thread time.
    ["<module>", 1, 8, 0.1, 2.4],
  ];
  const forms: [string, ProtocolRecord][] = [
    ["JSON events", events(...list)],
    ["packed events", { kind: "events", packed: packEvents(list) }],
    ["marshal events", marshalOf(list)],
    ["a batch", batchOf(list)],
  ];
  for (const [name, record] of forms) {
    await t.step(name, () => {
      const { sink } = run([record], hello);
      assert.deepEqual(
        sink.raw.map((s) => [s.site.name, s.start, s.duration, s.threadStart, s.threadDuration]),
        expected,
      );
    });
  }
  await t.step("without the hello's flag, no thread time", () => {
    const { sink } = run([events(...list)], { ...HELLO_4, thread_ids: "serial" });
    assert.ok(sink.raw.every((s) => s.threadStart === undefined && s.threadDuration === undefined));
  });
  await t.step("a slice whose start carried none has none", () => {
    const { sink } = run([events([0, 1, 1000, 0, 3], [2, 1, 2000, 0, 0, 500])], hello);
    assert.deepEqual(sink.raw.map((s) => s.threadStart), [undefined]);
  });
});
