/**
 * End-to-end tests of the Perfetto protobuf trace: real programs traced to
 * `.pftrace` (and gzipped), read back with the reader of `src/`, and loaded
 * into Perfetto's trace processor, the engine of ui.perfetto.dev; and one
 * recording converted to both formats, which must show the same slices,
 * threads, names, args, flows and counters.
 *
 * The trace processor is `tp_query` (see `_viewer.ts`); where it is not set
 * up, the tests that need it are ignored, and say so.
 */
import assert from "node:assert/strict";
import { readPerfetto } from "../mod.ts";
import type { PerfettoTrace } from "../src/perfetto_reader.ts";
import { oldestAndNewest, TEST_PYTHONS, type TestPython } from "./_pythons.ts";
import { runPanopticon, runPython, tempDir } from "./_run.ts";
import { readTrace, type Trace } from "./_trace.ts";
import { ERROR_STATS, query, type Rows, viewerIgnored } from "./_viewer.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const ASYNC_HELLO = `${ROOT}examples/async_hello.py`;
const NO_VIEWER = viewerIgnored("tests/e2e_perfetto_test.ts");

function minor(python: TestPython): number {
  return Number(python.version.split(".")[1]);
}

/** Traces `args` into `dir/name`, which must be written. */
async function traceInto(python: TestPython, dir: string, name: string, args: string[]) {
  const output = `${dir}/${name}`;
  const outcome = await runPanopticon(["--python", python.path, "-o", output, ...args]);
  assert.equal(outcome.code, 0, outcome.stderr);
  return { output, outcome };
}

/** The slices named `name`, in time order. */
function named(trace: PerfettoTrace, name: string) {
  return trace.slices.filter((slice) => slice.name === name);
}

/** How many arrows join the slices named `name` to one another. */
function arrows(trace: PerfettoTrace, name: string): number {
  return trace.flows.filter((flow) =>
    trace.slices[flow.from]!.name === name && trace.slices[flow.to]!.name === name
  ).length;
}

for (const python of TEST_PYTHONS) {
  const engines = minor(python) >= 12 ? ["monitoring", "setprofile"] : ["setprofile"];
  for (const engine of engines) {
    Deno.test(`async_hello.py traces to a protobuf trace on Python ${python.version} (${engine})`, async () => {
      const dir = await tempDir();
      try {
        const { output, outcome } = await traceInto(python, dir.path, "hello.pftrace", [
          "--engine",
          engine,
          ASYNC_HELLO,
        ]);
        assert.equal(outcome.stdout, "Hello, world!\n");
        assert.match(
          outcome.stderr,
          /^panopticon: wrote \S+hello\.pftrace \(\d+(\.\d)? [kM]?B\) — /,
        );
        const trace = await readPerfetto((await Deno.open(output)).readable, { strict: true });

        const genText = named(trace, "gen_text");
        assert.equal(genText.length, 14, "gen_text: 13 yields and a final return");
        assert.ok(genText.every((s) => s.category === "generator" && s.file === ASYNC_HELLO));
        assert.equal(
          arrows(trace, "gen_text"),
          13,
          "one arrow from each gen_text slice to the next",
        );
        const printSlowly = named(trace, "print_slowly");
        assert.equal(printSlowly.length, 14);
        assert.ok(printSlowly.every((s) => s.category === "coroutine"));
        assert.equal(arrows(trace, "print_slowly"), 13);
        const prints = named(trace, "print");
        assert.equal(prints.length, 14);
        assert.ok(prints.every((s) => s.category === "c_function" && s.file === undefined));
        assert.equal(
          prints.filter((p) => printSlowly.some((c) => c.id === p.parent)).length,
          13,
          "13 prints inside print_slowly",
        );
        const module = trace.slices.find((s) => s.name === "<module>" && s.depth === 0)!;
        assert.deepEqual([module.file, module.line, module.thread], [ASYNC_HELLO, 1, "MainThread"]);
        assert.ok(trace.slices.every((s) => s.dur >= 0), "every slice ended");
        assert.equal(trace.metadata.complete, true);
        assert.equal(trace.metadata.engine, engine);
        // The summary counts the threads' slices: not the tasks' tracks, nor
        // the instants that the tasks' creation arrows join.
        const threadSlices = trace.slices.filter((s) =>
          s.tid !== undefined && !(s.instant && s.category === "asyncio")
        );
        assert.equal(trace.metadata.slices, threadSlices.length);
        assert.equal(trace.metadata.unfinished, 0);
      } finally {
        await dir.remove();
      }
    });
  }
}

