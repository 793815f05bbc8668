/**
 * `--max-events` end to end, with both collectors on the oldest and the
 * newest Python: recording stops at the limit (every thread), the program
 * runs on to its end unchanged, and the trace says where and why it stops:
 * `otherData.limited`, an instant on the thread that reached it, the slices
 * then open marked unfinished, and a warning on the terminal.
 */
import assert from "node:assert/strict";
import { collectorOptions, COLLECTORS } from "./_collectors.ts";
import { oldestAndNewest } from "./_pythons.ts";
import { runPython, traceProgram } from "./_run.ts";
import { slices } from "./_trace.ts";

const PROGRAM = new URL("./programs/limits/many_calls.py", import.meta.url).pathname;
const PYTHONS = oldestAndNewest();
const LIMIT = 20_000;

for (const python of PYTHONS) {
  const plain = runPython(python.path, [PROGRAM]);
  for (const collector of COLLECTORS) {
    const on = `Python ${python.version}, ${collector} collector`;
    Deno.test(`--max-events stops recording and lets the program finish (${on})`, async () => {
      const { outcome, trace } = await traceProgram(
        python.path,
        [...collectorOptions(collector), "--max-events", String(LIMIT)],
        [PROGRAM],
      );
      const untraced = await plain;
      assert.equal(outcome.code, 0, outcome.stderr);
      assert.equal(outcome.stdout, untraced.stdout, "the program's output differs");
      assert.match(outcome.stdout, /^done$/m);

      const other = trace.otherData!;
      const limited = other.limited as { ts: number; events: number } | undefined;
      assert.ok(limited !== undefined, `no otherData.limited: ${JSON.stringify(other)}`);
      assert.equal(limited.events, LIMIT, "recording stops at the limit exactly");
      assert.equal(other.complete, true, "the stream still ends properly");
      // 300,000 calls make 600,000 events: most of the run is not recorded.
      const leaves = slices(trace, "leaf").length;
      assert.ok(leaves > 0 && leaves < LIMIT / 2, `${leaves} leaf slices`);
      // (The collector's own flush of the last events may come later.)
      const late = slices(trace).filter((slice) =>
        slice.ts > limited.ts && slice.cat !== "panopticon"
      );
      assert.deepEqual(late.map((slice) => slice.name), [], "slices after recording stopped");
      const counters = trace.traceEvents.filter((event) => event.ph === "C");
      assert.deepEqual(
        counters.filter((event) => event.ts > limited.ts).map((event) => event.name),
        [],
        "counter values after recording stopped",
      );

      const marks = trace.traceEvents.filter((event) =>
        event.ph === "i" && event.name === "recording stopped: --max-events reached"
      );
      assert.equal(marks.length, 1, "one instant where recording stopped");
      assert.equal(marks[0]!.ts, limited.ts);
      assert.deepEqual(marks[0]!.args, { events: LIMIT });
      // The frames open at the limit are cut there, marked unfinished.
      const open = slices(trace).filter((slice) => slice.args?.unfinished === true);
      assert.ok(
        open.some((slice) => slice.name === "<module>"),
        `<module> is unfinished: ${open.map((slice) => slice.name)}`,
      );
      assert.match(
        outcome.stderr,
        /recording stopped at [\d.]+ s after 20,?000 events \(--max-events\): the rest of the run is not in the trace/,
      );
    });
  }
}

Deno.test(`--max-events: ran on ${PYTHONS.map((p) => p.version).join(", ")}`, () => {
  assert.ok(PYTHONS.length > 0, "no Python found");
});
