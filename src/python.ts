/**
 * Interpreter discovery: {@linkcode findPython} picks the Python that runs
 * the traced program and {@linkcode probePython} checks that it is one
 * Panopticon can use.
 *
 * @module
 */

/** A Python interpreter that passed the probe. */
export interface PythonInfo {
  /** The command that runs it, as given (`python3`, `/usr/bin/python3.12`). */
  path: string;
  /** `sys.version_info[:3]`. */
  version: [major: number, minor: number, micro: number];
  /** `sys.implementation.name`: `"cpython"`, `"pypy"`. */
  implementation: string;
  /** `sys.executable`, or `""` when the interpreter does not know it. */
  executable: string;
  /**
   * What building a C extension for it needs to know (see
   * `native_build.ts`); `undefined` when the interpreter could not say.
   */
  build?: PythonBuild;
}

/** What the interpreter's `sysconfig` says about building C extensions for it. */
export interface PythonBuild {
  /** The directory that should hold `Python.h`. */
  include: string;
  /** The file name ending of an extension module, e.g. `.cpython-312-x86_64-linux-gnu.so`. */
  extSuffix: string;
  /** `sys.abiflags` (`""`, or `d` for a debug build). */
  abiflags: string;
  /** Whether it is a free-threaded build (no GIL), which the native collector does not support. */
  freeThreaded: boolean;
  /** `sys.implementation.cache_tag` (`cpython-312`): how its compiled modules are named. */
  cacheTag: string;
}

/** The interpreter cannot be found, run or used; the message says why. */
export class PythonError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PythonError";
  }
}

/** The oldest Python the collector supports. */
export const MINIMUM_VERSION: readonly [number, number] = [3, 8];

/** Options of {@linkcode findPython}. */
export interface FindPythonOptions {
  /**
   * The interpreter from `--python`; wins over everything else.
   *
   * @default {undefined}
   */
  python?: string;
  /**
   * Reads an environment variable (for `PANOPTICON_PYTHON`).
   *
   * @default {Deno.env.get}
   */
  getEnv?: (name: string) => string | undefined;
  /**
   * The names tried on `PATH` when neither `python` nor `PANOPTICON_PYTHON`
   * is given, in order.
   *
   * @default {["python3", "python"]}
   */
  candidates?: readonly string[];
  /**
   * How long the probe may take before the interpreter counts as broken.
   *
   * @default {30_000}
   */
  timeoutMs?: number;
}

/**
 * Finds the interpreter to trace with: `options.python` (from `--python`),
 * else `$PANOPTICON_PYTHON`, else the first of `python3`, `python` found on
 * `PATH`; then probes it once with {@linkcode probePython}.
 *
 * Throws {@linkcode PythonError} with a message that says what to do.
 *
 * @example
 * ```ts ignore
 * const python = await findPython({ python: "python3.12" });
 * console.log(python.version.join(".")); // "3.12.1"
 * ```
 */
export async function findPython(options: FindPythonOptions = {}): Promise<PythonInfo> {
  const getEnv = options.getEnv ?? ((name: string) => Deno.env.get(name));
  const chosen = options.python ?? nonEmpty(getEnv("PANOPTICON_PYTHON"));
  if (chosen !== undefined) return await probePython(chosen, options);

  const candidates = options.candidates ?? ["python3", "python"];
  for (const candidate of candidates) {
    try {
      return await probePython(candidate, options);
    } catch (error) {
      // Only a name missing from PATH moves on to the next candidate: a
      // python3 that exists but is too old or broken is reported as such.
      if (!(error instanceof NotFoundError)) throw error;
    }
  }
  throw new PythonError(
    `Cannot find a Python interpreter (tried ${candidates.join(", ")} on PATH): ` +
      "pass --python to choose one",
  );
}

/** A probe of a command that does not exist; {@linkcode findPython} moves on. */
class NotFoundError extends PythonError {}

// Runs under any Python from 2.7 on, so that an old interpreter is named by
// its version instead of failing with a syntax error; -E -S keep the user's
// PYTHONPATH and sitecustomize out of it. The build facts (for the native
// collector) come from sysconfig, which may fail on a broken install: then
// they are null, and only the native collector is out of reach.
const PROBE = "import sys, json; i = getattr(sys, 'implementation', None)\n" +
  "try:\n import sysconfig as c; v = c.get_config_var; " +
  "b = [c.get_paths()['include'], v('EXT_SUFFIX') or '', getattr(sys, 'abiflags', ''), " +
  "bool(v('Py_GIL_DISABLED')), sys.implementation.cache_tag or '']\n" +
  "except Exception:\n b = None\n" +
  "print(json.dumps([list(sys.version_info[:3]), i.name if i else 'cpython', " +
  "sys.executable or '', b]))";

