/**
 * Building the native collector (`native/panopticon_native.c`, embedded as
 * text) for the interpreter that runs the program:
 * {@linkcode buildNative} compiles it once per interpreter ABI into a
 * per-user cache and returns the module's path for the collector to load.
 * {@linkcode buildCollectorBytecode} does the same for `collector.py`'s
 * bytecode, which would otherwise be compiled afresh at every start.
 *
 * - The compiler is `$CC`, else the first of `cc`, `gcc`, `clang` on `PATH`;
 *   the headers are the interpreter's own (its `sysconfig` include
 *   directory).
 * - The cache is `$XDG_CACHE_HOME/panopticon`, else `~/.cache/panopticon`.
 *   An entry is keyed by the hash of the source and of the interpreter's
 *   ABI, and holds the module and a manifest with the module's own hash: an
 *   entry that is broken or cut short does not match it and is rebuilt,
 *   never loaded.
 * - A build writes under temporary names and renames into place, so two
 *   runs building at once are safe: the last rename wins, with the same
 *   bytes.
 *
 * @module
 */

import { basename, dirname, join, resolve } from "node:path";
import collectorSource from "../collector.py" with { type: "text" };
import nativeSource from "../native/panopticon_native.c" with { type: "text" };
import type { PythonBuild, PythonInfo } from "./python.ts";

/** Why the native collector cannot be had, for the message and the fallback. */
export type NativeBuildProblem =
  /** No C compiler: neither `$CC` nor `cc`, `gcc` or `clang` on `PATH`. */
  | "no-compiler"
  /** The interpreter's headers (`Python.h`) are not installed. */
  | "no-headers"
  /** The interpreter is not one the module supports (free-threaded, not CPython, no sysconfig). */
  | "unsupported"
  /** The compiler ran and failed, or the module it made does not load. */
  | "failed";

/**
 * The native collector cannot be built for this interpreter. The message
 * says why and what to do; `problem` says which case it is.
 */
export class NativeBuildError extends Error {
  constructor(message: string, readonly problem: NativeBuildProblem) {
    super(message);
    this.name = "NativeBuildError";
  }
}

/** A native collector ready to load. */
export interface NativeModule {
  /** The extension module's path, in the cache. */
  path: string;
  /** Whether this call built it (false: it was in the cache). */
  built: boolean;
  /** The compiler that built it, as the manifest records it. */
  compiler: string;
  /** How long the build took, in seconds (0 for a cache hit). */
  seconds: number;
  /** The cache key: the hashes of the source and the ABI. */
  key: string;
}

/** Options of {@linkcode buildNative}. */
export interface NativeBuildOptions {
  /**
   * Reads an environment variable (`CC`, `PATH`, `XDG_CACHE_HOME`, `HOME`).
   *
   * @default {Deno.env.get}
   */
  getEnv?: (name: string) => string | undefined;
  /**
   * The C source.
   *
   * @default {the embedded native/panopticon_native.c}
   */
  source?: string;
  /**
   * The cache directory.
   *
   * @default {$XDG_CACHE_HOME/panopticon, else ~/.cache/panopticon}
   */
  cacheDir?: string;
  /**
   * The module's name, which its `PyInit_<name>` function must match (the
   * benchmark builds its C floor, bench/floor.c, this way too).
   *
   * @default {"_panopticon_native"}
   */
  moduleName?: string;
}

/** The manifest beside a module in the cache. */
interface Manifest {
  sha256: string;
  compiler: string;
  python: string;
}

const MODULE_NAME = "_panopticon_native";
const COMPILERS = ["cc", "gcc", "clang"];

/**
 * The cache directory: `$XDG_CACHE_HOME/panopticon`, else
 * `~/.cache/panopticon`.
 */
export function nativeCacheDir(getEnv: (name: string) => string | undefined): string {
  const xdg = getEnv("XDG_CACHE_HOME");
  if (xdg) return join(xdg, "panopticon");
  const home = getEnv("HOME");
  if (!home) {
    throw new NativeBuildError(
      "cannot find a cache directory for the native collector: set XDG_CACHE_HOME or HOME",
      "failed",
    );
  }
  return join(home, ".cache", "panopticon");
}

/**
 * Returns the native collector for `python`, building it if the cache has
 * no sound copy.
 *
 * Throws {@linkcode NativeBuildError} when it cannot be built: no compiler,
 * no headers, an interpreter it does not support, or a failed compile (the
 * message quotes the compiler's last lines).
 */
