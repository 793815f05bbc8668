/**
 * End-to-end tests of exceptions on the timeline (`--exceptions`,
 * src/exceptions.ts): `tests/programs/exceptions.py` raises them in every
 * way (propagated to the top, caught, swallowed, re-raised, chained,
 * StopIteration at the end of iteration, KeyboardInterrupt), traced on
 * every interpreter present with both collectors. The
 * program must run as under `python`, and the trace must show each raise
 * nested in the slice of the function that raised it, an arrow to where it
 * was caught, and which handlers swallowed it; in Perfetto's trace
 * processor too, when it is set up.
 */
import assert from "node:assert/strict";
import { collectorOptions, COLLECTORS } from "./_collectors.ts";
import { oldestAndNewest, TEST_PYTHONS, type TestPython } from "./_pythons.ts";
import { programStderr, runPanopticon, runPython, tempDir, traceProgram } from "./_run.ts";
import { parentOf, readTrace, slices, type Trace, type TraceEvent } from "./_trace.ts";

const PROGRAM = new URL("./programs/exceptions.py", import.meta.url).pathname;
const TP_QUERY = Deno.env.get("PANOPTICON_TP_QUERY") ??
  `${Deno.env.get("VIEWERS_HOME") ?? "/tmp/viewers"}/bin/tp_query`;

function minor(python: TestPython): number {
  return Number(python.version.split(".")[1]);
}

/** The exception instants of the program's own file. */
function instants(trace: Trace, name?: string): TraceEvent[] {
  return slices(trace).filter((event) =>
    event.cat === "exception" && String(event.args?.file).endsWith("exceptions.py") &&
    (name === undefined || event.name === name)
  );
}

/** The other end of an instant's flow arrow. */
function partner(trace: Trace, event: TraceEvent): TraceEvent | undefined {
  return slices(trace).find((other) =>
    other !== event && other.cat === "exception" && other.bind_id === event.bind_id
  );
}

function lineOf(event: TraceEvent | undefined): number | undefined {
  return event?.args?.line as number | undefined;
}

async function tpQuery(path: string, sql: string): Promise<unknown[][]> {
  const output = await new Deno.Command(TP_QUERY, { args: [path, sql], stdout: "piped" }).output();
  const lines = new TextDecoder().decode(output.stdout).trim().split("\n");
  return (JSON.parse(lines.at(-1)!) as { rows: unknown[][] }).rows;
}

function hasTpQuery(): boolean {
  try {
    return new Deno.Command(TP_QUERY, { stdout: "null", stderr: "null" }).outputSync().code === 2;
  } catch {
    return false;
  }
}