for (const python of oldestAndNewest()) {
  Deno.test({
    name:
      `async_hello.py's protobuf trace loads into Perfetto's trace processor (Python ${python.version})`,
    ignore: NO_VIEWER,
    async fn() {
      const dir = await tempDir();
      try {
        const { output } = await traceInto(python, dir.path, "hello.pftrace", [ASYNC_HELLO]);
        const loaded = await query(
          output,
          ERROR_STATS,
          "select name, count(*) as n from slice where name in ('gen_text', 'print_slowly') group by name order by name",
          `select so.name as name, count(*) as n from flow f join slice so on so.id = f.slice_out
             join slice si on si.id = f.slice_in where so.name = si.name
             and so.name in ('gen_text', 'print_slowly') group by so.name order by so.name`,
          `select t.name, count(*) as n from slice s join thread_track tt on s.track_id = tt.id
             join thread t using(utid) where s.category is not 'asyncio' group by t.name`,
          "select str_value, int_value from metadata where name in ('cr-complete', 'cr-slices') order by name",
        );
        assert.ok(loaded.parsed, loaded.message);
        const [stats, counts, flows, threads, metadata] = loaded.results as Rows[];
        assert.deepEqual(stats, [], "0 error statistics");
        assert.deepEqual(counts, [{ name: "gen_text", n: "14" }, {
          name: "print_slowly",
          n: "14",
        }]);
        assert.deepEqual(flows, [{ name: "gen_text", n: "13" }, { name: "print_slowly", n: "13" }]);
        assert.equal(threads!.length, 1);
        assert.equal(threads![0]!.name, "MainThread");
        // Every slice is on the thread's track, as many as the summary says.
        assert.equal(metadata![0]!.int_value, "1");
        assert.equal(metadata![1]!.int_value, threads![0]!.n);
      } finally {
        await dir.remove();
      }
    },
  });
}

/**
 * Records `tests/programs/perfetto_mix.py` once, in a plain python process
 * (the module `panopticon` writes NDJSON), and converts the records to a
 * JSON and a protobuf trace, plain and gzipped.
 */
async function recordMix(python: TestPython, dir: string) {
  const module = await runPanopticon(["python-module"]);
  assert.equal(module.code, 0, module.stderr);
  await Deno.writeTextFile(`${dir}/panopticon.py`, module.stdout);
  await Deno.copyFile(`${ROOT}tests/programs/perfetto_mix.py`, `${dir}/perfetto_mix.py`);
  // No `panopticon` on PATH: the records stay in mix.ndjson.
  const ran = await runPython(python.path, ["perfetto_mix.py"], {
    cwd: dir,
    env: { PATH: "/nonexistent" },
  });
  assert.equal(ran.code, 0, ran.stderr);
  const outputs = ["mix.json", "mix.pftrace", "mix.json.gz", "mix.pftrace.gz"];
  for (const output of outputs) {
    const converted = await runPanopticon(["convert", "mix.ndjson", "-o", output], { cwd: dir });
    assert.equal(converted.code, 0, converted.stderr);
  }
  return outputs.map((output) => `${dir}/${output}`);
}

/** A slice, the same way for both formats: times in ns, args without their prefixes. */
interface Shown {
  ts: number;
  dur: number;
  name: string;
  category: string;
  tid: number;
  args: Record<string, unknown>;
}

