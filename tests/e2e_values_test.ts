/**
 * End-to-end tests of `--args` and `--returns`: `tests/programs/values.py`
 * calls functions with every kind of parameter, a method, a generator, a
 * value whose `__repr__` raises, a huge string, an argument kept alive by
 * nothing but the trace, and a function no pattern selects. Traced on every
 * interpreter present with both collectors, into
 * Catapult JSON and Perfetto protobuf. The Python collector reads
 * arguments on 3.13+ only (frame.f_locals is a view there; before, it is a
 * copy the frame keeps): before 3.13 it records returns and yields, and
 * says so.
 */
import assert from "node:assert/strict";
import { readPerfetto } from "../mod.ts";
import { collectorOptions, COLLECTORS, type TestCollector } from "./_collectors.ts";
import { TEST_PYTHONS, type TestPython } from "./_pythons.ts";
import { programStderr, runPanopticon, runPython, tempDir, traceProgram } from "./_run.ts";
import { slices, type Trace } from "./_trace.ts";

const PROGRAM = new URL("./programs/values.py", import.meta.url).pathname;
const SELECT = [
  "--args",
  "module:__main__",
  "--returns",
  "module:__main__",
  "--exclude",
  "function:main",
];

function readsArguments(python: TestPython, collector: TestCollector): boolean {
  return collector === "native" || Number(python.version.split(".")[1]) >= 13;
}

/** The args of the slices named `name`, in time order, without file and line. */
function valuesOf(trace: Trace, name: string): Record<string, unknown>[] {
  return slices(trace, name).sort((a, b) => a.ts - b.ts).map((event) => {
    const { file: _file, line: _line, ...rest } = event.args ?? {};
    return rest;
  });
}

const OBJECT = /^<__main__\.(\w+) object at 0x[0-9a-f]+>$/;