for (const python of TEST_PYTHONS) {
  for (const collector of COLLECTORS) {
    Deno.test(`exceptions on the timeline, on Python ${python.version} with the ${collector} collector`, async (t) => {
      const expected = await runPython(python.path, [PROGRAM]);
      const { outcome, trace } = await traceProgram(
        python.path,
        [...collectorOptions(collector), "--exceptions"],
        [PROGRAM],
      );

      await t.step("the program runs as under python", () => {
        assert.equal(outcome.code, expected.code);
        assert.equal(outcome.stdout, expected.stdout);
        assert.equal(programStderr(outcome.stderr), expected.stderr);
      });

      await t.step("each raise nests in the slice of the function that raised it", () => {
        const raises = instants(trace, "raise ValueError");
        // caught(), reraised(), chained() and propagated().
        assert.equal(raises.length, 4);
        for (const raise of raises) {
          assert.equal(parentOf(trace, raise)?.name, "inner");
          assert.equal(lineOf(raise), 8);
          assert.equal(raise.args?.message, "bad value");
          assert.equal(raise.dur, 0);
        }
      });

      await t.step("raised and propagated to the top: no arrow, not caught", () => {
        const last = instants(trace, "raise ValueError").at(-1)!;
        assert.equal(last.bind_id, undefined);
        assert.equal(last.args?.caught, undefined);
      });

      await t.step("caught: an arrow from the raise to the handler", () => {
        const raise = instants(trace, "raise ValueError")[0]!;
        assert.equal(raise.flow_out, true);
        const handler = partner(trace, raise)!;
        assert.equal(handler.flow_in, true);
        assert.equal(handler.name, "swallowed ValueError");
        assert.equal(lineOf(handler), 18);
        assert.equal(parentOf(trace, handler)?.name, "caught");
        assert.match(String(raise.args?.caught), /exceptions\.py:18$/);
      });

      await t.step("swallowed: marked, and listed with how many times", () => {
        const swallowed = instants(trace, "swallowed KeyError");
        assert.equal(swallowed.length, 4);
        for (const handler of swallowed) {
          assert.equal(handler.args?.swallowed, true);
          assert.equal(parentOf(trace, handler)?.name, "swallowed");
          assert.equal(partner(trace, handler)?.args?.swallowed, true);
        }
        const list = trace.otherData?.swallowed_exceptions as Record<string, unknown>[];
        const row = list.find((entry) =>
          entry.type === "KeyError" && String(entry.raised).endsWith("exceptions.py:24")
        );
        assert(row, JSON.stringify(list));
        assert.match(String(row.swallowed), /exceptions\.py:25$/);
        assert.equal(row.count, 4);
      });

      await t.step("re-raised: caught where it ends, not where it was re-raised", () => {
        const handlers = instants(trace).filter((event) => lineOf(event) === 76);
        assert.equal(handlers.length, 1);
        assert.equal(parentOf(trace, handlers[0]!)?.name, "main");
        assert.equal(instants(trace).filter((event) => lineOf(event) === 32).length, 0);
      });

      await t.step("chained: caught and replaced, the new one raised and swallowed", () => {
        const [replaced] = instants(trace, "caught ValueError");
        assert(replaced);
        assert.equal(lineOf(replaced), 39);
        assert.equal(replaced.args?.swallowed, false);
        assert.equal(replaced.args?.replaced_by, "RuntimeError");
        const [wrapped] = instants(trace, "raise RuntimeError");
        assert.equal(wrapped?.args?.message, "wrapped");
        assert.equal(lineOf(partner(trace, wrapped!)), 80);
      });

      await t.step("StopIteration at the end of iteration is not recorded", () => {
        assert.deepEqual(slices(trace).filter((e) => /StopIteration/.test(e.name)), []);
      });
    });
  }

  for (const collector of COLLECTORS) {
    // The Python collector's own callbacks may be where Ctrl-C's handler
    // runs before 3.12, which stops recording (docs/reliability.md): there
    // the program must still be unchanged, and the exception recorded
    // only if it was raised in the program's own code.
    const limited = collector === "python" && minor(python) < 12;
    Deno.test({
      name:
        `a KeyboardInterrupt is recorded and caught, on Python ${python.version} with the ${collector} collector`,
      async fn() {
        const { outcome, trace } = await traceProgram(
          python.path,
          [...collectorOptions(collector), "--exceptions"],
          [PROGRAM, "interrupt"],
        );
        assert.equal(outcome.code, 0, outcome.stderr);
        const [raise] = instants(trace, "raise KeyboardInterrupt");
        if (limited && raise === undefined) {
          assert.match(outcome.stderr, /^panopticon: wrote /m, "the trace is written");
          return;
        }
        assert(raise);
        assert.equal(parentOf(trace, raise)?.name, "interrupted");
        assert.equal(partner(trace, raise)?.name, "swallowed KeyboardInterrupt");
      },
    });
  }

  Deno.test(`exceptions are ${minor(python) >= 12 ? "on" : "off"} by default on Python ${python.version}`, async () => {
    const { trace } = await traceProgram(python.path, [], [PROGRAM]);
    assert.equal(instants(trace).length > 0, minor(python) >= 12);
    const { trace: off } = await traceProgram(python.path, ["--no-exceptions"], [PROGRAM]);
    assert.equal(instants(off).length, 0);
  });
}

Deno.test({
  name: "exceptions are queryable in Perfetto's trace processor: args and flows",
  ignore: !hasTpQuery() || oldestAndNewest().length === 0,
  async fn() {
    const python = oldestAndNewest().at(-1)!;
    const dir = await tempDir();
    try {
      const output = `${dir.path}/trace.json`;
      await runPanopticon(["--python", python.path, "-o", output, "--exceptions", PROGRAM]);
      await readTrace(output);
      const swallowed = await tpQuery(
        output,
        "select count(*) from slice s join args a using(arg_set_id) where s.name = " +
          "'swallowed KeyError' and a.key = 'args.swallowed' and a.int_value = 1",
      );
      assert(Number(swallowed[0]![0]) >= 4, JSON.stringify(swallowed));
      const flows = await tpQuery(
        output,
        "select count(*) from flow f join slice a on f.slice_out = a.id join slice b on " +
          "f.slice_in = b.id where a.name = 'raise KeyError' and b.name = 'swallowed KeyError'",
      );
      assert(Number(flows[0]![0]) >= 4, JSON.stringify(flows));
    } finally {
      await dir.remove();
    }
  },
});
