import assert from "node:assert/strict";
import { CatapultReader, TraceReadError } from "../src/catapult_reader.ts";
import { toCatapult } from "../src/convert.ts";
import { FrameStateMachine } from "../src/frames.ts";
import type { ProtocolRecord } from "../src/protocol.ts";
import { SummarySink } from "../src/summary.ts";
import type {
  Mark,
  ProcessInfo,
  Slice,
  ThreadInfo,
  TraceSink,
  TraceSummary,
} from "../src/trace_model.ts";
import { randomStream } from "./_streams.ts";

/** A sink that keeps what it receives, as text lines a test compares. */
function recorder() {
  const lines: string[] = [];
  let summary: TraceSummary | undefined;
  const sink: TraceSink = {
    process: (p: ProcessInfo) => lines.push(`process ${p.pid} ${p.name}`),
    thread: (t: ThreadInfo) => lines.push(`thread ${t.tid} ${t.name} ${t.ident} ${t.nativeId}`),
    slice: (s: Slice) =>
      lines.push(
        `slice ${s.tid} ${s.site.name} ${s.site.category} ${s.site.file}:${s.site.line} ` +
          `${s.start}+${s.duration} flow ${s.flow}${s.flowIn ? " in" : ""}${
            s.flowOut ? " out" : ""
          }` +
          `${s.args === undefined ? "" : ` ${JSON.stringify(s.args)}`}`,
      ),
    mark: (m: Mark) => lines.push(`${m.kind} ${m.tid} ${m.name} ${m.ts} ${JSON.stringify(m.args)}`),
    finish: (result) => summary = result,
  };
  return { sink, lines, summary: () => summary };
}

async function catapultText(records: ProtocolRecord[]): Promise<string> {
  return (await Array.fromAsync(toCatapult(ReadableStream.from(records)))).join("");
}

Deno.test("CatapultReader gives back what the frame-state machine gave the writer", async (t) => {
  for (const seed of [3, 4]) {
    const records = randomStream(seed, 3000);
    const text = await catapultText(records);
    const direct = recorder();
    const machine = new FrameStateMachine(direct.sink);
    records.forEach((record, i) => machine.push(record, i + 1));
    machine.end();

    for (const piece of [1 << 20, 4096, 7, 1]) {
      await t.step(`seed ${seed}, in pieces of ${piece} characters`, () => {
        const read = recorder();
        const reader = new CatapultReader(read.sink);
        for (let at = 0; at < text.length; at += piece) reader.push(text.slice(at, at + piece));
        reader.finish();
        // The writer names the main thread when it is first used, as the
        // reader does: the same lines, but that the reader's process comes
        // without the Python version (which is in otherData, at the end).
        assert.deepEqual(read.lines, direct.lines);
        const summary = read.summary()!;
        const expected = direct.summary()!;
        assert.deepEqual(
          [
            summary.complete,
            summary.events,
            summary.slices,
            summary.unfinished,
            summary.pythonVersion,
          ],
          [
            expected.complete,
            expected.events,
            expected.slices,
            expected.unfinished,
            expected.pythonVersion,
          ],
        );
      });
    }
    await t.step(`seed ${seed}, laid out otherwise (indented, read the general way)`, () => {
      const read = recorder();
      const reader = new CatapultReader(read.sink);
      reader.push(JSON.stringify(JSON.parse(text), null, 1));
      reader.finish();
      assert.deepEqual(read.lines, direct.lines);
    });
    await t.step(`seed ${seed}: the summary of the JSON trace is the recording's`, () => {
      const fromRecords = new SummarySink();
      const machine = new FrameStateMachine(fromRecords);
      records.forEach((record, i) => machine.push(record, i + 1));
      machine.end();
      const fromJson = new SummarySink();
      const reader = new CatapultReader(fromJson);
      reader.push(text);
      reader.finish();
      assert.deepEqual(fromJson.report(), fromRecords.report());
    });
  }
});

Deno.test("CatapultReader reads JSON as JSON, whatever its layout", async (t) => {
  const read = (text: string) => {
    const kept = recorder();
    const warnings: string[] = [];
    const reader = new CatapultReader(kept.sink, { onWarning: (w) => warnings.push(w) });
    reader.push(text);
    reader.finish();
    return { lines: kept.lines, summary: kept.summary()!, warnings };
  };
  await t.step("the array form, other processes, strings with brackets and escapes", () => {
    const { lines } = read(
      ` [ {"ph":"X","name":"a}\\"[b","cat":"function","pid":1,"tid":5,"ts":1,"dur":2,"args":{"note":"]}"}},
        {"ph":"X","name":"c","pid":2,"tid":5,"ts":2,"dur":1}, {"ph":"B","name":"ignored","pid":1,"tid":5,"ts":0} ] `,
    );
    assert.deepEqual(lines, [
      "process 1 ",
      "thread 5 Thread 5 null null",
      'slice 5 a}"[b function undefined:undefined 1+2 flow 0 {"note":"]}"}',
      "process 2 ",
      "thread 1000001 Thread 5 null null",
      "slice 1000001 c  undefined:undefined 2+1 flow 0",
    ]);
  });
  await t.step("keys and values in any order, with otherData first", () => {
    const { lines, summary } = read(`{
      "otherData": {"python": "3.9.1", "engine": "setprofile", "complete": false, "events": 12, "dropped": 3,
        "limited": {"ts": 5, "events": 12}},
      "displayTimeUnit": "ns",
      "traceEvents": [
        {"ph": "M", "pid": 4, "tid": 2, "name": "thread_name", "args": {"name": "w", "ident": 77, "native_id": 8}},
        {"ph": "i", "s": "t", "name": "mark", "cat": "mark", "args": {"k": 1}, "pid": 4, "tid": 2, "ts": 3},
        {"ph": "C", "name": "depth", "cat": "mark", "args": {"n": 2}, "pid": 4, "ts": 4}
      ]
    }`);
    assert.deepEqual(lines, [
      "process 4 ",
      "thread 2 w 77 8",
      'instant 2 mark 3 {"k":1}',
      'counter 0 depth 4 {"n":2}',
    ]);
    assert.deepEqual(
      [summary.pythonVersion, summary.complete, summary.events, summary.dropped, summary.limited],
      ["3.9.1", false, 12, 3, { ts: 5, events: 12 }],
    );
  });
  await t.step("a trace cut short is read as far as it goes, with a warning", () => {
    const { lines, summary, warnings } = read(
      '{"traceEvents":[\n{"ph":"X","name":"f","pid":1,"tid":1,"ts":0,"dur":1},\n{"ph":"X","name":"g","pi',
    );
    assert.equal(lines.length, 3);
    assert.equal(summary.complete, false);
    assert.match(warnings[0]!, /^the trace is cut short at line 3/);
  });
  await t.step("malformed JSON fails naming the line", () => {
    assert.throws(
      () => read('{"traceEvents":[\n{"ph":"X"},\n{"ph":"X",,}\n]}'),
      (error: unknown) =>
        error instanceof TraceReadError && /^line 3: not valid JSON/.test(error.message),
    );
    assert.throws(() => read("hello"), /line 1: expected a JSON object or array/);
    assert.throws(() => read('{"traceEvents":[]} x'), /unexpected text after the end of the trace/);
    assert.throws(() => read("   "), /the trace is empty/);
  });
});
