import { deepEqual, equal, match, ok, throws } from "node:assert/strict";
import {
  type CliCommand,
  defaultOutput,
  ENGINES,
  type FilterPattern,
  type Filters,
  HELP_TEXT,
  parseCommandLine,
  PATTERN_KINDS,
  type Target,
  type TraceCommand,
  UsageError,
} from "../src/cli.ts";
import { detailsVariable } from "../src/runner.ts";

function script(path: string, ...args: string[]): Target {
  return { kind: "script", path, args };
}

/** The trace command `argv` parses to (it must be one). */
function traceCommand(argv: string[]): TraceCommand {
  const command = parseCommandLine(argv);
  if (command.kind !== "trace") throw new Error(`not a trace command: ${command.kind}`);
  return command;
}

/** Filters with the defaults, and `changes`. */
function filters(changes: Partial<Filters>): Filters {
  return { include: [], exclude: [], excludeStdlib: false, cCalls: true, ...changes };
}

/** Asserts that `argv` throws a {@linkcode UsageError} whose message matches. */
function throwsUsage(argv: string[], message: RegExp) {
  throws(() => parseCommandLine(argv), (error: unknown) => {
    if (!(error instanceof UsageError)) return false;
    match(error.message, message);
    return true;
  });
}

Deno.test("parseCommandLine() reads every form of the command line", async (t) => {
  const cases: [string, string[], CliCommand][] = [
    ["a script", ["app.py"], {
      kind: "trace",
      target: script("app.py"),
      output: "app.trace.json",
      engine: "auto",
    }],
    ["a script with arguments", ["app.py", "a", "b"], {
      kind: "trace",
      target: script("app.py", "a", "b"),
      output: "app.trace.json",
      engine: "auto",
    }],
    ["-o FILE", ["-o", "t.json", "app.py"], {
      kind: "trace",
      target: script("app.py"),
      output: "t.json",
      engine: "auto",
    }],
    ["-oFILE", ["-ot.json", "app.py"], {
      kind: "trace",
      target: script("app.py"),
      output: "t.json",
      engine: "auto",
    }],
    ["--output FILE", ["--output", "t.json", "app.py"], {
      kind: "trace",
      target: script("app.py"),
      output: "t.json",
      engine: "auto",
    }],
    ["--output=FILE", ["--output=out/t.json", "app.py"], {
      kind: "trace",
      target: script("app.py"),
      output: "out/t.json",
      engine: "auto",
    }],
    ["the last -o wins", ["-o", "a.json", "-o", "b.json", "app.py"], {
      kind: "trace",
      target: script("app.py"),
      output: "b.json",
      engine: "auto",
    }],
    ["--python PATH", ["--python", "/usr/bin/python3.12", "app.py"], {
      kind: "trace",
      target: script("app.py"),
      output: "app.trace.json",
      python: "/usr/bin/python3.12",
      engine: "auto",
    }],
    ["--python=PATH", ["--python=python3.9", "app.py"], {
      kind: "trace",
      target: script("app.py"),
      output: "app.trace.json",
      python: "python3.9",
      engine: "auto",
    }],
    ["--engine setprofile", ["--engine", "setprofile", "app.py"], {
      kind: "trace",
      target: script("app.py"),
      output: "app.trace.json",
      engine: "setprofile",
    }],
    ["--engine=monitoring", ["--engine=monitoring", "app.py"], {
      kind: "trace",
      target: script("app.py"),
      output: "app.trace.json",
      engine: "monitoring",
    }],
    ["-c CODE", ["-c", "print(1)"], {
      kind: "trace",
      target: { kind: "code", code: "print(1)", args: [] },
      output: "panopticon.trace.json",
      engine: "auto",
    }],
    ["-c CODE with arguments", ["-o", "t.json", "-c", "import sys", "-x", "--y", "z"], {
      kind: "trace",
      target: { kind: "code", code: "import sys", args: ["-x", "--y", "z"] },
      output: "t.json",
      engine: "auto",
    }],
    ["-cCODE", ["-cprint(2)", "a"], {
      kind: "trace",
      target: { kind: "code", code: "print(2)", args: ["a"] },
      output: "panopticon.trace.json",
      engine: "auto",
    }],
    ["-m MODULE", ["-m", "http.server"], {
      kind: "trace",
      target: { kind: "module", module: "http.server", args: [] },
      output: "http.server.trace.json",
      engine: "auto",
    }],
    ["-m MODULE with arguments", ["-m", "pytest", "-x", "-o", "k"], {
      kind: "trace",
      target: { kind: "module", module: "pytest", args: ["-x", "-o", "k"] },
      output: "pytest.trace.json",
      engine: "auto",
    }],
    ["-mMODULE", ["-mjson.tool", "f.json"], {
      kind: "trace",
      target: { kind: "module", module: "json.tool", args: ["f.json"] },
      output: "json.tool.trace.json",
      engine: "auto",
    }],
    ["options after the script belong to the program", [
      "-o",
      "t.json",
      "app.py",
      "-o",
      "x",
      "--engine",
      "bogus",
      "-h",
      "--",
    ], {
      kind: "trace",
      target: script("app.py", "-o", "x", "--engine", "bogus", "-h", "--"),
      output: "t.json",
      engine: "auto",
    }],
    ["-- ends our options", ["-o", "t.json", "--", "script.py", "-o", "x"], {
      kind: "trace",
      target: script("script.py", "-o", "x"),
      output: "t.json",
      engine: "auto",
    }],
    ["-- lets a script start with a dash", ["--", "-odd.py"], {
      kind: "trace",
      target: script("-odd.py"),
      output: "-odd.trace.json",
      engine: "auto",
    }],
    ["- reads the program from stdin", ["-", "a"], {
      kind: "trace",
      target: script("-", "a"),
      output: "panopticon.trace.json",
      engine: "auto",
    }],
    ["-c after -- is a script name", ["--", "-c"], {
      kind: "trace",
      target: script("-c"),
      output: "-c.trace.json",
      engine: "auto",
    }],
    ["-h", ["-h"], { kind: "help" }],
    ["--help", ["--help"], { kind: "help" }],
    ["--help after options", ["-o", "t.json", "--help", "app.py"], { kind: "help" }],
    ["-V", ["-V"], { kind: "version" }],
    ["--version", ["--version"], { kind: "version" }],
  ];
  for (const [name, argv, expected] of cases) {
    await t.step(name, () => {
      deepEqual(parseCommandLine(argv), expected);
    });
  }
});

