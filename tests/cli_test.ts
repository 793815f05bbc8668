import { deepEqual, equal, match, ok, throws } from "node:assert/strict";
import {
  type CliCommand,
  defaultOutput,
  ENGINES,
  HELP_TEXT,
  parseCommandLine,
  type Target,
  UsageError,
} from "../src/cli.ts";

function script(path: string, ...args: string[]): Target {
  return { kind: "script", path, args };
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
    await t.step(name, () => {
      throws(() => parseCommandLine(argv), (error: unknown) => {
        if (!(error instanceof UsageError)) return false;
        match(error.message, message);
        return true;
      });
    });
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
      "-h, --help",
      "-V, --version",
      "PANOPTICON_PYTHON",
      "https://ui.perfetto.dev",
      "chrome://tracing",
      "https://www.speedscope.app",
      ...ENGINES,
    ]
  ) {
    match(HELP_TEXT, new RegExp(word.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")));
  }
  for (const line of HELP_TEXT.split("\n")) {
    ok(line.length <= 80, `help line too long: ${line}`);
  }
});