/**
 * Runs `path` once as `<path> -E -S -c <probe>` and returns what it is.
 *
 * Throws {@linkcode PythonError} when it cannot be run (`cannot run
 * "/x/python": No such file or directory`), is not a Python or crashes at
 * start-up (quoting what it printed), or is older than Python 3.8.
 */
export async function probePython(
  path: string,
  options: { timeoutMs?: number } = {},
): Promise<PythonInfo> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  const timeout = AbortSignal.timeout(timeoutMs);
  const tooSlow = () =>
    new PythonError(
      `"${path}" did not answer within ${timeoutMs / 1000}s: is it a Python interpreter?`,
    );
  let output: Deno.CommandOutput;
  try {
    output = await new Deno.Command(path, {
      args: ["-E", "-S", "-c", PROBE],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: timeout,
    }).output();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new NotFoundError(
        path.includes("/")
          ? `cannot run "${path}": No such file or directory`
          : `cannot run "${path}": not found on PATH`,
      );
    }
    if (error instanceof Deno.errors.PermissionDenied) {
      const isDirectory = await Deno.stat(path).then((s) => s.isDirectory, () => false);
      throw new PythonError(
        `cannot run "${path}": ${isDirectory ? "it is a directory" : "Permission denied"}`,
      );
    }
    if (timeout.aborted) throw tooSlow();
    const reason = error instanceof Error
      ? error.message.replace(/ \(os error \d+\)$/, "")
      : String(error);
    throw new PythonError(
      `cannot run "${path}": ${reason.replace(/^Failed to spawn '[^']*': /, "")}`,
    );
  }

  // The abort kills the probe, which then ends like any killed process.
  if (timeout.aborted) throw tooSlow();
  const stdout = new TextDecoder().decode(output.stdout);
  const stderr = new TextDecoder().decode(output.stderr);
  const info = output.success ? parseProbe(stdout) : undefined;
  if (info === undefined) {
    const printed = (stderr.trim() || stdout.trim()).split("\n").slice(-3).join(" | ");
    const how = output.signal !== null
      ? `was killed by ${output.signal}`
      : output.success
      ? "answered"
      : `exited with status ${output.code}`;
    throw new PythonError(
      `"${path}" does not look like a Python interpreter: it ${how}` +
        (printed === "" ? " and printed nothing" : `: ${truncate(printed, 300)}`),
    );
  }

  const [major, minor] = info.version;
  if (major < MINIMUM_VERSION[0] || (major === MINIMUM_VERSION[0] && minor < MINIMUM_VERSION[1])) {
    throw new PythonError(
      `Python ${info.version.join(".")} is too old: panopticon needs Python ` +
        `${MINIMUM_VERSION.join(".")} or newer (${path}; pass --python to choose another)`,
    );
  }
  return { path, ...info };
}

function parseProbe(stdout: string): Omit<PythonInfo, "path"> | undefined {
  // The last line: a wrapper (a pyenv shim, a venv activation script) may
  // print before the interpreter does.
  const line = stdout.trim().split("\n").pop() ?? "";
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return undefined;
  }
  // Three items without the build facts (which `PROBE` always sends, but a
  // stand-in for an interpreter may not).
  if (!Array.isArray(value) || (value.length !== 3 && value.length !== 4)) return undefined;
  const [version, implementation, executable, build] = value as unknown[];
  if (
    !Array.isArray(version) || version.length !== 3 ||
    !version.every((n) => Number.isInteger(n)) ||
    typeof implementation !== "string" || typeof executable !== "string"
  ) {
    return undefined;
  }
  const info: Omit<PythonInfo, "path"> = {
    version: version as [number, number, number],
    implementation,
    executable,
  };
  if (
    Array.isArray(build) && typeof build[0] === "string" && typeof build[1] === "string" &&
    typeof build[2] === "string" && typeof build[3] === "boolean" && typeof build[4] === "string"
  ) {
    info.build = {
      include: build[0],
      extSuffix: build[1],
      abiflags: build[2],
      freeThreaded: build[3],
      cacheTag: build[4],
    };
  }
  return info;
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === "" ? undefined : value;
}

function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}