Deno.test("parseCommandLine() rejects what it cannot understand", async (t) => {
  const cases: [string, string[], RegExp][] = [
    ["an unknown option", ["--foo", "app.py"], /^unknown option "--foo": see panopticon --help$/],
    ["an unknown short option", ["-x", "app.py"], /^unknown option "-x"/],
    ["an unknown --name=value", ["--foo=1", "app.py"], /^unknown option "--foo"/],
    ["a value for a flag", ["--help=1"], /^option "--help" takes no value/],
    ["-o without its value", ["-o"], /^option "-o" needs a value: see panopticon --help$/],
    ["-o followed by an option", ["-o", "--engine", "auto", "a.py"], /^option "-o" needs a value/],
    ["-o followed by a negative number", ["-o", "-1", "a.py"], /^option "-o" needs a value/],
    ["--output= with nothing", ["--output=", "a.py"], /^option "--output" needs a value/],
    ["--python without its value", ["--python"], /^option "--python" needs a value/],
    ["--engine without its value", ["--engine"], /^option "--engine" needs a value/],
    [
      "an unknown engine",
      ["--engine", "fast", "a.py"],
      /^unknown engine "fast": choose one of auto, setprofile, monitoring$/,
    ],
    ["-c without code", ["-c"], /^option "-c" needs the code to run/],
    ["-m without a module", ["-m"], /^option "-m" needs a module name/],
    ["no program", [], /^no program to trace: give a script, -c CODE or -m MODULE/],
    ["only options", ["-o", "t.json"], /^no program to trace/],
    ["nothing after --", ["--"], /^no program to trace after "--"/],
  ];
  for (const [name, argv, message] of cases) {
    await t.step(name, () => throwsUsage(argv, message));
  }
});

Deno.test("parseCommandLine() reads --include patterns", async (t) => {
  const cases: [string, string[], FilterPattern[]][] = [
    ["--include PATTERN", ["--include", "module:myapp.*", "app.py"], ["module:myapp.*"]],
    ["--include=PATTERN", ["--include=function:Handler.*", "app.py"], ["function:Handler.*"]],
    ["a file pattern", ["--include", "file:*/src/*.py", "app.py"], ["file:*/src/*.py"]],
    ["repeated, in order", [
      "--include",
      "module:a",
      "--include=file:b/*.py",
      "--include",
      "function:c",
      "app.py",
    ], ["module:a", "file:b/*.py", "function:c"]],
    ["a repeated pattern", ["--include", "a", "--include", "a", "app.py"], [
      "module:a",
      "module:a",
    ]],
    ["a glob with a colon", ["--include", "function:f:g", "app.py"], ["function:f:g"]],
    ["a value after = with an equals sign", ["--include=file:a=b.py", "app.py"], ["file:a=b.py"]],
  ];
  for (const [name, argv, include] of cases) {
    await t.step(name, () => {
      const command = traceCommand(argv);
      deepEqual(command.filters, filters({ include }));
      deepEqual(command.target, script("app.py"));
    });
  }
});

Deno.test("parseCommandLine() reads --exclude patterns", async (t) => {
  const cases: [string, string[], Partial<Filters>][] = [
    ["--exclude PATTERN", ["--exclude", "module:tests.*", "app.py"], {
      exclude: ["module:tests.*"],
    }],
    ["--exclude=PATTERN", ["--exclude=file:*/vendor/*", "app.py"], {
      exclude: ["file:*/vendor/*"],
    }],
    ["repeated", ["--exclude", "function:_*", "--exclude=module:log*", "app.py"], {
      exclude: ["function:_*", "module:log*"],
    }],
    ["with --include", ["--include", "myapp.*", "--exclude", "myapp.tests.*", "app.py"], {
      include: ["module:myapp.*"],
      exclude: ["module:myapp.tests.*"],
    }],
  ];
  for (const [name, argv, expected] of cases) {
    await t.step(name, () => deepEqual(traceCommand(argv).filters, filters(expected)));
  }
});

