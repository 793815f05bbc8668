/**
 * End-to-end tests of the filter options (`--include`, `--exclude-stdlib`,
 * `--no-c-calls`, `--max-depth`): `tests/programs/filtered.py` traced by the
 * real command line on the oldest and the newest interpreter present (the
 * newest with both engines when it has `sys.monitoring`). Each filtered run
 * must leave the program unchanged and the trace must hold exactly what the
 * filter lets through, with nesting and flow arrows intact.
 */
import assert from "node:assert/strict";
import { collectorOptions, COLLECTORS, type TestCollector } from "./_collectors.ts";
import { oldestAndNewest, type TestPython } from "./_pythons.ts";
import { type Outcome, programStderr, runPython, traceProgram } from "./_run.ts";
import { flowChains, parentOf, slices, type Trace, type TraceEvent } from "./_trace.ts";

const PROGRAM = new URL("./programs/filtered.py", import.meta.url).pathname;

function minor(python: TestPython): number {
  return Number(python.version.split(".")[1]);
}

/** An interpreter, an engine and a collector. */
interface Setting {
  python: TestPython;
  engine: string;
  collector: TestCollector;
}

/** Traces the program with `options`; returns the outcome and the parsed trace. */
function trace({ python, engine, collector }: Setting, options: string[]) {
  return traceProgram(
    python.path,
    [...collectorOptions(collector), "--engine", engine, ...options],
    [PROGRAM],
  );
}

const plainRuns = new Map<string, Promise<Outcome>>();

/** Traces the program and asserts that it ran exactly as under plain `python`. */
async function traceUnchanged(setting: Setting, options: string[]) {
  const { python, engine } = setting;
  let plain = plainRuns.get(python.path);
  if (plain === undefined) {
    plain = runPython(python.path, [PROGRAM]);
    plainRuns.set(python.path, plain);
  }
  const expected = await plain;
  const { outcome, trace: traced } = await trace(setting, options);
  assert.deepEqual(outcome.code, expected.code, `exit status differs:\n${outcome.stderr}`);
  // The program prints the PANOPTICON_* variables it sees: none, so the
  // collector removed PANOPTICON_FILTERS too.
  assert.deepEqual(outcome.stdout, expected.stdout, "stdout differs");
  assert.deepEqual(programStderr(outcome.stderr), expected.stderr, "stderr differs");
  assert.deepEqual(traced.otherData?.engine, engine);
  return traced;
}

/** Where the interpreter keeps its standard library, and its site-packages inside it. */
async function stdlibOf(python: TestPython): Promise<{ stdlib: string[]; sitePackages: string[] }> {
  const outcome = await runPython(python.path, [
    "-c",
    "import json, sysconfig; p = sysconfig.get_paths(); print(json.dumps(" +
    "[[p['stdlib'], p['platstdlib']], [p['purelib'], p['platlib']]]))",
  ]);
  assert.deepEqual(outcome.code, 0, outcome.stderr);
  const [stdlib, sitePackages] = JSON.parse(outcome.stdout) as [string[], string[]];
  return { stdlib, sitePackages };
}

/** True for a file of the standard library or the import machinery. */
function isStdlibFile(
  file: string,
  paths: { stdlib: string[]; sitePackages: string[] },
): boolean {
  if (file.startsWith("<frozen ")) return true;
  const under = (dir: string) => file.startsWith(dir.endsWith("/") ? dir : `${dir}/`);
  return paths.stdlib.some(under) && !paths.sitePackages.some(under);
}

function fileOf(slice: TraceEvent): string | undefined {
  const file = slice.args?.file;
  return file === undefined ? undefined : String(file);
}

function isProgramFile(file: string | undefined): boolean {
  return file !== undefined && file.endsWith("filtered.py");
}

