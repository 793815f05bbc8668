/**
 * The runtime's records (docs/protocol.md, "The runtime"): garbage
 * collections as slices and CPU time as counters, from the protocol's
 * checks through the frame-state machine to the command line.
 */
import assert from "node:assert/strict";
import {
  checkRecord,
  FrameStateMachine,
  type HelloRecord,
  ProtocolError,
  type ProtocolRecord,
} from "../mod.ts";
import { parseCommandLine } from "../src/cli.ts";
import { keepingSink } from "./_sink.ts";
import { CpuCounters, runtimeVariable } from "../src/runtime.ts";

const HELLO: HelloRecord = {
  kind: "hello",
  protocol: 4,
  pid: 7,
  python: "3.13.0",
  engine: "monitoring",
  t0: 1_000_000,
  main_thread: 1,
  argv: ["a.py"],
  thread_ids: "serial",
};

function run(records: ProtocolRecord[]) {
  const { sink, slices, marks } = keepingSink();
  const machine = new FrameStateMachine(sink);
  for (const record of [HELLO, ...records]) machine.push(record);
  machine.end();
  return { slices, marks };
}

Deno.test("checkRecord() reads gc and cpu records, and names what is wrong", async (t) => {
  const gc = {
    kind: "gc",
    thread: 1,
    start: 10,
    end: 20,
    generation: 2,
    collected: 5,
    uncollectable: 0,
  };
  await t.step("a gc record", () => assert.deepEqual(checkRecord(gc, 3), gc));
  await t.step("a cpu record", () => {
    const cpu = { kind: "cpu", ts: 5, threads: [[1, 100], [2, 0]] };
    assert.deepEqual(checkRecord(cpu, 3), cpu);
  });
  const bad: [string, unknown, RegExp][] = [
    ["gc without its generation", { ...gc, generation: undefined }, /"generation" in a "gc"/],
    ["gc with a string count", { ...gc, collected: "5" }, /"collected" in a "gc"/],
    ["cpu with a pair of three", { kind: "cpu", ts: 5, threads: [[1, 2, 3]] }, /"threads"/],
    ["cpu without threads", { kind: "cpu", ts: 5 }, /\[thread, cpu\] integer pairs/],
  ];
  for (const [name, record, message] of bad) {
    await t.step(name, () => {
      assert.throws(() => checkRecord(record, 9), (error) => {
        assert(error instanceof ProtocolError);
        assert.match(error.message, /^line 9: /);
        assert.match(error.message, message);
        return true;
      });
    });
  }
});

Deno.test("FrameStateMachine shows a gc record as a slice of its thread, with what it found", () => {
  const { slices } = run([
    { kind: "thread", thread: 1, native_id: 7, name: "MainThread" },
    {
      kind: "gc",
      thread: 1,
      start: 1_002_000,
      end: 1_002_500,
      generation: 1,
      collected: 12,
      uncollectable: 1,
    },
  ]);
  assert.equal(slices.length, 1);
  const [slice] = slices;
  assert.deepEqual(
    [slice!.site.name, slice!.site.category, slice!.tid, slice!.start, slice!.duration],
    ["gc generation 1", "gc", 1, 2, 0.5],
  );
  assert.deepEqual(slice!.args, { generation: 1, collected: 12, uncollectable: 1 });
});

Deno.test("FrameStateMachine turns cpu samples into a counter per thread, in percent", () => {
  const { marks } = run([
    { kind: "thread", thread: 1, native_id: 7, name: "MainThread" },
    { kind: "thread", thread: 2, native_id: 8, name: "worker" },
    // Thread 3 has no record yet: its samples are left out.
    { kind: "cpu", ts: 1_000_000, threads: [[1, 0], [2, 0], [3, 0]] },
    { kind: "cpu", ts: 1_010_000, threads: [[1, 10_000], [2, 2_500], [3, 1]] },
    { kind: "cpu", ts: 1_020_000, threads: [[1, 10_000], [2, 7_500]] },
  ]);
  assert.deepEqual(
    marks.map((mark) => [mark.kind, mark.name, mark.category, mark.ts, mark.args["%"]]),
    [
      ["counter", "CPU 1: MainThread", "cpu", 0, 100],
      ["counter", "CPU 2: worker", "cpu", 0, 25],
      ["counter", "CPU 1: MainThread", "cpu", 10, 0],
      ["counter", "CPU 2: worker", "cpu", 10, 50],
      // Each track ends at its thread's last sample.
      ["counter", "CPU 1: MainThread", "cpu", 20, 0],
      ["counter", "CPU 2: worker", "cpu", 20, 0],
    ],
  );
});

Deno.test("CpuCounters keeps shares within 0 to 100 and ignores samples out of order", () => {
  const counters = new CpuCounters(0);
  counters.sample(1, "t", 1000, 0);
  assert.equal(counters.sample(1, "t", 2000, 1500)?.args["%"], 100);
  assert.equal(counters.sample(1, "t", 1500, 1500), undefined);
  assert.equal(counters.sample(1, "t", 3000, 1000)?.args["%"], 0);
  // The name is the thread's at the first value, not at a renaming.
  assert.equal(counters.sample(1, "renamed", 4000, 1000)?.name, "CPU 1: t");
});

Deno.test("parseCommandLine() reads --gc, --no-gc and --no-cpu-counters", async (t) => {
  const cases: [string[], unknown][] = [
    [["a.py"], undefined],
    [["--gc", "a.py"], undefined],
    [["--no-gc", "a.py"], { gc: false, cpuCounters: true, tasks: true }],
    [["--no-cpu-counters", "a.py"], { gc: true, cpuCounters: false, tasks: true }],
    [["--no-gc", "--gc", "a.py"], undefined],
  ];
  for (const [argv, runtime] of cases) {
    await t.step(argv.join(" "), () => {
      const command = parseCommandLine(argv);
      assert(command.kind === "trace");
      assert.deepEqual(command.runtime, runtime);
      assert.equal(
        runtimeVariable(command.runtime),
        runtime === undefined ? undefined : (
          (runtime as { gc: boolean }).gc ? "no-cpu-counters" : "no-gc"
        ),
      );
    });
  }
  await t.step("a flag takes no value", () => {
    assert.throws(() => parseCommandLine(["--no-gc=1", "a.py"]), /takes no value/);
  });
});