Deno.test("parseCommandLine() gives a bare pattern its explicit kind", async (t) => {
  const cases: [string, FilterPattern][] = [
    ["myapp", "module:myapp"],
    ["myapp.*", "module:myapp.*"],
    ["*.handlers", "module:*.handlers"],
    ["[ab]?", "module:[ab]?"],
    ["app.py", "file:app.py"],
    ["*.py", "file:*.py"],
    ["*/src/*", "file:*/src/*"],
    ["/abs/path/tool.py", "file:/abs/path/tool.py"],
    ["src/", "file:src/"],
    // A "/" before the first colon makes it part of a path, not a prefix.
    ["*/odd:dir/*.py", "file:*/odd:dir/*.py"],
    ["module:app.py", "module:app.py"],
    ["file:myapp", "file:myapp"],
    ["function:a/b", "function:a/b"],
  ];
  for (const [pattern, expected] of cases) {
    await t.step(`${pattern} -> ${expected}`, () => {
      deepEqual(traceCommand(["--include", pattern, "--exclude", pattern, "a.py"]).filters, {
        include: [expected],
        exclude: [expected],
        excludeStdlib: false,
        cCalls: true,
      });
    });
  }
});

Deno.test("parseCommandLine() reads --exclude-stdlib, --no-c-calls and --max-depth", async (t) => {
  const cases: [string, string[], Partial<TraceCommand>][] = [
    ["--exclude-stdlib", ["--exclude-stdlib", "app.py"], {
      filters: filters({ excludeStdlib: true }),
    }],
    ["--no-c-calls", ["--no-c-calls", "app.py"], { filters: filters({ cCalls: false }) }],
    ["--max-depth N", ["--max-depth", "3", "app.py"], { maxDepth: 3 }],
    ["--max-depth=N", ["--max-depth=1", "app.py"], { maxDepth: 1 }],
    ["the last --max-depth wins", ["--max-depth", "9", "--max-depth=12", "app.py"], {
      maxDepth: 12,
    }],
    ["every filter", [
      "--exclude-stdlib",
      "--no-c-calls",
      "--include=myapp.*",
      "--exclude",
      "function:*.debug",
      "--max-depth",
      "40",
      "-o",
      "t.json",
      "app.py",
    ], {
      output: "t.json",
      filters: {
        include: ["module:myapp.*"],
        exclude: ["function:*.debug"],
        excludeStdlib: true,
        cCalls: false,
      },
      maxDepth: 40,
    }],
    ["flags given twice", [
      "--exclude-stdlib",
      "--exclude-stdlib",
      "--no-c-calls",
      "--no-c-calls",
      "app.py",
    ], {
      filters: filters({ excludeStdlib: true, cCalls: false }),
    }],
    ["no filter", ["app.py"], {}],
    ["--max-depth alone sets no collector filter", ["--max-depth", "2", "app.py"], {
      maxDepth: 2,
    }],
  ];
  for (const [name, argv, expected] of cases) {
    await t.step(name, () => {
      deepEqual(parseCommandLine(argv), {
        kind: "trace",
        target: script("app.py"),
        output: "app.trace.json",
        engine: "auto",
        ...expected,
      });
    });
  }
});

Deno.test("parseCommandLine() leaves filter options after the program to the program", async (t) => {
  const cases: [string, string[], Target][] = [
    [
      "after a script",
      ["app.py", "--include", "x", "--exclude-stdlib", "--max-depth", "0"],
      script(
        "app.py",
        "--include",
        "x",
        "--exclude-stdlib",
        "--max-depth",
        "0",
      ),
    ],
    [
      "after --",
      ["--", "app.py", "--no-c-calls", "--exclude=foo:bar"],
      script(
        "app.py",
        "--no-c-calls",
        "--exclude=foo:bar",
      ),
    ],
    ["after -m MODULE", ["-m", "pytest", "--include=a", "--max-depth=x"], {
      kind: "module",
      module: "pytest",
      args: ["--include=a", "--max-depth=x"],
    }],
    ["after -c CODE", ["-c", "pass", "--exclude", ""], {
      kind: "code",
      code: "pass",
      args: ["--exclude", ""],
    }],
  ];
  for (const [name, argv, target] of cases) {
    await t.step(name, () => {
      const command = traceCommand(["--no-c-calls", ...argv]);
      deepEqual(command.target, target);
      deepEqual(command.filters, filters({ cCalls: false }), "only ours are read");
      equal(command.maxDepth, undefined);
    });
  }
});