/** The program's slices and C calls: everything but the collector's own flushes. */
function recorded(t: Trace): TraceEvent[] {
  // Neither the collector's flushes nor the runtime's garbage collections
  // are code that a filter selects, nor are they subject to --max-depth.
  return slices(t).filter((s) => s.cat !== "panopticon" && s.cat !== "gc");
}

/** The innermost recorded slice enclosing `slice`, ignoring the collector's flushes. */
function callerOf(t: Trace, slice: TraceEvent): TraceEvent | undefined {
  const parent = parentOf(t, slice);
  if (parent?.cat === "panopticon") throw new Error(`${slice.name} nests in a flush`);
  return parent;
}

/**
 * The depth of every recorded slice, 1 for a thread's outermost: a sweep
 * per thread with a stack of the enclosing slices. A slice that starts just
 * as another ends is its sibling.
 */
function depths(t: Trace): Map<TraceEvent, number> {
  const result = new Map<TraceEvent, number>();
  const byThread = new Map<number, TraceEvent[]>();
  for (const slice of recorded(t)) {
    byThread.set(slice.tid, [...(byThread.get(slice.tid) ?? []), slice]);
  }
  for (const own of byThread.values()) {
    own.sort((a, b) => a.ts - b.ts || (b.dur ?? 0) - (a.dur ?? 0));
    const stack: number[] = [];
    for (const slice of own) {
      while (stack.length > 0 && stack[stack.length - 1]! <= slice.ts + 1e-6) stack.pop();
      result.set(slice, stack.length + 1);
      stack.push(slice.ts + (slice.dur ?? 0));
    }
  }
  return result;
}

function assertWellFormedChain(chain: TraceEvent[]) {
  assert(chain.length >= 2, "a chain joins at least two slices");
  assert(chain[0]!.flow_out && !chain[0]!.flow_in, "a chain starts with flow_out only");
  assert(chain[chain.length - 1]!.flow_in, "a chain ends with flow_in");
  for (const middle of chain.slice(1, -1)) {
    assert(middle.flow_in && middle.flow_out, "a middle slice has flow_in and flow_out");
  }
}

/** The one `outer` slice; the `numbers` generator's chain, nested in it, well formed. */
function assertOuterAndGenerator(t: Trace): TraceEvent {
  const outers = slices(t, "outer");
  assert.deepEqual(outers.length, 1, "one outer slice");
  const outer = outers[0]!;
  const chains = [...flowChains(t).values()].filter((chain) => chain[0]?.name === "numbers");
  assert.deepEqual(chains.length, 1, "one flow chain joins the generator's slices");
  const chain = chains[0]!;
  assert.deepEqual(chain.length, 4, "numbers(3): three yields and a final return");
  assert.deepEqual(chain.length, slices(t, "numbers").length);
  assertWellFormedChain(chain);
  for (const slice of chain) {
    assert.deepEqual(slice.cat, "generator");
    assert.deepEqual(callerOf(t, slice)?.name, "outer", "the generator runs inside outer");
  }
  return outer;
}

const PYTHONS = oldestAndNewest();
console.log(`filter end-to-end tests run on Python ${PYTHONS.map((p) => p.version).join(", ")}`);