export async function buildNative(
  python:
    & Pick<PythonInfo, "path" | "version">
    & Partial<Pick<PythonInfo, "implementation" | "build">>,
  options: NativeBuildOptions = {},
): Promise<NativeModule> {
  const getEnv = options.getEnv ?? ((name: string) => Deno.env.get(name));
  const source = options.source ?? nativeSource;
  const moduleName = options.moduleName ?? MODULE_NAME;
  const version = python.version.join(".");
  const build = checkInterpreter(python, version);
  const cacheDir = options.cacheDir ?? nativeCacheDir(getEnv);
  const key = await sha256Hex(
    [source, version, build.abiflags, build.extSuffix, build.include].join("\0"),
  );
  const path = join(cacheDir, `${moduleName}-${key.slice(0, 24)}${build.extSuffix}`);
  const cached = await readSoundEntry(path);
  if (cached !== undefined) {
    return { path, built: false, compiler: cached.compiler, seconds: 0, key };
  }

  const compiler = await findCompiler(getEnv);
  if (!await exists(join(build.include, "Python.h"))) {
    throw new NativeBuildError(
      `the headers of Python ${version} are not installed (no Python.h in ${build.include}): ` +
        `install them (python${python.version[0]}.${python.version[1]}-dev or python3-dev on ` +
        "Debian and Ubuntu, python3-devel on Fedora; pyenv and python.org builds have them)",
      "no-headers",
    );
  }
  const started = performance.now();
  await Deno.mkdir(cacheDir, { recursive: true });
  const work = await Deno.makeTempDir({ dir: cacheDir, prefix: ".build-" });
  try {
    const sourcePath = join(work, `${moduleName}.c`);
    await Deno.writeTextFile(sourcePath, source);
    const output = join(work, basename(path));
    await compile(compiler, build, sourcePath, output, version);
    await checkLoads(python.path, moduleName, output, version);
    const bytes = await Deno.readFile(output);
    const manifest: Manifest = {
      sha256: await sha256Hex(bytes),
      compiler: compiler.join(" "),
      python: version,
    };
    // The module first, then its manifest: a manifest always describes the
    // module already in place.
    await Deno.rename(output, path);
    const manifestTemp = join(work, "manifest.json");
    await Deno.writeTextFile(manifestTemp, JSON.stringify(manifest));
    await Deno.rename(manifestTemp, `${path}.json`);
  } finally {
    await Deno.remove(work, { recursive: true }).catch(() => {});
  }
  return {
    path,
    built: true,
    compiler: compiler.join(" "),
    seconds: (performance.now() - started) / 1000,
    key,
  };
}

/**
 * `collector.py` compiled by `python` into an unchecked hash-based `.pyc`
 * (PEP 552), cached as the native module is: the runner puts it in the
 * private directory's `__pycache__`, where Python loads it for the
 * `sitecustomize.py` written beside it without compiling the source (about
 * 15 ms of every start) or checking its time stamp. `undefined` when it
 * cannot be made: Python then compiles the source, as it always could.
 */
export async function buildCollectorBytecode(
  python: Pick<PythonInfo, "path" | "version"> & Partial<Pick<PythonInfo, "build">>,
  options: NativeBuildOptions = {},
): Promise<string | undefined> {
  const cacheTag = python.build?.cacheTag;
  if (!cacheTag) return undefined;
  try {
    const getEnv = options.getEnv ?? ((name: string) => Deno.env.get(name));
    const cacheDir = options.cacheDir ?? nativeCacheDir(getEnv);
    const source = options.source ?? collectorSource;
    const key = await sha256Hex([source, python.version.join("."), cacheTag].join("\0"));
    const path = join(cacheDir, `collector-${key.slice(0, 24)}.${cacheTag}.pyc`);
    if (await readSoundEntry(path) !== undefined) return path;
    await Deno.mkdir(cacheDir, { recursive: true });
    const work = await Deno.makeTempDir({ dir: cacheDir, prefix: ".build-" });
    try {
      const sourcePath = join(work, "sitecustomize.py");
      const output = join(work, basename(path));
      await Deno.writeTextFile(sourcePath, source);
      const code = "import py_compile, sys\n" +
        "py_compile.compile(sys.argv[1], cfile=sys.argv[2], doraise=True, " +
        "invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)";
      const result = await new Deno.Command(python.path, {
        args: ["-E", "-S", "-c", code, sourcePath, output],
        stdout: "null",
        stderr: "null",
      }).output();
      if (!result.success) return undefined;
      const manifest: Manifest = {
        sha256: await sha256Hex(await Deno.readFile(output)),
        compiler: "py_compile",
        python: python.version.join("."),
      };
      await Deno.rename(output, path);
      const manifestTemp = join(work, "manifest.json");
      await Deno.writeTextFile(manifestTemp, JSON.stringify(manifest));
      await Deno.rename(manifestTemp, `${path}.json`);
      return path;
    } finally {
      await Deno.remove(work, { recursive: true }).catch(() => {});
    }
  } catch {
    return undefined;
  }
}

