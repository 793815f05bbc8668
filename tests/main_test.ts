import { deepEqual, equal, match } from "node:assert/strict";
import { describeRun, VERSION } from "../main.ts";
import type { ConversionSummary } from "../src/convert.ts";

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

Deno.test("describeRun() says what was written and where to open it", async (t) => {
  const summary = (events: number, threads: number, complete: boolean): ConversionSummary => ({
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
  });
  await t.step("a complete trace", () => {
    equal(
      describeRun("trace.json", [3, 12, 1], {
        summary: summary(1234, 2, true),
        engine: "monitoring",
      }),
      "panopticon: wrote trace.json — 1,234 events, 2 threads (Python 3.12.1, monitoring engine). " +
        "Open it in https://ui.perfetto.dev or chrome://tracing.",
    );
  });
  await t.step("one event, one thread, cut short", () => {
    equal(
      describeRun("t.json", [3, 12, 1], { summary: summary(1, 1, false), engine: "monitoring" }),
      "panopticon: wrote t.json — 1 event, 1 thread (Python 3.12.1, monitoring engine), cut short. " +
        "Open it in https://ui.perfetto.dev or chrome://tracing.",
    );
  });
});