for (const python of PYTHONS) {
  for (const collector of COLLECTORS) {
    const engines = minor(python) >= 12 ? ["monitoring", "setprofile"] : ["setprofile"];
    for (const engine of engines) {
      const on = `on Python ${python.version} (${collector} collector, ${engine})`;
      const setting: Setting = { python, engine, collector };

      Deno.test(`filtered.py without filters records the library, C calls and deep stacks ${on}`, async () => {
        // What the filters below must take away is there to begin with.
        const t = await traceUnchanged(setting, []);
        const paths = await stdlibOf(python);
        assert(recorded(t).some((s) => isStdlibFile(fileOf(s) ?? "", paths)), "stdlib slices");
        assert.deepEqual(slices(t, "json.dumps").length, 1);
        assert(slices(t, "isinstance").length > 0, "C calls made by json");
        const callback = slices(t, "encode_point");
        assert.deepEqual(callback.length, 1);
        assert.notDeepEqual(callerOf(t, callback[0]!)?.name, "outer", "json calls encode_point");
        assertOuterAndGenerator(t);
        assert(Math.max(...depths(t).values()) > 2, "slices deeper than 2");
      });

      Deno.test(`--exclude-stdlib leaves out the standard library, keeps nesting and flows ${on}`, async () => {
        const t = await traceUnchanged(setting, ["--exclude-stdlib"]);
        const paths = await stdlibOf(python);
        for (const slice of recorded(t)) {
          const file = fileOf(slice);
          assert(
            file === undefined || !isStdlibFile(file, paths),
            `${slice.name} from the standard library (${file})`,
          );
          if (slice.cat === "c_function") {
            // C calls follow their caller: json's own isinstance and str.join go.
            const caller = callerOf(t, slice);
            assert(
              isProgramFile(caller && fileOf(caller)),
              `${slice.name} called from ${caller?.name} (${caller && fileOf(caller)})`,
            );
          } else {
            assert(isProgramFile(file), `${slice.name} (${file}) is not the program's`);
          }
        }
        assert.deepEqual(slices(t, "json.dumps").length, 0);
        assert.deepEqual(slices(t, "isinstance").length, 0, "json's C calls are left out");
        const outer = assertOuterAndGenerator(t);
        const callback = slices(t, "encode_point");
        assert.deepEqual(callback.length, 1, "the callback json makes is recorded");
        assert.deepEqual(callerOf(t, callback[0]!), outer, "and nests directly inside outer");
        assert.deepEqual(callerOf(t, slices(t, "len")[0]!), outer, "outer's own C call stays");
        assert(slices(t, "<module>").length === 1, "the program's <module> stays");
      });

      Deno.test(`--include function:outer records only outer and the C calls it makes ${on}`, async () => {
        const t = await traceUnchanged(setting, ["--include", "function:outer"]);
        const outers = slices(t, "outer");
        assert.deepEqual(outers.length, 1, "one outer slice");
        for (const slice of recorded(t)) {
          if (slice.name === "outer") continue;
          assert.deepEqual(slice.cat, "c_function", `${slice.name} (${slice.cat}) recorded`);
          assert.deepEqual(callerOf(t, slice), outers[0], `${slice.name} not called by outer`);
        }
        assert.deepEqual(slices(t, "len").length, 1, "outer's len(text) is recorded");
        for (const name of ["<module>", "encode_point", "numbers", "json.dumps", "print"]) {
          assert.deepEqual(slices(t, name).length, 0, `${name} is left out`);
        }
      });

      Deno.test(`--no-c-calls records no C function ${on}`, async () => {
        const t = await traceUnchanged(setting, ["--no-c-calls"]);
        const cCalls = recorded(t).filter((s) => s.cat === "c_function");
        assert.deepEqual(cCalls.map((s) => s.name), [], "no c_function slice");
        assert.deepEqual(slices(t, "json.dumps").length, 1, "Python calls stay");
        assert.deepEqual(slices(t, "encode_point").length, 1);
        assertOuterAndGenerator(t);
      });

      Deno.test(`--max-depth 2 records no slice deeper than 2 ${on}`, async () => {
        const t = await traceUnchanged(setting, ["--max-depth", "2"]);
        const byDepth = depths(t);
        for (const [slice, depth] of byDepth) {
          assert(depth <= 2, `${slice.name} at depth ${depth}`);
        }
        const outer = slices(t, "outer");
        assert.deepEqual(outer.length, 1, "outer, at depth 2, stays");
        assert.deepEqual(byDepth.get(outer[0]!), 2);
        assert.deepEqual(slices(t, "<module>").length, 1);
        for (const name of ["json.dumps", "encode_point", "numbers", "len"]) {
          assert.deepEqual(slices(t, name).length, 0, `${name}, deeper than 2, is left out`);
        }
      });
    }
  }
}