/** The JSON trace's slices and instants as {@linkcode Shown}, the file and line among the args. */
function shownInJson(trace: Trace): Shown[] {
  return trace.traceEvents
    .filter((event) => event.ph === "X" || event.ph === "i")
    .map((event) => ({
      ts: Math.round(event.ts * 1000),
      dur: Math.round((event.dur ?? 0) * 1000),
      name: event.name,
      category: event.cat ?? "",
      tid: event.tid,
      args: Object.fromEntries(
        Object.entries(event.args ?? {}).filter(([, value]) => value !== null),
      ),
    }))
    .sort(byShown);
}

function shownInProtobuf(trace: PerfettoTrace): Shown[] {
  return trace.slices.map((slice) => {
    const args: Record<string, unknown> = { ...slice.args };
    if (slice.file !== undefined) args.file = slice.file;
    if (slice.line !== undefined) args.line = slice.line;
    return {
      ts: slice.ts,
      dur: slice.dur,
      name: slice.name,
      category: slice.category,
      tid: slice.tid!,
      args,
    };
  }).sort(byShown);
}

function byShown(a: Shown, b: Shown): number {
  return a.ts - b.ts || b.dur - a.dur || a.tid - b.tid || a.name.localeCompare(b.name);
}

/** The JSON trace's flow arrows, as `from ts name -> to ts name`, from its `bind_id` chains. */
function jsonArrows(trace: Trace): string[] {
  const chains = new Map<string, Shown[]>();
  for (const event of trace.traceEvents) {
    if (event.ph !== "X" || event.bind_id === undefined) continue;
    const chain = chains.get(String(event.bind_id)) ?? [];
    chain.push({ ts: Math.round(event.ts * 1000), name: event.name } as Shown);
    chains.set(String(event.bind_id), chain);
  }
  const arrows: string[] = [];
  for (const chain of chains.values()) {
    chain.sort((a, b) => a.ts - b.ts);
    for (let i = 1; i < chain.length; i++) {
      arrows.push(`${chain[i - 1]!.ts} ${chain[i - 1]!.name} -> ${chain[i]!.ts} ${chain[i]!.name}`);
    }
  }
  return arrows.sort();
}

for (const python of oldestAndNewest()) {
  Deno.test(`one recording shows the same in JSON and protobuf, read back (Python ${python.version})`, async () => {
    const dir = await tempDir();
    try {
      const [json, protobuf] = await recordMix(python, dir.path);
      const trace = await readTrace(json!);
      const pf = await readPerfetto((await Deno.open(protobuf!)).readable, { strict: true });
      const fromJson = shownInJson(trace);
      assert.ok(fromJson.length > 100, `${fromJson.length} slices`);
      assert.deepEqual(shownInProtobuf(pf), fromJson);
      assert.deepEqual(
        pf.flows.map((flow) => {
          const [from, to] = [pf.slices[flow.from]!, pf.slices[flow.to]!];
          return `${from.ts} ${from.name} -> ${to.ts} ${to.name}`;
        }).sort(),
        jsonArrows(trace),
      );
      // The threads, by their dense ids, and the process.
      const threads = trace.traceEvents.filter((e) => e.ph === "M" && e.name === "thread_name")
        .map((e) => [e.tid, e.args!.name]);
      assert.deepEqual(
        [...pf.tracks.values()].filter((t) => t.thread).map((t) => [t.thread!.tid, t.thread!.name]),
        threads,
      );
      assert.deepEqual(
        [...pf.tracks.values()].find((t) => t.process)!.process!.name,
        trace.traceEvents[0]!.args!.name,
      );
      // Counters: a track per series.
      const series: Record<string, { ts: number; value: number }[]> = {};
      for (const event of trace.traceEvents.filter((e) => e.ph === "C")) {
        for (const [key, value] of Object.entries(event.args!)) {
          (series[`${event.name} ${key}`] ??= []).push({
            ts: Math.round(event.ts * 1000),
            value: value as number,
          });
        }
      }
      assert.deepEqual(Object.fromEntries(pf.counters), series);
      assert.deepEqual(Object.keys(series).sort(), ["ticks load", "ticks seen"]);
      // The summary.
      const { panopticon: _, ...summary } = pf.metadata;
      const { panopticon: __, ...otherData } = trace.otherData!;
      assert.deepEqual(summary, JSON.parse(JSON.stringify(otherData)));
    } finally {
      await dir.remove();
    }
  });

  Deno.test({
    name:
      `one recording shows the same in JSON and protobuf in the trace processor (Python ${python.version})`,
    ignore: NO_VIEWER,
    async fn() {
      const dir = await tempDir();
      try {
        const files = await recordMix(python, dir.path);
        const views = await Promise.all(files.map((file) => viewInTraceProcessor(file)));
        const [json, protobuf, jsonGz, protobufGz] = views;
        for (const [index, view] of views.entries()) {
          assert.deepEqual(view!.stats, [], `${files[index]}: 0 error statistics`);
        }
        assert.ok(json!.slices!.length > 100);
        assert.deepEqual(
          protobuf!.slices,
          json!.slices,
          "slices: times, depth, name, category, thread, parent",
        );
        assert.deepEqual(protobuf!.args, json!.args, "args");
        assert.deepEqual(protobuf!.flows, json!.flows, "flow arrows");
        assert.ok(json!.flows!.length > 10);
        assert.deepEqual(protobuf!.threads, json!.threads, "thread and process names");
        assert.deepEqual(protobuf!.counters, json!.counters, "counters");
        assert.deepEqual(jsonGz, json, "gzipped JSON opens the same");
        assert.deepEqual(protobufGz, protobuf, "a gzipped protobuf trace opens the same");
      } finally {
        await dir.remove();
      }
    },
  });
}

