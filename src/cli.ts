/**
 * The command-line model: {@linkcode parseCommandLine} turns `argv` into a
 * {@linkcode CliCommand}, and {@linkcode HELP_TEXT} documents it.
 *
 * Panopticon's own options come first. The program to trace (a script path,
 * `-c CODE` or `-m MODULE`) ends them, exactly as for `python` itself, and
 * every argument after it belongs to the program, even one that looks like
 * one of ours: `panopticon -o t.json script.py -o x` passes `-o x` to
 * `script.py`. `--` also ends our options; the argument after it is the
 * script.
 *
 * @module
 */

/** Which hook the collector uses to see the program's calls. */
export type Engine = "auto" | "setprofile" | "monitoring";

/** Every value `--engine` accepts, in the order the help text lists them. */
export const ENGINES: readonly Engine[] = ["auto", "setprofile", "monitoring"];

/** What the traced interpreter runs, as `python` would be told to run it. */
export type Target =
  /** `panopticon script.py args…`: a file (or `-` for standard input). */
  | { kind: "script"; path: string; args: string[] }
  /** `panopticon -c CODE args…`: a program passed as a string. */
  | { kind: "code"; code: string; args: string[] }
  /** `panopticon -m module args…`: a module run as `__main__`. */
  | { kind: "module"; module: string; args: string[] };

/** Run a program under the collector and write its trace. */
export interface TraceCommand {
  kind: "trace";
  /** The program and its arguments. */
  target: Target;
  /** Where the trace goes: `--output`, or {@linkcode defaultOutput}. */
  output: string;
  /** The interpreter from `--python`, if given. */
  python?: string;
  /**
   * The collector's hook.
   *
   * @default {"auto"}
   */
  engine: Engine;
}

/** Everything the command line can ask for. */
export type CliCommand =
  | TraceCommand
  /** `-h`, `--help`: print {@linkcode HELP_TEXT}. */
  | { kind: "help" }
  /** `-V`, `--version`: print the version. */
  | { kind: "version" };

/** A command line that cannot be understood; `main.ts` exits with status 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** The trace file name used when `-c CODE` or a script read from stdin runs. */
export const FALLBACK_OUTPUT = "panopticon.trace.json";

/**
 * The trace file used when `--output` is not given: in the current
 * directory, named after the program: `<script stem>.trace.json`
 * (`src/app.py` → `app.trace.json`), `<module>.trace.json` for `-m`
 * (`-m http.server` → `http.server.trace.json`), and
 * `panopticon.trace.json` for `-c` and for a script read from stdin (`-`).
 */
export function defaultOutput(target: Target): string {
  switch (target.kind) {
    case "script": {
      const base = target.path.replace(/[\\/]+$/, "").split(/[\\/]/).pop() ?? "";
      const stem = base.replace(/\.pyw?$|\.pyc$|\.pyz$|\.zip$/i, "");
      if (target.path === "-" || stem === "" || stem === "." || stem === "..") {
        return FALLBACK_OUTPUT;
      }
      return `${stem}.trace.json`;
    }
    case "module":
      return `${target.module}.trace.json`;
    case "code":
      return FALLBACK_OUTPUT;
  }
}

const SEE_HELP = "see panopticon --help";

/** Our options that take a value, by every spelling. */
const VALUE_OPTIONS: Record<string, "output" | "python" | "engine"> = {
  "-o": "output",
  "--output": "output",
  "--python": "python",
  "--engine": "engine",
};

/**
 * Parses Panopticon's command line (without the executable's own name).
 *
 * Throws {@linkcode UsageError} for an unknown option, an option without its
 * value, a bad `--engine` or a missing program.
 *
 * @example Options before the script, the program's arguments after it
 * ```ts
 * import assert from "node:assert/strict";
 * import { parseCommandLine } from "./cli.ts";
 *
 * assert.deepEqual(parseCommandLine(["-o", "t.json", "app.py", "-o", "x"]), {
 *   kind: "trace",
 *   target: { kind: "script", path: "app.py", args: ["-o", "x"] },
 *   output: "t.json",
 *   engine: "auto",
 * });
 * ```
 */