Deno.test("parseCommandLine() rejects a bad pattern", async (t) => {
  const cases: [string, string[], RegExp][] = [
    [
      "an unknown kind",
      ["--include", "foo:bar", "a.py"],
      /^unknown pattern kind "foo" in --include "foo:bar": use module:GLOB, file:GLOB or function:GLOB$/,
    ],
    [
      "an unknown kind after =",
      ["--exclude=func:main", "a.py"],
      /^unknown pattern kind "func" in --exclude "func:main"/,
    ],
    ["a kind in capitals", ["--include", "Module:a", "a.py"], /^unknown pattern kind "Module"/],
    [
      "a file name with a colon that is no path",
      ["--include", "app.py:main", "a.py"],
      /^unknown pattern kind "app\.py" in --include "app\.py:main"/,
    ],
    ["an empty kind", ["--include", ":x", "a.py"], /^unknown pattern kind "" in --include ":x"/],
    [
      "an empty module glob",
      ["--include", "module:", "a.py"],
      /^empty pattern in --include "module:": give a glob after "module:", e\.g\. module:myapp\.\*$/,
    ],
    [
      "an empty file glob",
      ["--exclude=file:", "a.py"],
      /^empty pattern in --exclude "file:": give a glob after "file:", e\.g\. file:\*\/src\/\*\.py$/,
    ],
    [
      "an empty function glob",
      ["--exclude", "function:", "a.py"],
      /^empty pattern in --exclude "function:".*e\.g\. function:Handler\.\*$/,
    ],
    [
      "an empty pattern",
      ["--include", "", "a.py"],
      /^empty pattern in --include: use module:GLOB, file:GLOB or function:GLOB$/,
    ],
    ["--include= with nothing", ["--include=", "a.py"], /^option "--include" needs a value/],
    ["--include without its value", ["--include"], /^option "--include" needs a value/],
    [
      "--exclude followed by an option",
      ["--exclude", "--no-c-calls", "a.py"],
      /^option "--exclude" needs a value/,
    ],
    [
      "a bad pattern after good ones",
      ["--include", "a", "--include", "b", "--exclude", "c:d", "a.py"],
      /^unknown pattern kind "c" in --exclude "c:d"/,
    ],
  ];
  for (const [name, argv, message] of cases) {
    await t.step(name, () => throwsUsage(argv, message));
  }
});

Deno.test("parseCommandLine() rejects a bad --max-depth or a value for a flag", async (t) => {
  const cases: [string, string[], RegExp][] = [
    [
      "zero",
      ["--max-depth", "0", "a.py"],
      /^option "--max-depth" needs a positive whole number, not "0"$/,
    ],
    [
      "negative",
      ["--max-depth", "-1", "a.py"],
      /^option "--max-depth" needs a positive whole number, not "-1"$/,
    ],
    ["negative after =", ["--max-depth=-3", "a.py"], /not "-3"$/],
    ["a fraction", ["--max-depth", "2.5", "a.py"], /not "2\.5"$/],
    ["a word", ["--max-depth", "deep", "a.py"], /not "deep"$/],
    ["a sign", ["--max-depth", "+2", "a.py"], /not "\+2"$/],
    ["an exponent", ["--max-depth", "1e3", "a.py"], /not "1e3"$/],
    ["hexadecimal", ["--max-depth", "0x10", "a.py"], /not "0x10"$/],
    ["spaces", ["--max-depth", " 2", "a.py"], /not " 2"$/],
    ["too large", ["--max-depth", "99999999999999999999", "a.py"], /not "99999999999999999999"$/],
    ["no value", ["--max-depth"], /^option "--max-depth" needs a value/],
    [
      "followed by an option",
      ["--max-depth", "--no-c-calls", "a.py"],
      /^option "--max-depth" needs a value/,
    ],
    ["--max-depth= with nothing", ["--max-depth=", "a.py"], /^option "--max-depth" needs a value/],
    [
      "--exclude-stdlib=1",
      ["--exclude-stdlib=1", "a.py"],
      /^option "--exclude-stdlib" takes no value/,
    ],
    ["--no-c-calls=yes", ["--no-c-calls=yes", "a.py"], /^option "--no-c-calls" takes no value/],
    ["--c-calls", ["--c-calls", "a.py"], /^unknown option "--c-calls"/],
  ];
  for (const [name, argv, message] of cases) {
    await t.step(name, () => throwsUsage(argv, message));
  }
});

Deno.test("defaultOutput() names the trace after the program", async (t) => {
  const cases: [Target, string][] = [
    [script("app.py"), "app.trace.json"],
    [script("src/pkg/tool.py"), "tool.trace.json"],
    [script("/abs/path/run.pyw"), "run.trace.json"],
    [script("bundle.pyz"), "bundle.trace.json"],
    [script("a.b.py"), "a.b.trace.json"],
    [script("noext"), "noext.trace.json"],
    [script("appdir/"), "appdir.trace.json"],
    [script("."), "panopticon.trace.json"],
    [script("-"), "panopticon.trace.json"],
    [{ kind: "module", module: "http.server", args: [] }, "http.server.trace.json"],
    [{ kind: "code", code: "pass", args: [] }, "panopticon.trace.json"],
  ];
  for (const [target, expected] of cases) {
    await t.step(`${target.kind} ${JSON.stringify(target)}`, () => {
      equal(defaultOutput(target), expected);
    });
  }
});

