/**
 * Unit tests of exceptions in the converter (src/exceptions.ts, ops 16 and
 * 17 of docs/protocol.md): JSON events through the frame-state machine, and
 * the extended ops of a batch frame.
 */
import assert from "node:assert/strict";
import { FrameStateMachine } from "../src/frames.ts";
import type { ProtocolRecord } from "../src/protocol.ts";
import { unpackBatch } from "../src/batch.ts";
import type { Slice, TraceSummary } from "../src/trace_model.ts";

const HELLO: ProtocolRecord = {
  kind: "hello",
  protocol: 4,
  pid: 7,
  python: "3.12.1",
  engine: "monitoring",
  t0: 0,
  main_thread: 1,
  argv: ["a.py"],
};

const code = (id: number, qualname: string): ProtocolRecord => ({
  kind: "code",
  id,
  module: "__main__",
  qualname,
  file: "a.py",
  line: id,
  type: "function",
});

const exception = (id: number, type: string, line: number, context = 0): ProtocolRecord => ({
  kind: "exception",
  id,
  type,
  message: "no",
  file: "a.py",
  line,
  context,
});

interface Shown {
  name: string;
  ts: number;
  args: Record<string, unknown> | undefined;
  flow: number;
  flowIn: boolean;
  flowOut: boolean;
}

/** Runs records through a machine; the exception instants and the summary. */
function run(records: ProtocolRecord[]): { shown: Shown[]; summary: TraceSummary } {
  const shown: Shown[] = [];
  const machine = new FrameStateMachine({
    process() {},
    thread() {},
    slice(slice: Slice) {
      if (slice.site.category !== "exception") return;
      shown.push({
        name: slice.site.name,
        ts: slice.start * 1000,
        args: slice.args as Record<string, unknown> | undefined,
        flow: slice.flow,
        flowIn: slice.flowIn,
        flowOut: slice.flowOut,
      });
    },
    finish() {},
  });
  for (const record of [HELLO, code(1, "main"), code(2, "inner"), ...records]) {
    machine.push(record);
  }
  const summary = machine.end();
  return { shown: shown.sort((a, b) => a.ts - b.ts), summary };
}

Deno.test("FrameStateMachine joins a raise to the handler that swallowed it", () => {
  const { shown, summary } = run([
    exception(1, "KeyError", 20),
    {
      kind: "events",
      events: [
        [0, 1, 100, 0, 1], // main
        [0, 1, 200, 0, 2], // inner
        [16, 1, 300, 0xabc, 1], // raise KeyError in inner
        [3, 1, 400, 0, 0], // inner unwinds
        [17, 1, 500, 0xabc, 12], // main handles it at line 12
        [2, 1, 600, 0, 0], // main returns: swallowed
      ],
    },
  ]);
  assert.deepEqual(shown.map((s) => [s.name, s.ts, s.flowIn, s.flowOut]), [
    ["raise KeyError", 300, false, true],
    ["swallowed KeyError", 500, true, false],
  ]);
  assert.equal(shown[0]!.flow, shown[1]!.flow);
  assert.equal(shown[0]!.args?.swallowed, true);
  assert.equal(shown[1]!.args?.line, 12);
  assert.equal(shown[1]!.args?.raised, "a.py:20");
  assert.deepEqual(summary.exceptions, { raised: 1, caught: 1, swallowed: 1 });
  assert.deepEqual(summary.swallowedExceptions, [
    { type: "KeyError", raised: "a.py:20", swallowed: "a.py:12", count: 1 },
  ]);
});

Deno.test("FrameStateMachine tells a re-raise, a replacement and an uncaught exception apart", async (t) => {
  await t.step("a handler that unwinds with nothing new: the exception goes on", () => {
    const { shown } = run([
      exception(1, "ValueError", 20),
      exception(2, "TypeError", 13),
      {
        kind: "events",
        events: [
          [0, 1, 100, 0, 1],
          [0, 1, 200, 0, 2],
          [16, 1, 300, 0xabc, 1],
          [17, 1, 350, 0xabc, 21], // a finally in inner
          [3, 1, 400, 0, 0], // which re-raises
          [17, 1, 500, 0xabc, 12], // caught in main
          [16, 1, 550, 0xdef, 2], // another, unrelated, raised: main's handler had finished
        ],
      },
    ]);
    assert.deepEqual(shown.map((s) => [s.name, s.args?.line]), [
      ["raise ValueError", 20],
      ["swallowed ValueError", 12],
      ["raise TypeError", 13],
    ]);
  });

  await t.step("a handler that raises another in its place: caught and replaced", () => {
    const { shown } = run([
      exception(1, "ValueError", 20),
      {
        kind: "events",
        events: [
          [0, 1, 100, 0, 1],
          [0, 1, 200, 0, 2],
          [16, 1, 300, 0xabc, 1],
          [17, 1, 350, 0xabc, 21],
        ],
      },
      exception(2, "RuntimeError", 22, 0xabc),
      { kind: "events", events: [[16, 1, 380, 0xdef, 2], [3, 1, 400, 0, 0], [3, 1, 500, 0, 0]] },
    ]);
    assert.deepEqual(shown.map((s) => [s.name, s.args?.swallowed, s.args?.replaced_by]), [
      ["raise ValueError", false, undefined],
      ["caught ValueError", false, "RuntimeError"],
      ["raise RuntimeError", undefined, undefined],
    ]);
  });

  await t.step("never handled: the raise alone, without an arrow", () => {
    const { shown } = run([
      exception(1, "ValueError", 20),
      { kind: "events", events: [[0, 1, 100, 0, 1], [16, 1, 300, 0xabc, 1], [3, 1, 400, 0, 0]] },
    ]);
    assert.deepEqual(shown.map((s) => [s.name, s.flow, s.args?.caught]), [
      ["raise ValueError", 0, undefined],
    ]);
  });
});

Deno.test("unpackBatch reads extended ops: op 15, the op minus 16, dt, ref and a key", () => {
  const payload = Uint8Array.of(
    0x1f,
    0x00,
    0x05,
    0x07,
    0x30,
    0x12,
    0xc0,
    0x00,
    0x3a,
    0x7f, // raise, dt 5, record 7, key
    0x1f,
    0x01,
    0x03,
    0x0c,
    0x30,
    0x12,
    0xc0,
    0x00,
    0x3a,
    0x7f, // handled, dt 3, line 12, key
  );
  const record = { kind: "batch", bytes: payload.length, events: 2, ts: 1000, thread: 1, payload };
  assert.deepEqual(unpackBatch(record as ProtocolRecord & { kind: "batch" }), [
    [16, 1, 1005, 0x7f3a00c01230, 7],
    [17, 1, 1008, 0x7f3a00c01230, 12],
  ]);
});
