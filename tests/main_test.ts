import { deepEqual, equal, match } from "node:assert/strict";
import { describeRun, VERSION } from "../main.ts";
import type { ConversionSummary } from "../src/convert.ts";
import { readPerfetto } from "../src/perfetto_reader.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;

async function panopticon(args: string[], cwd?: string) {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

Deno.test("main prints the version from deno.json", async () => {
  const denoJson = JSON.parse(
    await Deno.readTextFile(new URL("../deno.json", import.meta.url)),
  );
  equal(VERSION, denoJson.version);
  deepEqual(await panopticon(["--version"]), {
    code: 0,
    stdout: `panopticon ${VERSION}\n`,
    stderr: "",
  });
});

Deno.test("main prints the help on stdout", async () => {
  const { code, stdout, stderr } = await panopticon(["--help"]);
  equal(code, 0);
  equal(stderr, "");
  match(stdout, /^Panopticon traces a Python program/);
  match(stdout, /Usage:\n {2}panopticon \[options\] script\.py \[args\.\.\.\]/);
});

Deno.test("main reports its own errors once, without a stack, with status 2 or 1", async (t) => {
  const cases: [string, string[], number, RegExp][] = [
    [
      "an unknown option",
      ["--foo", "x.py"],
      2,
      /^error: unknown option "--foo": see panopticon --help\n$/,
    ],
    ["no program", [], 2, /^error: no program to trace: give a script, -c CODE or -m MODULE/],
    [
      "a bad filter pattern",
      ["--include", "foo:bar", "x.py"],
      2,
      /^error: unknown pattern kind "foo" in --include "foo:bar": use module:GLOB, file:GLOB or function:GLOB\n$/,
    ],
    [
      "a bad --max-depth",
      ["--max-depth", "0", "x.py"],
      2,
      /^error: option "--max-depth" needs a positive whole number, not "0"\n$/,
    ],
    [
      "a missing script",
      ["--python", "python3", "/nonexistent/app.py"],
      1,
      /^error: cannot open the script "\/nonexistent\/app\.py": No such file or directory\n$/,
    ],
    [
      "a missing interpreter",
      ["--python", "/nonexistent/python", "-c", "pass"],
      1,
      /^error: cannot run "\/nonexistent\/python": No such file or directory\n$/,
    ],
  ];
  for (const [name, args, code, stderr] of cases) {
    await t.step(name, async () => {
      const outcome = await panopticon(args);
      equal(outcome.code, code, outcome.stderr);
      equal(outcome.stdout, "");
      match(outcome.stderr, stderr);
    });
  }
});

Deno.test("describeRun() says what was written, how big, and where to open it", async (t) => {
  const summary = (
    events: number,
    threads: number,
    complete: boolean,
    more: Partial<ConversionSummary> = {},
  ): ConversionSummary => ({
    complete,
    events,
    recorded: events,
    dropped: 0,
    reason: complete ? "exit" : undefined,
    slices: 0,
    unfinished: 0,
    threads,
    duration: 0,
    pid: 1,
    pythonVersion: "3.12.1",
    engine: "monitoring",
    protocol: 1,
    warnings: [],
    format: "json",
    bytes: 12_345_678,
    ...more,
  });
  await t.step("a complete trace", () => {
    equal(
      describeRun("trace.json", [3, 12, 1], {
        summary: summary(1234, 2, true),
        engine: "monitoring",
        collector: "native",
      }),
      "panopticon: wrote trace.json — 1,234 events, 2 threads (Python 3.12.1, native collector, " +
        "monitoring engine). " +
        "Open it in https://ui.perfetto.dev or chrome://tracing.",
    );
  });
  await t.step("one event, one thread, cut short", () => {
    equal(
      describeRun("t.json", [3, 12, 1], {
        summary: summary(1, 1, false),
        engine: "monitoring",
        collector: "python",
      }),
      "panopticon: wrote t.json — 1 event, 1 thread (Python 3.12.1, python collector, " +
        "monitoring engine), cut short. " +
        "Open it in https://ui.perfetto.dev or chrome://tracing.",
    );
  });
  await t.step("its size on disk", () => {
    equal(
      describeRun(
        "t.json",
        [3, 12, 1],
        { summary: summary(5, 1, true), engine: "monitoring", collector: "native" },
        12_345_678,
      ),
      "panopticon: wrote t.json (12.3 MB) — 5 events, 1 thread (Python 3.12.1, native collector, " +
        "monitoring engine). " +
        "Open it in https://ui.perfetto.dev or chrome://tracing.",
    );
  });
  await t.step("gzipped: the size on disk, then uncompressed", () => {
    equal(
      describeRun(
        "t.json.gz",
        [3, 12, 1],
        { summary: summary(5, 1, true), engine: "monitoring", collector: "native" },
        812,
      ),
      "panopticon: wrote t.json.gz (812 B, 12.3 MB uncompressed) — 5 events, 1 thread " +
        "(Python 3.12.1, native collector, monitoring engine). " +
        "Open it in https://ui.perfetto.dev or chrome://tracing.",
    );
  });
  await t.step("a protobuf trace opens in Perfetto", () => {
    equal(
      describeRun("t.pftrace", [3, 12, 1], {
        summary: summary(5, 1, true, { format: "perfetto", bytes: 2_000 }),
        engine: "monitoring",
        collector: "native",
      }, 2_000),
      "panopticon: wrote t.pftrace (2.0 kB) — 5 events, 1 thread (Python 3.12.1, native " +
        "collector, monitoring engine). Open it in https://ui.perfetto.dev.",
    );
  });
});

Deno.test("main converts a recorded NDJSON stream (panopticon convert)", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "panopticon-test-" });
  try {
    const records = [
      '{"kind":"hello","protocol":3,"pid":7,"python":"3.12.1","engine":"setprofile","t0":0,"main_thread":1,"argv":["a.py"]}',
      '{"kind":"code","id":1,"module":"__main__","qualname":"main","file":"a.py","line":1,"type":"function"}',
      '{"kind":"mark","id":1,"name":"cache miss","category":"mark","args":{"key":"k"}}',
      '{"kind":"events","events":[[0,1,1000,0,1],[8,1,1500,0,1],[2,1,2000,0,0]]}',
      '{"kind":"end","ts":2000,"events":3,"dropped":0,"reason":"exit"}',
    ];
    await Deno.writeTextFile(`${dir}/run.ndjson`, records.join("\n") + "\n");

    await t.step("a file, into INPUT.json", async () => {
      const { code, stderr } = await panopticon(["convert", "run.ndjson"], dir);
      equal(code, 0, stderr);
      match(
        stderr,
        /^panopticon: wrote run\.json \(\d+ B\) — 3 events, 1 thread \(Python 3\.12\.1/,
      );
      const trace = JSON.parse(await Deno.readTextFile(`${dir}/run.json`));
      deepEqual(
        trace.traceEvents.filter((e: { ph: string }) => e.ph !== "M").map((e: { name: string }) =>
          e.name
        ),
        ["cache miss", "main"],
      );
    });

    await t.step("--format perfetto, into INPUT.pftrace", async () => {
      const { code, stderr } = await panopticon(
        ["convert", "run.ndjson", "--format", "perfetto"],
        dir,
      );
      equal(code, 0, stderr);
      match(stderr, /^panopticon: wrote run\.pftrace \(\d+ B\) — 3 events.*ui\.perfetto\.dev\.\n$/);
      const trace = await readPerfetto(await Deno.readFile(`${dir}/run.pftrace`), { strict: true });
      deepEqual(trace.slices.map((slice) => slice.name), ["main", "cache miss"]);
    });

    await t.step("-o OUTPUT.json.gz: gzipped JSON", async () => {
      const { code, stderr } = await panopticon(
        ["convert", "run.ndjson", "-o", "run.json.gz"],
        dir,
      );
      equal(code, 0, stderr);
      match(stderr, /^panopticon: wrote run\.json\.gz \(\d+ B, \d+ B uncompressed\) — 3 events/);
      const file = await Deno.open(`${dir}/run.json.gz`);
      const text = await new Response(file.readable.pipeThrough(new DecompressionStream("gzip")))
        .text();
      equal(JSON.parse(text).otherData.complete, true);
    });

    await t.step("a stream cut short: the trace of what came, and a warning", async () => {
      await Deno.writeTextFile(`${dir}/cut.ndjson`, records.slice(0, 4).join("\n"));
      const { code, stderr } = await panopticon(["convert", "cut.ndjson", "-o", "cut.json"], dir);
      equal(code, 0, stderr);
      match(stderr, /cut short/);
      match(stderr, /panopticon: warning: the event stream ended without an "end" record/);
    });

    await t.step("not a record stream: an error naming the line, and no file", async () => {
      await Deno.writeTextFile(`${dir}/bad.ndjson`, `${records[0]}\n{"kind":"nope"}\n`);
      const { code, stderr } = await panopticon(["convert", "bad.ndjson"], dir);
      equal(code, 1);
      equal(
        stderr,
        'error: "bad.ndjson" is not a Panopticon record stream: line 2: unknown record kind ' +
          '"nope": expected hello, thread, code, cfunc, mark, events, batch, limit, flush, end, exception, values, gc or cpu\n',
      );
      equal(await Deno.stat(`${dir}/bad.json`).then(() => true, () => false), false);
    });

    await t.step("a missing input", async () => {
      const { code, stderr } = await panopticon(["convert", "missing.ndjson"], dir);
      equal(code, 1);
      equal(stderr, 'error: cannot read "missing.ndjson": No such file or directory\n');
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("main prints the Python module (panopticon python-module)", async () => {
  const { code, stdout, stderr } = await panopticon(["python-module"]);
  equal(code, 0);
  equal(stderr, "");
  equal(stdout, await Deno.readTextFile(new URL("../collector.py", import.meta.url)));
});
