/**
 * asyncio tasks in the converter (docs/protocol.md, "asyncio tasks"): the
 * collector's task instants become names on slices, a track per task and
 * an arrow from its creation; the Catapult writer's async and flow events.
 */
import assert from "node:assert/strict";
import {
  CatapultWriter,
  type FlowArrow,
  FrameStateMachine,
  type HelloRecord,
  type ProtocolRecord,
} from "../mod.ts";
import { Task, taskEndings, TaskTracker } from "../src/tasks.ts";
import { keepingSink } from "./_sink.ts";

function hello(engine: string, collector: string): HelloRecord {
  return {
    kind: "hello",
    protocol: 4,
    pid: 7,
    python: "3.13.0",
    engine,
    t0: 0,
    main_thread: 1,
    argv: ["a.py"],
    thread_ids: "serial",
    collector,
  };
}

const DEFINITIONS: ProtocolRecord[] = [
  {
    kind: "code",
    id: 1,
    module: "asyncio.base_events",
    qualname: "create_task",
    file: "b.py",
    line: 1,
    type: "function",
  },
  {
    kind: "code",
    id: 2,
    module: "__main__",
    qualname: "main",
    file: "a.py",
    line: 1,
    type: "coroutine",
  },
  {
    kind: "code",
    id: 3,
    module: "__main__",
    qualname: "leaf",
    file: "a.py",
    line: 5,
    type: "coroutine",
  },
  { kind: "mark", id: 1, name: "task created", category: "asyncio.created", args: { task: 1 } },
  { kind: "mark", id: 2, name: "Task-1", category: "asyncio.task", args: { task: 1 } },
  { kind: "mark", id: 3, name: "task cancelled", category: "asyncio.cancelled", args: {} },
];

function run(engine: string, collector: string, events: number[][]) {
  const { sink, slices, asyncSlices, arrows, marks } = keepingSink();
  const machine = new FrameStateMachine(sink);
  machine.push(hello(engine, collector));
  for (const record of DEFINITIONS) machine.push(record);
  machine.push({
    kind: "events",
    events: events.map(([op, ts, frame, ref]) => [op, 1, ts, frame, ref] as const) as never,
  });
  machine.end();
  return { slices, asyncSlices, arrows, marks };
}

// [op, ts (ns), frame, ref]: create_task creates task 1; main starts as its
// coroutine, awaits leaf (which it calls), suspends, resumes, and ends.
const LIFE = (end: number[]) => [
  [0, 1000, 0, 1], // call create_task
  [8, 1500, 0, 1], // task 1 created
  [2, 2000, 0, 0], // create_task returns
  [0, 5000, 100, 2], // call main
  [8, 5100, 0, 2], // main is task 1's coroutine
  [0, 5200, 200, 3], // main calls leaf
  [4, 5300, 200, 0], // leaf suspends
  [4, 5400, 100, 0], // main suspends
  [1, 9000, 100, 2], // main resumes
  [1, 9100, 200, 3], // leaf resumes
  [2, 9200, 200, 0], // leaf returns
  end, // main ends
];

Deno.test("FrameStateMachine names a task's slices, and gives it a track and a creation arrow", () => {
  const { slices, asyncSlices, arrows, marks } = run(
    "monitoring",
    "native",
    LIFE([2, 9500, 100, 0]),
  );
  assert.deepEqual(marks, [], "the task instants are not shown as instants");
  for (const slice of slices.filter((s) => s.site.name === "main" || s.site.name === "leaf")) {
    assert.deepEqual(slice.args, { task: "Task-1" });
  }
  assert.deepEqual(slices.find((s) => s.site.name === "create_task")?.args, undefined);
  assert.deepEqual(
    asyncSlices.map((s) => [s.id, s.name, s.start, s.duration, s.args]),
    [
      [1, "running", 5, 0.4, undefined],
      [1, "running", 9, 0.5, undefined],
      // Created by the only frame open, asyncio's own (no frame outside it).
      [1, "Task-1 main", 1.5, 8, {
        ended: "result",
        coroutine: "main",
        created_by: "asyncio.base_events.create_task",
        created_at: "b.py:1",
      }],
    ],
  );
  assert.equal(arrows.length, 1);
  const [arrow] = arrows;
  assert.deepEqual(
    [arrow!.fromTid, arrow!.fromTs, arrow!.toTid, arrow!.toTs, arrow!.category],
    [1, 1.5, 1, 5.1, "asyncio"],
  );
});

Deno.test("FrameStateMachine says how a task ended, as far as the engine can tell", async (t) => {
  const cases: [string, string, number[][], string][] = [
    ["monitoring", "native", [[3, 9500, 100, 0]], "exception"],
    ["monitoring", "python", [[8, 9400, 0, 3], [3, 9500, 100, 0]], "cancelled"],
    ["setprofile", "native", [[3, 9500, 100, 0]], "raised"],
    ["setprofile", "native", [[2, 9500, 100, 0]], "result"],
    ["setprofile", "python", [[2, 9500, 100, 0]], "ended"],
    ["monitoring", "native", [[4, 9500, 100, 0]], "pending"],
  ];
  for (const [engine, collector, end, ended] of cases) {
    await t.step(`${engine}, ${collector}: ${ended}`, () => {
      const events = LIFE([8, 9300, 0, 0]).slice(0, -1).concat(end);
      const { asyncSlices } = run(engine, collector, events);
      const life = asyncSlices.find((s) => s.name === "Task-1 main");
      assert.equal(life?.args?.ended, ended);
    });
  }
  assert.equal(taskEndings("monitoring", undefined), "all");
});