/** What the trace processor made of a trace, in terms that both formats share. */
async function viewInTraceProcessor(file: string) {
  const loaded = await query(
    file,
    ERROR_STATS,
    `select s.ts, s.dur, s.depth, s.name, s.category, t.name as thread,
       (select p.name from slice p where p.id = s.parent_id) as parent
     from slice s left join thread_track tt on s.track_id = tt.id left join thread t using(utid)
     order by s.ts, s.depth, s.name`,
    `select s.ts, s.name, a.key, a.display_value from slice s join args a using(arg_set_id)
     order by s.ts, s.name, a.key`,
    `select so.ts as from_ts, so.name as from_name, si.ts as to_ts, si.name as to_name
     from flow f join slice so on so.id = f.slice_out join slice si on si.id = f.slice_in
     order by so.ts, si.ts`,
    `select t.tid, t.name, p.pid, p.name as process from thread t left join process p using(upid)
     where t.name is not null and t.tid != 0 order by t.tid`,
    `select t.name, c.ts, c.value from counter c join counter_track t on c.track_id = t.id
     order by t.name, c.ts`,
  );
  assert.ok(loaded.parsed, `${file}: ${loaded.message}`);
  const [stats, slices, args, flows, threads, counters] = loaded.results as Rows[];
  return {
    stats,
    slices,
    // The JSON trace's args are `args.key`; the protobuf trace's are
    // `debug.key`, and its file and line a source location.
    args: args!.flatMap((arg): Record<string, string>[] => {
      const key = arg.key!
        .replace(/^args\./, "")
        .replace(/^debug\./, "")
        .replace(/^source\.file_name$/, "file")
        .replace(/^source\.line_number$/, "line");
      if (key === "source.function_name" || key === "source_location_iid") return [];
      return [{ ...arg, key }];
    }).sort((a, b) =>
      Number(a.ts) - Number(b.ts) || a.name!.localeCompare(b.name!) || a.key!.localeCompare(b.key!)
    ),
    flows,
    threads,
    counters,
  };
}

