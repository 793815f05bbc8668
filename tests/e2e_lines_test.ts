/**
 * End-to-end tests of `--lines`: `tests/programs/lines.py` runs a loop of
 * three iterations over two body lines, a function no pattern selects and
 * a generator whose resumptions run different lines. Traced on every
 * interpreter present with both collectors (3.12+ through
 * sys.monitoring's LINE, before through the trace function), into
 * Catapult JSON and Perfetto protobuf, which must agree.
 */
import assert from "node:assert/strict";
import { readPerfetto } from "../mod.ts";
import { collectorOptions, COLLECTORS } from "./_collectors.ts";
import { TEST_PYTHONS } from "./_pythons.ts";
import { runPanopticon, runPython, tempDir } from "./_run.ts";
import { encloses, readTrace, slices, type Trace, type TraceEvent } from "./_trace.ts";

const PROGRAM = new URL("./programs/lines.py", import.meta.url).pathname;
const SELECT = ["--lines", "function:loop", "--lines", "function:numbers"];

/** The lines of `loop`: `total = 0`, then the `for` line and its two body lines three times. */
const LOOP = [7, 8, 9, 10, 8, 9, 10, 8, 9, 10, 8, 11];
const TEXT: Record<number, string> = {
  7: "total = 0",
  8: "for i in range(3):",
  9: "total += i",
  10: "total *= 2",
  11: "return total",
  21: "yield 1",
  22: "x = 2",
  23: "yield x",
};

const isLine = (event: TraceEvent) => event.cat === "line";

/** The innermost slice (not a line instant) that holds the line instant `line`. */
function holder(trace: Trace, line: TraceEvent): TraceEvent | undefined {
  let best: TraceEvent | undefined;
  for (const candidate of slices(trace)) {
    if (isLine(candidate) || !encloses(candidate, line)) continue;
    if (!best || (candidate.dur ?? 0) < (best.dur ?? 0)) best = candidate;
  }
  return best;
}

/** Each line instant as [its holder's name and start, its line]: what both formats must agree on. */
type Placed = [string, number, number];

for (const python of TEST_PYTHONS) {
  for (const collector of COLLECTORS) {
    Deno.test(`--lines on Python ${python.version} with the ${collector} collector`, async (t) => {
      const expected = await runPython(python.path, [PROGRAM]);
      const dir = await tempDir();
      try {
        const run = (output: string) =>
          runPanopticon([
            "--python",
            python.path,
            ...collectorOptions(collector),
            ...SELECT,
            "-o",
            `${dir.path}/${output}`,
            PROGRAM,
          ]);
        const outcome = await run("lines.json");
        const trace = await readTrace(`${dir.path}/lines.json`);
        const lines = slices(trace).filter(isLine);

        await t.step("the program runs as under python", () => {
          assert.equal(outcome.code, expected.code, outcome.stderr);
          assert.equal(outcome.stdout, expected.stdout);
        });

        await t.step("a loop's lines in order, with their counts and text, in its slice", () => {
          const [loop] = slices(trace, "loop");
          assert.ok(loop);
          const inLoop = lines.filter((line) => holder(trace, line) === loop);
          assert.deepEqual(inLoop.map((line) => line.args?.line), LOOP);
          assert.deepEqual(inLoop.map((line) => line.name), LOOP.map((n) => `line ${n}`));
          assert.deepEqual(inLoop.map((line) => line.args?.text), LOOP.map((n) => TEXT[n]));
          assert.ok(inLoop.every((line) => line.dur === 0));
        });

        await t.step("unselected functions have no line instants", () => {
          const holders = new Set(lines.map((line) => holder(trace, line)?.name));
          assert.deepEqual([...holders].sort(), ["loop", "numbers"]);
          assert.equal(slices(trace, "unselected").length, 1);
        });

        await t.step("a generator's lines are in the slice of the resumption that ran them", () => {
          const steps = slices(trace, "numbers");
          assert.deepEqual(
            steps.map((step) =>
              lines.filter((line) => holder(trace, line) === step).map((line) => line.args?.line)
            ),
            [[21], [22, 23], []],
          );
        });

        await t.step("a Perfetto trace of the run agrees", async () => {
          const again = await run("lines.pftrace");
          assert.equal(again.code, 0, again.stderr);
          const file = await Deno.open(`${dir.path}/lines.pftrace`);
          const perfetto = await readPerfetto(file.readable, { strict: true });
          const byId = new Map(perfetto.slices.map((slice) => [slice.id, slice]));
          const starts = (name: string) =>
            perfetto.slices.filter((slice) => slice.name === name).map((slice) => slice.ts);
          const fromPerfetto: Placed[] = perfetto.slices
            .filter((slice) => slice.category === "line")
            .map((slice) => {
              const parent = byId.get(slice.parent ?? -1)!;
              return [
                parent.name,
                starts(parent.name).indexOf(parent.ts),
                slice.args.line as number,
              ];
            });
          const fromJson: Placed[] = lines.map((line) => {
            const parent = holder(trace, line)!;
            const index = slices(trace, parent.name).indexOf(parent);
            return [parent.name, index, line.args?.line as number];
          });
          assert.deepEqual(fromPerfetto, fromJson);
          assert.deepEqual(
            perfetto.slices.filter((slice) => slice.category === "line").map((s) => s.args.text),
            lines.map((line) => line.args?.text),
          );
        });
      } finally {
        await dir.remove();
      }
    });
  }
}