Deno.test("CatapultWriter writes a task's track as async events and its arrow as two slices' flow", async () => {
  let text = "";
  const decoder = new TextDecoder();
  const writer = new CatapultWriter(
    new WritableStream({
      write: (chunk) => void (text += decoder.decode(chunk, { stream: true })),
    }),
  );
  writer.process({
    pid: 7,
    name: "python a.py",
    argv: ["a.py"],
    pythonVersion: "3.13.0",
    engine: "monitoring",
    protocol: 4,
  });
  writer.asyncSlice({
    id: 26,
    track: "Task-1 main",
    name: "Task-1 main",
    category: "asyncio",
    tid: 1,
    start: 1.5,
    duration: 8,
    args: { ended: "result" },
  });
  writer.flowArrow({
    id: 3,
    name: "create_task",
    category: "asyncio",
    fromTid: 1,
    fromTs: 1.5,
    toTid: 2,
    toTs: 5.1,
  });
  writer.finish({
    complete: true,
    events: 0,
    recorded: 0,
    dropped: 0,
    reason: "exit",
    slices: 0,
    unfinished: 0,
    threads: 1,
    duration: 10,
    pid: 7,
    pythonVersion: "3.13.0",
    engine: "monitoring",
    protocol: 4,
  });
  await writer.close();
  const events = JSON.parse(text).traceEvents.slice(1);
  assert.deepEqual(events, [
    {
      ph: "b",
      cat: "asyncio",
      name: "Task-1 main",
      id: "0x1a",
      pid: 7,
      tid: 1,
      ts: 1.5,
      args: { ended: "result" },
    },
    { ph: "e", cat: "asyncio", name: "Task-1 main", id: "0x1a", pid: 7, tid: 1, ts: 9.5 },
    {
      ph: "X",
      name: "create_task",
      cat: "asyncio",
      pid: 7,
      tid: 1,
      ts: 1.5,
      dur: 0,
      bind_id: "0x3",
      flow_out: true,
    },
    {
      ph: "X",
      name: "create_task",
      cat: "asyncio",
      pid: 7,
      tid: 2,
      ts: 5.1,
      dur: 0,
      bind_id: "0x3",
      flow_in: true,
    },
  ]);
});

Deno.test("TaskTracker joins a future's completion to the resumption of the task that awaited it", async (t) => {
  const setup = () => {
    const { sink, arrows } = keepingSink();
    let ids = 0;
    return { arrows, tracker: new TaskTracker(sink), flow: () => ++ids };
  };
  const summary = (arrows: FlowArrow[]) =>
    arrows.map((a) => [a.name, a.category, a.fromTid, a.fromTs, a.toTid, a.toTs, a.id]);

  await t.step("a task awaits a future another task completes: one arrow", () => {
    const { arrows, tracker, flow } = setup();
    const waiter = new Task(1);
    const setter = new Task(2);
    tracker.awaits(waiter, 100);
    tracker.done(100, 2, 5, setter, flow);
    assert.deepEqual(arrows, [], "drawn when the waiter resumes, not before");
    tracker.resumed(waiter, 1, 7);
    assert.deepEqual(summary(arrows), [["await", "asyncio", 2, 5, 1, 7, 1]]);
    tracker.resumed(waiter, 1, 9);
    assert.equal(arrows.length, 1, "a later resumption gets no second arrow");
  });

  await t.step("a gather: an arrow from each child's completion", () => {
    const { arrows, tracker, flow } = setup();
    const main = new Task(1);
    tracker.awaits(main, 201);
    tracker.awaits(main, 202);
    tracker.done(201, 1, 3, new Task(2), flow);
    tracker.done(202, 1, 4, new Task(3), flow);
    tracker.resumed(main, 1, 6);
    assert.deepEqual(summary(arrows), [
      ["await", "asyncio", 1, 3, 1, 6, 1],
      ["await", "asyncio", 1, 4, 1, 6, 2],
    ]);
  });

  await t.step("no arrow: the loop's own callback, the waiter itself, or nobody waiting", () => {
    const { arrows, tracker, flow } = setup();
    const waiter = new Task(1);
    tracker.awaits(waiter, 300);
    tracker.done(300, 1, 2, undefined, flow); // asyncio.sleep's timer, in no task
    tracker.awaits(waiter, 301);
    tracker.done(301, 1, 3, waiter, flow);
    tracker.done(999, 1, 4, new Task(2), flow);
    tracker.resumed(waiter, 1, 5);
    assert.deepEqual(arrows, []);
  });

  await t.step(
    "a completion after the waiter resumed, or of an ended waiter's future: none",
    () => {
      const { arrows, tracker, flow } = setup();
      const waiter = new Task(1);
      tracker.awaits(waiter, 400);
      tracker.resumed(waiter, 1, 2);
      tracker.done(400, 2, 3, new Task(2), flow);
      const ended = new Task(3);
      ended.ended = true;
      tracker.awaits(ended, 401);
      tracker.done(401, 2, 4, new Task(2), flow);
      tracker.resumed(waiter, 1, 5);
      assert.deepEqual(arrows, []);
    },
  );
});