export function parseCommandLine(argv: readonly string[]): CliCommand {
  let output: string | undefined;
  let python: string | undefined;
  let engine: Engine = "auto";
  let target: Target | undefined;

  let i = 0;
  const takeValue = (option: string): string => {
    const value = argv[i + 1];
    // A following option is far more likely a forgotten value than a file
    // name; `--output=-x` or `-o./-x` still name such a file.
    if (value === undefined || value.startsWith("-")) {
      throw new UsageError(`option "${option}" needs a value: ${SEE_HELP}`);
    }
    i++;
    return value;
  };
  const takeProgram = (option: string, attached: string): string => {
    if (attached !== "") return attached;
    const value = argv[i + 1];
    if (value === undefined) {
      const what = option === "-c" ? "the code to run" : "a module name";
      throw new UsageError(`option "${option}" needs ${what}: ${SEE_HELP}`);
    }
    i++;
    return value;
  };

  for (; i < argv.length && target === undefined; i++) {
    const arg = argv[i]!;
    if (arg === "--") {
      const path = argv[i + 1];
      if (path === undefined) {
        throw new UsageError(`no program to trace after "--": ${SEE_HELP}`);
      }
      target = { kind: "script", path, args: argv.slice(i + 2) };
      break;
    }
    if (arg === "-" || !arg.startsWith("-")) {
      target = { kind: "script", path: arg, args: argv.slice(i + 1) };
      break;
    }
    if (arg === "-h" || arg === "--help") return { kind: "help" };
    if (arg === "-V" || arg === "--version") return { kind: "version" };
    if (arg.startsWith("-c") || arg.startsWith("-m")) {
      const option = arg.slice(0, 2);
      const value = takeProgram(option, arg.slice(2));
      const args = argv.slice(i + 1);
      target = option === "-c"
        ? { kind: "code", code: value, args }
        : { kind: "module", module: value, args };
      break;
    }

    let name: string;
    let value: string;
    const eq = arg.indexOf("=");
    if (arg.startsWith("--") && eq !== -1) {
      name = arg.slice(0, eq);
      value = arg.slice(eq + 1);
      if (!(name in VALUE_OPTIONS)) {
        const known = ["--help", "--version"].includes(name);
        throw new UsageError(
          known
            ? `option "${name}" takes no value: ${SEE_HELP}`
            : `unknown option "${name}": ${SEE_HELP}`,
        );
      }
      if (value === "") throw new UsageError(`option "${name}" needs a value: ${SEE_HELP}`);
    } else if (arg.startsWith("-o") && arg.length > 2) {
      name = "-o";
      value = arg.slice(2);
    } else if (arg in VALUE_OPTIONS) {
      name = arg;
      value = takeValue(arg);
    } else {
      throw new UsageError(`unknown option "${arg}": ${SEE_HELP}`);
    }

    switch (VALUE_OPTIONS[name]) {
      case "output":
        output = value;
        break;
      case "python":
        python = value;
        break;
      case "engine":
        if (!(ENGINES as readonly string[]).includes(value)) {
          throw new UsageError(
            `unknown engine "${value}": choose one of ${ENGINES.join(", ")}`,
          );
        }
        engine = value as Engine;
        break;
    }
  }

  if (target === undefined) {
    throw new UsageError(
      `no program to trace: give a script, -c CODE or -m MODULE (${SEE_HELP})`,
    );
  }
  if (target.kind === "module" && target.module === "") {
    throw new UsageError(`option "-m" needs a module name: ${SEE_HELP}`);
  }
  const command: TraceCommand = {
    kind: "trace",
    target,
    output: output ?? defaultOutput(target),
    engine,
  };
  if (python !== undefined) command.python = python;
  return command;
}

/** The text `panopticon --help` prints. */
export const HELP_TEXT = `\
Panopticon traces a Python program and writes a timeline of its calls
(Chrome/Catapult JSON trace) that shows every resumption of a generator,
coroutine or async generator as its own slice, joined by flow arrows.

Usage:
  panopticon [options] script.py [args...]
  panopticon [options] -c CODE [args...]
  panopticon [options] -m MODULE [args...]

The program runs under the Python interpreter exactly as with
"python script.py args...": same sys.argv, stdin, stdout, stderr and exit
status. Panopticon's options come before the program; everything after the
script (or after -c CODE, -m MODULE) belongs to the program. "--" also ends
Panopticon's options: panopticon -o t.json -- script.py -o x

Options:
  -o, --output FILE   write the trace to FILE (also --output=FILE, -oFILE);
                      an existing file is replaced. Default, in the current
                      directory: the script's name with .trace.json
                      (app.py -> app.trace.json), MODULE.trace.json for -m,
                      panopticon.trace.json for -c.
  --python PATH       the Python interpreter (3.8 or newer) that runs the
                      program. Default: $PANOPTICON_PYTHON, else python3,
                      else python on PATH.
  --engine ENGINE     how calls are recorded: auto (the default: monitoring
                      on Python 3.12+, setprofile before), setprofile
                      (sys.setprofile) or monitoring (sys.monitoring, 3.12+).
  -h, --help          show this help and exit
  -V, --version       show the version and exit

Environment:
  PANOPTICON_PYTHON   the interpreter to use when --python is not given
  PANOPTICON_DEBUG    when set, the stack of Panopticon's own errors and the
                      collector's debug lines go to stderr

Examples:
  panopticon app.py --port 8080         trace app.py into app.trace.json
  panopticon -o run.json -m pytest -x   trace pytest into run.json
  panopticon --python python3.12 -c "import asyncio"

Opening the trace:
  https://ui.perfetto.dev      "Open trace file", or drop the file on the page
  chrome://tracing             in Chrome or Chromium: "Load"
  https://www.speedscope.app   flame graphs (without the flow arrows)

Exit status: the program's own (128 + N if signal N killed it). Errors of
Panopticon's own print one "error: ..." line and exit with 2 for a command
line it cannot understand, 1 for anything else (or the program's status, if
the program ran and failed).
`;
