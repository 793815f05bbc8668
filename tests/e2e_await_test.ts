/**
 * End-to-end tests of the arrows from what a task awaited to its
 * resumption (issue 14): on 3.12+ (the monitoring engine), with both
 * collectors, a task awaiting a task, a task awaiting a future another task
 * completes, and a gather of tasks; none on the oldest Python present.
 */
import assert from "node:assert/strict";
import { collectorOptions, COLLECTORS } from "./_collectors.ts";
import { oldestAndNewest, TEST_PYTHONS, type TestPython } from "./_pythons.ts";
import { traceProgram } from "./_run.ts";
import type { Trace, TraceEvent } from "./_trace.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const AWAITS = `${ROOT}tests/programs/tasks/awaits.py`;

/** The await arrows: the names of the innermost slices each leaves and arrives at. */
function awaitArrows(trace: Trace): [string, string][] {
  const xs = trace.traceEvents.filter((e) => e.ph === "X" && e.cat !== "asyncio");
  const inner = (mark: TraceEvent): string => {
    let best: TraceEvent | undefined;
    for (const x of xs) {
      if (x.tid !== mark.tid || x.ts > mark.ts || x.ts + (x.dur ?? 0) < mark.ts) continue;
      if (best === undefined || x.ts > best.ts) best = x;
    }
    return best?.name ?? "";
  };
  const marks = trace.traceEvents.filter((e) => e.cat === "asyncio" && e.name === "await");
  const bind = (e: TraceEvent) => (e as unknown as { bind_id: string }).bind_id;
  const from = new Map(
    marks.filter((e) => (e as { flow_out?: boolean }).flow_out).map((e) => [bind(e), e]),
  );
  const arrows: [string, string][] = [];
  for (const mark of marks) {
    if (!(mark as { flow_in?: boolean }).flow_in) continue;
    const start = from.get(bind(mark));
    assert(start !== undefined, "an await arrow that leaves nowhere");
    assert(start.ts <= mark.ts, "an await arrow that goes back in time");
    arrows.push([inner(start), inner(mark)]);
  }
  return arrows.sort();
}

const minor = (python: TestPython) => Number(python.version.split(".")[1]);
const monitoring = (python: TestPython) => minor(python) >= 12;
// The oldest and the newest, and 3.12 when present (the first with the monitoring engine).
const all = [...oldestAndNewest()];
for (const python of TEST_PYTHONS) {
  if (minor(python) === 12 && !all.includes(python)) all.push(python);
}

for (const python of all) {
  for (const collector of COLLECTORS) {
    Deno.test(`await arrows: Python ${python.version}, ${collector} collector`, async () => {
      const { outcome, trace } = await traceProgram(python.path, collectorOptions(collector), [
        AWAITS,
      ]);
      assert.equal(outcome.code, 0, outcome.stderr);
      assert.equal(outcome.stdout, "1 2 None [0, 1]\n");
      const arrows = awaitArrows(trace);
      if (!monitoring(python)) {
        assert.deepEqual(arrows, []);
        return;
      }
      assert.deepEqual(arrows, [
        ["Future.set_result", "getter"], // a future the setter task completes
        ["child", "waiter"], // a task awaiting a task
        ["leaf", "main"], // gather of two tasks, awaited in main's task
        ["leaf", "main"],
        ["waiter", "main"], // main awaits the waiter task
      ]);
    });
  }
}