Deno.test("HELP_TEXT documents every option, the viewers and PANOPTICON_PYTHON", () => {
  for (
    const word of [
      "-o, --output FILE",
      "--python PATH",
      "--engine ENGINE",
      "--include PATTERN",
      "--include=PATTERN",
      "--exclude PATTERN",
      "--exclude=PATTERN",
      "--exclude-stdlib",
      "--no-c-calls",
      "--max-depth N",
      "-h, --help",
      "-V, --version",
      ...PATTERN_KINDS.map((kind) => `${kind}:GLOB`),
      "PANOPTICON_PYTHON",
      "https://ui.perfetto.dev",
      "chrome://tracing",
      "https://www.speedscope.app",
      ...ENGINES,
    ]
  ) {
    match(HELP_TEXT, new RegExp(word.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")));
  }
  // What each filter costs.
  match(
    HELP_TEXT,
    /on Python 3\.12\+ \(the monitoring engine\)[^]*costs nothing after its\s+first event/,
  );
  match(HELP_TEXT, /before 3\.12[^]*profile callback that returns at once/);
  match(
    HELP_TEXT,
    /--max-depth makes\s+the trace smaller but does not save the collector any work/,
  );
  for (const line of HELP_TEXT.split("\n")) {
    ok(line.length <= 80, `help line too long: ${line}`);
  }
});

Deno.test("parseCommandLine() reads --manual", async (t) => {
  await t.step("before the program", () => {
    deepEqual(traceCommand(["--manual", "app.py", "--manual"]), {
      kind: "trace",
      target: script("app.py", "--manual"),
      output: "app.trace.json",
      engine: "auto",
      manual: true,
    });
  });
  await t.step("with --engine setprofile", () => {
    equal(traceCommand(["--engine", "setprofile", "--manual", "app.py"]).manual, true);
  });
  await t.step("not with --engine monitoring", () => {
    throwsUsage(
      ["--manual", "--engine", "monitoring", "app.py"],
      /^--manual records with the setprofile engine: leave out --engine monitoring/,
    );
  });
  await t.step("takes no value", () => {
    throwsUsage(["--manual=yes", "app.py"], /^option "--manual" takes no value/);
  });
});

Deno.test("parseCommandLine() reads --no-follow", async (t) => {
  await t.step("following is the default: the command says nothing", () => {
    equal(traceCommand(["app.py"]).follow, undefined);
  });
  await t.step("before the program", () => {
    deepEqual(traceCommand(["--no-follow", "app.py", "--no-follow"]), {
      kind: "trace",
      target: script("app.py", "--no-follow"),
      output: "app.trace.json",
      engine: "auto",
      follow: false,
    });
  });
  await t.step("takes no value", () => {
    throwsUsage(["--no-follow=1", "app.py"], /^option "--no-follow" takes no value/);
  });
  await t.step("the help says what following does", () => {
    match(
      HELP_TEXT,
      /--no-follow +trace the program's own process only\. By default the\n +Python processes it starts are traced too: os\.fork/,
    );
    match(HELP_TEXT, /multiprocessing workers \(every start\n +method\)/);
    match(HELP_TEXT, /its own track group/);
    match(HELP_TEXT, /--max-events counts the\n +events of each process apart/);
  });
});

Deno.test("parseCommandLine() reads the convert and python-module subcommands", async (t) => {
  const cases: [string[], unknown][] = [
    [["convert", "run.ndjson"], { kind: "convert", input: "run.ndjson", output: "run.json" }],
    [["convert", "run.jsonl", "-o", "t.json"], {
      kind: "convert",
      input: "run.jsonl",
      output: "t.json",
    }],
    [["convert", "-ot.json", "-"], { kind: "convert", input: "-", output: "t.json" }],
    [["convert", "--output=t.json"], { kind: "convert", input: "-", output: "t.json" }],
    [
      ["convert", "x", "--max-depth", "3"],
      { kind: "convert", input: "x", output: "x.json", maxDepth: 3 },
    ],
    [["convert", "--help"], { kind: "help" }],
    [["python-module"], { kind: "python-module" }],
    // Only the first argument is a subcommand.
    [["-o", "t.json", "convert"], {
      kind: "trace",
      target: script("convert"),
      output: "t.json",
      engine: "auto",
    }],
    [["--", "convert"], {
      kind: "trace",
      target: script("convert"),
      output: "convert.trace.json",
      engine: "auto",
    }],
  ];
  for (const [argv, expected] of cases) {
    await t.step(argv.join(" "), () => deepEqual(parseCommandLine(argv), expected));
  }
  const errors: [string[], RegExp][] = [
    [["convert"], /^convert needs -o OUTPUT when it reads standard input/],
    [
      ["convert", "a.ndjson", "b.ndjson"],
      /^convert takes one input file, got "a.ndjson" and "b.ndjson"/,
    ],
    [["convert", "a.ndjson", "-o", "a.ndjson"], /^the trace would overwrite its input "a.ndjson"/],
    [["convert", "a", "--engine", "x"], /^unknown option "--engine" for convert/],
    [["convert", "a", "-o"], /^option "-o" needs a value/],
    [["python-module", "x"], /^"python-module" takes no arguments, got "x"/],
  ];
  for (const [argv, message] of errors) {
    await t.step(`rejects ${argv.join(" ")}`, () => throwsUsage(argv, message));
  }
});

Deno.test("HELP_TEXT documents --manual, the API and the subcommands", () => {
  for (
    const word of [
      "--manual",
      "panopticon convert [INPUT.ndjson | -] [-o OUTPUT]",
      "panopticon python-module > panopticon.py",
      "panopticon.trace(",
      "@panopticon.traced",
      "panopticon.instant(",
      "panopticon.counter(",
      "panopticon.span(",
      "docs/python-api.md",
      'as "panopticon ./convert"',
    ]
  ) {
    match(HELP_TEXT, new RegExp(word.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")));
  }
});

Deno.test("parseCommandLine() reads the summary and view subcommands, --summary and --view", async (t) => {
  const cases: [string[], unknown][] = [
    [["summary", "run.json"], { kind: "summary", input: "run.json", sort: "self", json: false }],
    [["summary", "-", "--sort", "max", "--top", "3", "--thread", "worker 1", "--json"], {
      kind: "summary",
      input: "-",
      sort: "max",
      top: 3,
      thread: "worker 1",
      json: true,
    }],
    [["summary", "--sort=calls", "--top=10", "t.pftrace"], {
      kind: "summary",
      input: "t.pftrace",
      sort: "calls",
      top: 10,
      json: false,
    }],
    [["summary", "--help"], { kind: "help" }],
    [["view", "run.json.gz"], { kind: "view", input: "run.json.gz", port: 9001, open: true }],
    [["view", "--port", "9123", "--no-open", "t.json"], {
      kind: "view",
      input: "t.json",
      port: 9123,
      open: false,
    }],
    [["view", "-h"], { kind: "help" }],
    [["--summary", "--view", "app.py"], {
      kind: "trace",
      target: script("app.py"),
      output: "app.trace.json",
      engine: "auto",
      summary: true,
      view: true,
    }],
    // After the script they are the program's.
    [["app.py", "--summary"], {
      kind: "trace",
      target: script("app.py", "--summary"),
      output: "app.trace.json",
      engine: "auto",
    }],
    [["--", "summary"], {
      kind: "trace",
      target: script("summary"),
      output: "summary.trace.json",
      engine: "auto",
    }],
  ];
  for (const [argv, expected] of cases) {
    await t.step(argv.join(" "), () => deepEqual(parseCommandLine(argv), expected));
  }
  const errors: [string[], RegExp][] = [
    [["summary"], /^summary needs a trace file \(or "-" for standard input\)/],
    [["summary", "a.json", "b.json"], /^summary takes one trace, got "a.json" and "b.json"/],
    [
      ["summary", "a.json", "--sort", "name"],
      /^unknown sort key "name" for --sort: choose one of calls, total, self, max$/,
    ],
    [["summary", "a.json", "--top", "0"], /^option "--top" needs a positive whole number, not "0"/],
    [["summary", "a.json", "--top"], /^option "--top" needs a value/],
    [["summary", "a.json", "--json=yes"], /^option "--json" takes no value/],
    [["summary", "a.json", "--engine", "x"], /^unknown option "--engine" for summary/],
    [["view"], /^view needs a trace file: /],
    [["view", "-"], /^view serves a file, not standard input/],
    [
      ["view", "a.json", "--port", "70000"],
      /^option "--port" needs a port number, 0 to 65535, not "70000"/,
    ],
    [["--summary=yes", "app.py"], /^option "--summary" takes no value/],
  ];
  for (const [argv, message] of errors) {
    await t.step(`rejects ${argv.join(" ")}`, () => throwsUsage(argv, message));
  }
});

Deno.test("HELP_TEXT documents summary, view, --summary and --view", () => {
  for (
    const word of [
      "panopticon summary TRACE [--sort calls|total|self|max] [--top N]",
      "[--thread NAME] [--json]",
      "panopticon view TRACE [--port N] [--no-open]",
      "--summary ",
      "--view ",
      "--sort KEY",
      "--top N",
      "--thread NAME",
      "--json",
      "python -m cProfile",
      "unfinished",
      "http://127.0.0.1:9001",
      "https://ui.perfetto.dev",
      "ssh -L",
      "Ctrl-C",
      "--no-open",
    ]
  ) {
    match(HELP_TEXT, new RegExp(word.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")));
  }
  // Every line fits a terminal of 80 columns.
  for (const line of HELP_TEXT.split("\n")) ok(line.length <= 80, line);
});

Deno.test("parseCommandLine() chooses the trace's format by --format, --gzip and the output's name", async (t) => {
  const cases: [string, string[], Partial<TraceCommand>][] = [
    ["JSON by default", ["app.py"], { output: "app.trace.json" }],
    ["-o NAME.pftrace", ["-o", "run.pftrace", "app.py"], {
      output: "run.pftrace",
      format: "perfetto",
    }],
    [
      "-o NAME.perfetto-trace",
      ["-orun.perfetto-trace", "app.py"],
      { output: "run.perfetto-trace", format: "perfetto" },
    ],
    ["-o NAME.json.gz", ["-o", "run.json.gz", "app.py"], { output: "run.json.gz", gzip: true }],
    [
      "-o NAME.pftrace.gz",
      ["--output=run.pftrace.gz", "app.py"],
      { output: "run.pftrace.gz", format: "perfetto", gzip: true },
    ],
    [
      "--format perfetto, by default NAME.pftrace",
      ["--format", "perfetto", "app.py"],
      { output: "app.pftrace", format: "perfetto" },
    ],
    [
      "--format=perfetto --gzip, by default NAME.pftrace.gz",
      ["--format=perfetto", "--gzip", "-m", "pkg.tool"],
      { output: "pkg.tool.pftrace.gz", format: "perfetto", gzip: true },
    ],
    ["--gzip, by default NAME.trace.json.gz", ["--gzip", "app.py"], {
      output: "app.trace.json.gz",
      gzip: true,
    }],
    ["--format json is the default", ["--format", "json", "app.py"], { output: "app.trace.json" }],
    [
      "--format agrees with the name",
      ["--format", "perfetto", "-o", "x.pftrace", "app.py"],
      { output: "x.pftrace", format: "perfetto" },
    ],
    [
      "--gzip and a .gz name say the same",
      ["--gzip", "-o", "x.json.gz", "app.py"],
      { output: "x.json.gz", gzip: true },
    ],
    [
      "a name of no format takes the options",
      ["--format", "perfetto", "--gzip", "-o", "run.trace", "app.py"],
      { output: "run.trace", format: "perfetto", gzip: true },
    ],
    ["a name of no format is JSON", ["-o", "run.trace", "app.py"], { output: "run.trace" }],
    [
      "after the program, the program's",
      ["app.py", "--format", "perfetto", "--gzip"],
      { output: "app.trace.json" },
    ],
  ];
  for (const [name, argv, expected] of cases) {
    await t.step(name, () => {
      const command = traceCommand(argv);
      deepEqual(
        { output: command.output, format: command.format, gzip: command.gzip },
        { format: undefined, gzip: undefined, ...expected },
      );
      equal("format" in command, expected.format !== undefined);
      equal("gzip" in command, expected.gzip !== undefined);
    });
  }
  const errors: [string, string[], RegExp][] = [
    [
      "an unknown format",
      ["--format", "xml", "app.py"],
      /^unknown format "xml": choose one of json, perfetto/,
    ],
    ["no format", ["--format"], /^option "--format" needs a value/],
    [
      "--format perfetto with a JSON name",
      ["--format", "perfetto", "-o", "t.json", "app.py"],
      /^--format perfetto does not match the output "t\.json", a name for a JSON trace: name it …\.pftrace or leave out --format$/,
    ],
    [
      "--format json with a protobuf name",
      ["-o", "t.pftrace.gz", "--format", "json", "app.py"],
      /^--format json does not match the output "t\.pftrace\.gz", a name for a Perfetto protobuf trace: name it …\.json\.gz/,
    ],
    [
      "--gzip with a name without .gz",
      ["--gzip", "-o", "t.pftrace", "app.py"],
      /^--gzip compresses the trace, but the output "t\.pftrace" is not named ….gz: name it "t\.pftrace\.gz"$/,
    ],
    ["--gzip takes no value", ["--gzip=9", "app.py"], /^option "--gzip" takes no value/],
  ];
  for (const [name, argv, message] of errors) {
    await t.step(`rejects ${name}`, () => throwsUsage(argv, message));
  }
});

Deno.test("parseCommandLine() reads --max-events", async (t) => {
  await t.step("a positive whole number", () => {
    deepEqual(traceCommand(["--max-events", "1000000", "app.py", "--max-events", "3"]), {
      kind: "trace",
      target: script("app.py", "--max-events", "3"),
      output: "app.trace.json",
      engine: "auto",
      maxEvents: 1_000_000,
    });
    equal(traceCommand(["--max-events=5", "app.py"]).maxEvents, 5);
  });
  const errors: [string, string[], RegExp][] = [
    [
      "zero",
      ["--max-events", "0", "a.py"],
      /^option "--max-events" needs a positive whole number, not "0"$/,
    ],
    ["negative", ["--max-events", "-5", "a.py"], /not "-5"$/],
    ["a word", ["--max-events", "many", "a.py"], /not "many"$/],
    ["thousands separators", ["--max-events", "1_000", "a.py"], /not "1_000"$/],
    ["no value", ["--max-events"], /^option "--max-events" needs a value/],
    [
      "followed by an option",
      ["--max-events", "--gzip", "a.py"],
      /^option "--max-events" needs a value/,
    ],
  ];
  for (const [name, argv, message] of errors) {
    await t.step(`rejects ${name}`, () => throwsUsage(argv, message));
  }
  await t.step("convert has no events to limit", () => {
    throwsUsage(
      ["convert", "a.ndjson", "--max-events", "5"],
      /^unknown option "--max-events" for convert/,
    );
  });
});

Deno.test("defaultOutput() ends the name as the format wants", () => {
  equal(defaultOutput(script("app.py"), { format: "perfetto", gzip: false }), "app.pftrace");
  equal(defaultOutput(script("app.py"), { format: "json", gzip: true }), "app.trace.json.gz");
  equal(
    defaultOutput({ kind: "code", code: "pass", args: [] }, { format: "perfetto", gzip: true }),
    "panopticon.pftrace.gz",
  );
});

Deno.test("parseCommandLine() reads convert's --format and --gzip", async (t) => {
  const cases: [string[], unknown][] = [
    [["convert", "run.ndjson", "--format", "perfetto"], {
      kind: "convert",
      input: "run.ndjson",
      output: "run.pftrace",
      format: "perfetto",
    }],
    [["convert", "run.ndjson", "--gzip"], {
      kind: "convert",
      input: "run.ndjson",
      output: "run.json.gz",
      gzip: true,
    }],
    [["convert", "--format=perfetto", "--gzip", "run.ndjson"], {
      kind: "convert",
      input: "run.ndjson",
      output: "run.pftrace.gz",
      format: "perfetto",
      gzip: true,
    }],
    [["convert", "-", "-o", "t.pftrace"], {
      kind: "convert",
      input: "-",
      output: "t.pftrace",
      format: "perfetto",
    }],
  ];
  for (const [argv, expected] of cases) {
    await t.step(argv.join(" "), () => deepEqual(parseCommandLine(argv), expected));
  }
  await t.step("rejects a format that contradicts the name", () => {
    throwsUsage(
      ["convert", "run.ndjson", "-o", "t.json", "--format", "perfetto"],
      /^--format perfetto does not match the output "t\.json"/,
    );
  });
});

Deno.test("HELP_TEXT documents the formats, gzip, --max-events and the size warning", () => {
  for (
    const word of [
      "--format FORMAT",
      "--gzip",
      "--max-events N",
      ".pftrace",
      ".perfetto-trace",
      ".json.gz",
      "json (the default",
      "perfetto",
      "[--format FORMAT]",
      "500 MB of JSON",
      "1.5 GB of\n  protobuf",
    ]
  ) {
    match(HELP_TEXT, new RegExp(word.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")));
  }
  match(HELP_TEXT, /the program runs on to its end at full\s+speed/);
});

Deno.test("parseCommandLine reads --exceptions, --no-exceptions and --repr into details", async (t) => {
  const cases: [string[], unknown][] = [
    [["app.py"], undefined],
    [["--exceptions", "app.py"], { exceptions: true, repr: false }],
    [["--no-exceptions", "app.py"], { exceptions: false, repr: false }],
    [["--exceptions", "--no-exceptions", "app.py"], { exceptions: false, repr: false }],
    [["--repr", "app.py"], { repr: true }],
    [["app.py", "--exceptions"], undefined],
  ];
  for (const [argv, details] of cases) {
    await t.step(argv.join(" "), () => {
      const command = parseCommandLine(argv);
      equal(command.kind, "trace");
      deepEqual(command.kind === "trace" ? command.details : null, details);
    });
  }
  throws(() => parseCommandLine(["--exceptions=yes", "app.py"]), /takes no value/);
});

Deno.test("parseCommandLine reads repeated --args and --returns patterns into details", async (t) => {
  const cases: [string[], unknown][] = [
    [["--args", "function:fib", "app.py"], { repr: false, args: ["function:fib"] }],
    [
      ["--args=function:fib", "--args", "myapp.*", "--returns", "app/*.py", "app.py"],
      { repr: false, args: ["function:fib", "module:myapp.*"], returns: ["file:app/*.py"] },
    ],
    [["--repr", "--returns", "function:*", "app.py"], { repr: true, returns: ["function:*"] }],
  ];
  for (const [argv, details] of cases) {
    await t.step(argv.join(" "), () => {
      const command = parseCommandLine(argv);
      deepEqual(command.kind === "trace" ? command.details : null, details);
    });
  }
  throws(
    () => parseCommandLine(["--args", "thing:x", "app.py"]),
    /unknown pattern kind "thing" in --args/,
  );
  throws(
    () => parseCommandLine(["--returns", "function:", "app.py"]),
    /empty pattern in --returns/,
  );
});

Deno.test("parseCommandLine reads repeated --lines patterns into details", async (t) => {
  const cases: [string[], unknown][] = [
    [["--lines", "function:work", "app.py"], { repr: false, lines: ["function:work"] }],
    [
      ["--lines=function:work", "--lines", "myapp.*", "--args", "function:f", "app.py"],
      { repr: false, args: ["function:f"], lines: ["function:work", "module:myapp.*"] },
    ],
  ];
  for (const [argv, details] of cases) {
    await t.step(argv.join(" "), () => {
      const command = parseCommandLine(argv);
      deepEqual(command.kind === "trace" ? command.details : null, details);
    });
  }
  throws(() => parseCommandLine(["--lines", "function:", "app.py"]), /empty pattern in --lines/);
  equal(
    detailsVariable({ repr: false, lines: ["function:work", "file:*/a.py"] }),
    "lines function:work\nlines file:*/a.py",
  );
});