for (const python of TEST_PYTHONS) {
  for (const collector of COLLECTORS) {
    const withArgs = readsArguments(python, collector);
    Deno.test(`--args and --returns on Python ${python.version} with the ${collector} collector`, async (t) => {
      const expected = await runPython(python.path, [PROGRAM]);
      const { outcome, trace } = await traceProgram(
        python.path,
        [...collectorOptions(collector), ...SELECT, "--exclude", "function:unselected"],
        [PROGRAM],
      );

      await t.step("the program runs as under python, and nothing is kept alive", () => {
        assert.equal(outcome.code, expected.code);
        assert.equal(outcome.stdout, expected.stdout);
        assert.match(outcome.stdout, /^gone$/m);
        if (withArgs) assert.equal(programStderr(outcome.stderr), expected.stderr);
        else assert.match(outcome.stderr, /--args needs the native collector before Python 3\.13/);
      });

      await t.step("positional, keyword-only, *args and **kwargs by parameter name", () => {
        const args = (values: Record<string, unknown>) => withArgs ? values : {};
        assert.deepEqual(valuesOf(trace, "positional"), [
          { ...args({ a: "1", b: "2", c: "3" }), return: "6" },
        ]);
        assert.deepEqual(valuesOf(trace, "keyword_only"), [
          { ...args({ a: "'x'", key: "[1, 2]", flag: "True" }), return: "('x', [1, 2], True)" },
        ]);
        assert.deepEqual(valuesOf(trace, "star"), [
          {
            ...args({
              first: "0",
              "*args": "(1, 2)",
              "**kwargs": "{'name': 'n', 'other': {'k': None}}",
            }),
            return: "4",
          },
        ]);
        assert.deepEqual(valuesOf(trace, "captured").map((values) => values.value), [
          withArgs ? "'in a cell'" : undefined,
        ]);
      });

      await t.step("a method's self shown as its type", () => {
        const [moved] = valuesOf(trace, "Point.moved");
        assert.match(String(moved?.return), OBJECT);
        if (withArgs) {
          assert.equal(OBJECT.exec(String(moved?.self))?.[1], "Point");
          assert.equal(moved?.dx, "5");
        }
      });

      await t.step("a generator's slices carry what each yield produced", () => {
        const values = valuesOf(trace, "numbers");
        assert.deepEqual(values.map((v) => v.yield ?? v.return), ["0", "10", "20", "'done'"]);
        assert.equal(values[0]!.n, withArgs ? "3" : undefined);
      });

      await t.step("a value whose __repr__ raises, without --repr; a huge string, cut", () => {
        const [hostile] = valuesOf(trace, "hostile");
        assert.equal(OBJECT.exec(String(hostile?.return))?.[1], "Hostile");
        const [huge] = valuesOf(trace, "huge");
        assert.equal(huge?.return, "100000");
        if (withArgs) {
          assert.match(String(huge?.text), /^'z{200}'\.\.\. \(100000 characters\)$/);
        }
      });

      await t.step("a parameter named file or line leaves the slice's place as it is", () => {
        const located = slices(trace, "located").sort((a, b) => a.ts - b.ts);
        assert.equal(located.length, 2);
        for (const slice of located) {
          assert.equal(slice.args?.file, PROGRAM, "the function's file");
          assert.equal(typeof slice.args?.line, "number", "the function's first line");
        }
        assert.deepEqual(
          located.map((
            slice,
          ) => [slice.args?.["file (argument)"], slice.args?.["line (argument)"]]),
          withArgs ? [["'notes.txt'", "1"], ["'notes.txt'", "7"]] : [[undefined, undefined], [
            undefined,
            undefined,
          ]],
        );
        assert.deepEqual(located.map((slice) => slice.args?.return), ["1", "7"]);
      });

      await t.step("panopticon summary tallies the values per function and name", async () => {
        const dir = await tempDir();
        try {
          const file = `${dir.path}/trace.json`;
          await Deno.writeTextFile(file, JSON.stringify(trace));
          const summary = await runPanopticon(["summary", file, "--json", "--top", "100"]);
          assert.equal(summary.code, 0, summary.stderr);
          const values: {
            function: string;
            name: string;
            slices: number;
            distinct: number;
            top: [string, number][];
          }[] = JSON.parse(summary.stdout).values;
          const of = (fn: string) =>
            values.filter((v) => v.function === fn).map((
              v,
            ) => [v.name, v.slices, v.distinct, v.top]);
          assert.deepEqual(
            of("located"),
            [
              ...(withArgs
                ? [["file (argument)", 2, 1, [["'notes.txt'", 2]]], ["line (argument)", 2, 2, [[
                  "1",
                  1,
                ], ["7", 1]]]]
                : []),
              ["return", 2, 2, [["1", 1], ["7", 1]]],
            ],
          );
          assert.deepEqual(of("numbers"), [
            ...(withArgs ? [["n", 1, 1, [["3", 1]]]] : []),
            ["yield", 3, 3, [["0", 1], ["10", 1], ["20", 1]]],
            ["return", 1, 1, [["'done'", 1]]],
          ]);
          assert.deepEqual(of("unselected"), [], "no values, no row");
        } finally {
          await dir.remove();
        }
      });

      await t.step("unselected functions carry no values", () => {
        for (const name of ["main", "unselected"]) {
          for (const values of valuesOf(trace, name)) assert.deepEqual(values, {});
        }
      });
    });

    Deno.test(`--repr guards a raising __repr__ on Python ${python.version} with the ${collector} collector`, async () => {
      const { outcome, trace } = await traceProgram(
        python.path,
        [...collectorOptions(collector), "--repr", "--returns", "function:hostile"],
        [PROGRAM],
      );
      assert.equal(outcome.code, 0);
      assert.deepEqual(valuesOf(trace, "hostile"), [
        { return: "<repr failed: RuntimeError: no repr for you>" },
      ]);
      assert.deepEqual(valuesOf(trace, "positional"), [{}]);
    });

    Deno.test(`--args and --returns in a Perfetto trace on Python ${python.version} with the ${collector} collector`, async () => {
      const dir = await tempDir();
      try {
        const output = `${dir.path}/values.pftrace`;
        const outcome = await runPanopticon([
          "--python",
          python.path,
          ...collectorOptions(collector),
          ...SELECT,
          "-o",
          output,
          PROGRAM,
        ]);
        assert.equal(outcome.code, 0, outcome.stderr);
        const file = await Deno.open(output);
        const perfetto = await readPerfetto(file.readable, { strict: true });
        const positional = perfetto.slices.find((slice) => slice.name === "positional");
        assert.equal(positional?.args.return, "6");
        assert.equal(positional?.args.a, withArgs ? "1" : undefined);
        const yields = perfetto.slices.filter((slice) => slice.name === "numbers")
          .map((slice) => slice.args.yield ?? slice.args.return);
        assert.deepEqual(yields, ["0", "10", "20", "'done'"]);
      } finally {
        await dir.remove();
      }
    });
  }
}
