import { deepEqual, equal, match, ok } from "node:assert/strict";
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

Deno.test("describeRun() counts the processes of a run that followed several", () => {
  const process = (pid: number, events: number, threads: number) => ({
    pid,
    argv: ["app.py"],
    parent: pid === 1 ? null : { pid: 1, token: pid - 1 },
    complete: true,
    reason: "exit",
    events,
    slices: 0,
    dropped: 0,
    threads,
  });
  const summary: ConversionSummary = {
    complete: true,
    events: 1000,
    recorded: 1000,
    dropped: 0,
    reason: "exit",
    slices: 0,
    unfinished: 0,
    threads: 2,
    duration: 0,
    pid: 1,
    pythonVersion: "3.13.0",
    engine: "monitoring",
    protocol: 4,
    warnings: [],
    format: "json",
    bytes: 1000,
    processes: [process(1, 1000, 2), process(2, 200, 1), process(3, 30, 1), process(3, 4, 1)],
  };
  equal(
    describeRun("t.json", [3, 13, 0], { summary, engine: "monitoring", collector: "native" }),
    // Process 3 replaced itself (exec): one process, its main thread going on.
    "panopticon: wrote t.json — 1,234 events, 3 processes, 4 threads (Python 3.13.0, native " +
      "collector, monitoring engine). Open it in https://ui.perfetto.dev or chrome://tracing.",
  );
  equal(
    describeRun("t.json", [3, 13, 0], {
      summary: { ...summary, processes: summary.processes!.slice(0, 1) },
      engine: "monitoring",
      collector: "native",
    }),
    "panopticon: wrote t.json — 1,000 events, 2 threads (Python 3.13.0, native " +
      "collector, monitoring engine). Open it in https://ui.perfetto.dev or chrome://tracing.",
  );
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

Deno.test("main sums up a trace (panopticon summary)", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "panopticon-test-" });
  try {
    const fixture = new URL("./fixtures/threads.ndjson", import.meta.url).pathname;
    await t.step("a table on stdout", async () => {
      const { code, stdout, stderr } = await panopticon(["summary", fixture]);
      equal(code, 0, stderr);
      equal(stderr, "");
      match(stdout, /^Summary of .*threads\.ndjson\n {2}program {3}python threads\.py --fast\n/);
      match(stdout, /\n {2}python {4}3\.13\.0 \(monitoring engine\)\n/);
      match(
        stdout,
        /\nFunctions by self time \(all \d+\):\n {2}calls +total +self +mean +max +kind +function +defined at\n/,
      );
    });
    await t.step("JSON, sorted and cut as asked", async () => {
      const { code, stdout, stderr } = await panopticon([
        "summary",
        fixture,
        "--json",
        "--sort",
        "calls",
        "--top",
        "2",
      ]);
      equal(code, 0, stderr);
      const report = JSON.parse(stdout);
      equal(report.format, "ndjson");
      equal(report.functions.length, 2);
      ok(report.functions[0].calls >= report.functions[1].calls);
      deepEqual(Object.keys(report.run).slice(0, 4), ["program", "pids", "python", "engine"]);
    });
    await t.step("one thread", async () => {
      const all = JSON.parse((await panopticon(["summary", fixture, "--json"])).stdout);
      const main = JSON.parse(
        (await panopticon(["summary", fixture, "--json", "--thread", "MainThread"])).stdout,
      );
      equal(main.thread, "MainThread");
      ok(main.functions.length < all.functions.length);
    });
    await t.step("errors: a missing file, not a trace, no such thread", async () => {
      const missing = await panopticon(["summary", `${dir}/missing.json`]);
      equal(missing.code, 1);
      equal(
        missing.stderr,
        `error: cannot read "${dir}/missing.json": No such file or directory\n`,
      );
      await Deno.writeTextFile(`${dir}/notes.txt`, "hello\n");
      const text = await panopticon(["summary", `${dir}/notes.txt`]);
      equal(text.code, 1);
      match(
        text.stderr,
        /^error: cannot summarize ".*notes\.txt": this is not a trace Panopticon reads/,
      );
      const thread = await panopticon(["summary", fixture, "--thread", "nobody"]);
      equal(thread.code, 1);
      match(thread.stderr, /^error: cannot summarize .*: the trace has no thread named "nobody"/);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("main serves a trace until it is fetched (panopticon view --no-open)", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "panopticon-test-" });
  const path = `${dir}/run.json`;
  await Deno.writeTextFile(path, '{"traceEvents":[]}\n');
  const start = (args: string[]) => {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", MAIN, "view", "--no-open", ...args, path],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const lines = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    return {
      child,
      /** Reads stderr until it has `count` lines. */
      async lines(count: number): Promise<string[]> {
        while (text.split("\n").length <= count) {
          const { value, done } = await lines.read();
          if (done) break;
          text += value;
        }
        return text.split("\n");
      },
      async rest(): Promise<string> {
        for (;;) {
          const { value, done } = await lines.read();
          if (done) return text;
          text += value;
        }
      },
    };
  };
  try {
    await t.step("it prints the address and the ssh line, and exits once fetched", async () => {
      const view = start(["--port", "0"]);
      const lines = await view.lines(3);
      const address =
        /^panopticon: open this address in a browser: (https:\/\/ui\.perfetto\.dev\/#!\/\?url=(http:\/\/127\.0\.0\.1:(\d+)\/run\.json))$/
          .exec(lines[0]!);
      ok(address, lines.join("\n"));
      match(
        lines[1]!,
        new RegExp(
          `^panopticon: on another machine, first run there: ssh -L ${address[3]}:127\\.0\\.0\\.1:${
            address[3]
          } `,
        ),
      );
      const response = await fetch(address[2]!, { headers: { origin: "https://ui.perfetto.dev" } });
      equal(await response.text(), '{"traceEvents":[]}\n');
      const status = await view.child.status;
      await view.child.stdout.cancel();
      equal(status.code, 0);
      match(await view.rest(), /panopticon: the UI has the trace; no longer serving it\n$/);
    });
    await t.step("Ctrl-C stops it, with status 130", async () => {
      const view = start(["--port", "0"]);
      await view.lines(3);
      view.child.kill("SIGINT");
      const status = await view.child.status;
      await view.child.stdout.cancel();
      equal(status.code, 130);
      match(await view.rest(), /panopticon: stopped serving\n$/);
    });
    await t.step("a missing file", async () => {
      const { code, stderr } = await panopticon(["view", `${dir}/missing.json`]);
      equal(code, 1);
      equal(stderr, `error: cannot serve "${dir}/missing.json": No such file or directory\n`);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Whether port 9001 (where --view serves, the Perfetto UI's port) is free for the test. */
function viewPortFree(): boolean {
  try {
    Deno.listen({ hostname: "127.0.0.1", port: 9001 }).close();
    return true;
  } catch {
    console.log(
      "main_test.ts: port 9001 is taken on this machine: the --view test is IGNORED, not passed",
    );
    return false;
  }
}

Deno.test({
  name: "main opens the trace when a traced run ends (--view)",
  ignore: !viewPortFree(),
}, async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "panopticon-test-" });
  try {
    await t.step(
      "the run's line, then the address; once fetched, the program's status",
      async () => {
        await Deno.writeTextFile(`${dir}/app.py`, "import sys\nprint('hi')\nsys.exit(3)\n");
        const env = Deno.env.toObject();
        delete env["DISPLAY"];
        delete env["WAYLAND_DISPLAY"];
        const child = new Deno.Command(Deno.execPath(), {
          args: ["run", "-A", MAIN, "--view", "-o", `${dir}/app.json`, `${dir}/app.py`],
          env,
          clearEnv: true,
          stdin: "null",
          stdout: "piped",
          stderr: "piped",
        }).spawn();
        const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
        let text = "";
        while (!/until the UI has fetched it/.test(text)) {
          const { value, done } = await reader.read();
          if (done) break;
          text += value;
        }
        match(text, /^panopticon: wrote .*app\.json/m);
        match(text, /cannot start a browser \(there is no display/);
        const url = /url=(http:\/\/127\.0\.0\.1:9001\/app\.json)/.exec(text)?.[1];
        ok(url, text);
        const response = await fetch(url, { headers: { origin: "https://ui.perfetto.dev" } });
        equal(response.status, 200);
        ok(Array.isArray((await response.json()).traceEvents));
        const status = await child.status;
        for (let next = await reader.read(); !next.done; next = await reader.read()) {
          text += next.value;
        }
        equal(new TextDecoder().decode((await child.stdout.getReader().read()).value), "hi\n");
        equal(status.code, 3, text);
        match(text, /the UI has the trace; no longer serving it\n$/);
      },
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