for (const python of oldestAndNewest()) {
  Deno.test(`a program that calls os._exit leaves a protobuf trace with what was open unfinished (Python ${python.version})`, async () => {
    const dir = await tempDir();
    try {
      const program = `${dir.path}/exits.py`;
      await Deno.writeTextFile(
        program,
        "import os\n\ndef inner():\n    os._exit(3)\n\ndef outer():\n    inner()\n\nouter()\n",
      );
      const output = `${dir.path}/exits.pftrace`;
      const outcome = await runPanopticon(["--python", python.path, "-o", output, program]);
      assert.equal(outcome.code, 3, outcome.stderr);
      const trace = await readPerfetto(await Deno.readFile(output), { strict: true });
      const unfinished = trace.slices.filter((slice) => slice.args.unfinished === true)
        .map((slice) => slice.name);
      for (const name of ["<module>", "outer", "inner"]) {
        assert.ok(unfinished.includes(name), `${name} is unfinished: ${unfinished}`);
      }
      assert.equal(trace.metadata.unfinished, unfinished.length);
      if (!NO_VIEWER) {
        const loaded = await query(
          output,
          ERROR_STATS,
          "select s.name from slice s join args a using(arg_set_id) where a.key = 'debug.unfinished' order by s.depth",
        );
        assert.ok(loaded.parsed, loaded.message);
        assert.deepEqual(loaded.results[0], []);
        assert.deepEqual(
          loaded.results[1]!.map((row) => row.name).filter((name) => name !== "os._exit").slice(
            0,
            3,
          ),
          ["<module>", "outer", "inner"],
        );
      }
    } finally {
      await dir.remove();
    }
  });
}

for (const python of oldestAndNewest()) {
  Deno.test({
    name:
      `--args, --returns and --lines are in the trace processor's args table, both formats (Python ${python.version})`,
    ignore: NO_VIEWER,
    async fn() {
      const dir = await tempDir();
      try {
        const values = `${ROOT}tests/programs/values.py`;
        const lines = `${ROOT}tests/programs/lines.py`;
        const cases: [string, string[]][] = [
          [values, ["--args", "function:positional", "--returns", "function:positional"]],
          [lines, ["--lines", "function:loop"]],
        ];
        for (const [program, options] of cases) {
          const seen: Rows[] = [];
          for (const name of ["t.json", "t.pftrace"]) {
            const output = `${dir.path}/${name}`;
            const outcome = await runPanopticon([
              "--python",
              python.path,
              "-o",
              output,
              ...options,
              program,
            ]);
            assert.equal(outcome.code, 0, outcome.stderr);
            const loaded = await query(
              output,
              ERROR_STATS,
              `select s.name, a.key, a.display_value from slice s join args a using(arg_set_id)
               where s.name in ('positional') or s.category = 'line'
               order by s.ts, a.key`,
            );
            assert.ok(loaded.parsed, `${output}: ${loaded.message}`);
            const [stats, rows] = loaded.results as Rows[];
            assert.deepEqual(stats, [], `${name}: 0 error statistics`);
            // The protobuf trace's keys are debug.NAME, the JSON trace's args.NAME.
            seen.push(
              rows!.map((row) => ({ ...row, key: row.key!.replace(/^(args|debug)\./, "") }))
                .filter((row) => !/^source\.|^source_location_iid$|^file$|^line$/.test(row.key!)),
            );
          }
          assert.deepEqual(seen[1], seen[0], `${program}: the same values in both formats`);
          if (program === values) {
            const keys = new Map(seen[0]!.map((row) => [row.key!, row.display_value]));
            for (const key of ["a", "b", "c", "return"]) {
              assert.ok(keys.has(key), `positional's ${key}: ${JSON.stringify(seen[0])}`);
            }
          } else {
            const texts = seen[0]!.filter((row) => row.key === "text").map((row) =>
              row.display_value
            );
            assert.equal(texts.length, 12, `the loop's 12 lines: ${JSON.stringify(texts)}`);
            assert.equal(texts[0], "total = 0");
          }
        }
      } finally {
        await dir.remove();
      }
    },
  });
}