function checkInterpreter(
  python: Partial<Pick<PythonInfo, "implementation" | "build">>,
  version: string,
): PythonBuild {
  if (python.implementation !== undefined && python.implementation !== "cpython") {
    throw new NativeBuildError(
      `the native collector is for CPython, and this is ${python.implementation} ${version}`,
      "unsupported",
    );
  }
  const build = python.build;
  if (build === undefined || build.include === "" || build.extSuffix === "") {
    throw new NativeBuildError(
      `Python ${version} does not say how to build C extensions for it (its sysconfig failed)`,
      "unsupported",
    );
  }
  if (build.freeThreaded) {
    throw new NativeBuildError(
      `Python ${version} is a free-threaded build, which the native collector does not support`,
      "unsupported",
    );
  }
  return build;
}

/** The compiler command: `$CC` (split on spaces, as make does), else one on PATH. */
async function findCompiler(getEnv: (name: string) => string | undefined): Promise<string[]> {
  const cc = getEnv("CC")?.trim();
  if (cc) return cc.split(/\s+/);
  const path = getEnv("PATH") ?? "";
  for (const name of COMPILERS) {
    for (const dir of path.split(":")) {
      if (dir !== "" && await isExecutable(join(dir, name))) return [join(dir, name)];
    }
  }
  throw new NativeBuildError(
    "no C compiler (set CC, or put cc, gcc or clang on PATH: e.g. apt-get install gcc)",
    "no-compiler",
  );
}

async function compile(
  compiler: string[],
  build: PythonBuild,
  source: string,
  output: string,
  version: string,
): Promise<void> {
  const [given, ...flags] = compiler;
  // Compiled in the build's own directory, by relative names: the source's
  // path is in the module (__FILE__), and a temporary directory's name there
  // would make two builds of the same source differ, when two runs build at
  // once and the last rename must win with the same bytes as its manifest's.
  const program = given!.includes("/") ? resolve(given!) : given!;
  const args = [
    ...flags,
    "-shared",
    "-fPIC",
    "-O2",
    "-fno-strict-aliasing",
    `-I${build.include}`,
    ...(Deno.build.os === "darwin" ? ["-undefined", "dynamic_lookup"] : []),
    "-o",
    basename(output),
    basename(source),
  ];
  let result: Deno.CommandOutput;
  try {
    result = await new Deno.Command(program, {
      args,
      cwd: dirname(source),
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (error) {
    throw new NativeBuildError(
      `cannot run the C compiler "${program}": ${(error as Error).message}`,
      error instanceof Deno.errors.NotFound ? "no-compiler" : "failed",
    );
  }
  if (!result.success) {
    throw new NativeBuildError(
      `the C compiler ("${compiler.join(" ")}") failed on the native collector for Python ` +
        `${version}: ${lastLines(result.stderr)}`,
      "failed",
    );
  }
}

/** Loads the new module once, in the interpreter it is for, before it goes in the cache. */
async function checkLoads(
  python: string,
  name: string,
  module: string,
  version: string,
): Promise<void> {
  const code = "import sys, _imp\n" +
    "class S: name = sys.argv[1]; origin = sys.argv[2]\n" +
    "m = _imp.create_dynamic(S)\n" +
    "if hasattr(_imp, 'exec_dynamic'): _imp.exec_dynamic(m)";
  const result = await new Deno.Command(python, {
    args: ["-E", "-S", "-c", code, name, module],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!result.success) {
    throw new NativeBuildError(
      `the native collector built for Python ${version} does not load: ${lastLines(result.stderr)}`,
      "failed",
    );
  }
}

/** The manifest of a cache entry whose module is whole and unchanged, else undefined. */
async function readSoundEntry(path: string): Promise<Manifest | undefined> {
  let manifest: Manifest;
  try {
    manifest = JSON.parse(await Deno.readTextFile(`${path}.json`));
    if (typeof manifest.sha256 !== "string" || typeof manifest.compiler !== "string") {
      return undefined;
    }
    return await sha256Hex(await Deno.readFile(path)) === manifest.sha256 ? manifest : undefined;
  } catch {
    return undefined;
  }
}

async function sha256Hex(data: string | Uint8Array): Promise<string> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  const digest = await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}

async function isExecutable(path: string): Promise<boolean> {
  try {
    const info = await Deno.stat(path);
    return info.isFile && ((info.mode ?? 0o755) & 0o111) !== 0;
  } catch {
    return false;
  }
}

/** The last few lines of a tool's output, on one line. */
function lastLines(bytes: Uint8Array): string {
  const lines = new TextDecoder().decode(bytes).trim().split("\n").filter((line) => line !== "");
  const text = lines.slice(-4).join(" | ");
  return text === "" ? "it printed nothing" : text.length > 600 ? `${text.slice(0, 599)}…` : text;
}
