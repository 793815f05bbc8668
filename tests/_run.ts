/** Running programs under plain Python and under Panopticon, for end-to-end tests. */

import assert from "node:assert/strict";
import { readTrace, type Trace } from "./_trace.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;

/** What a finished process showed the world. */
export interface Outcome {
  code: number;
  stdout: string;
  stderr: string;
}

/** How to run a program. */
export interface RunOptions {
  /** Bytes for standard input; none means an empty stdin. */
  stdin?: string;
  /** Working directory. */
  cwd?: string;
  /** Extra environment variables. */
  env?: Record<string, string>;
  /**
   * After this long the run is stopped (SIGTERM, then SIGKILL 5 s later)
   * and its stderr says so: a hang fails the test instead of holding the
   * suite up.
   *
   * @default {undefined} (no limit)
   */
  timeoutMs?: number;
}

async function run(command: string, args: string[], options: RunOptions): Promise<Outcome> {
  const child = new Deno.Command(command, {
    args,
    cwd: options.cwd,
    env: options.env,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  if (options.stdin) await writer.write(new TextEncoder().encode(options.stdin));
  await writer.close();
  let timedOut = false;
  const timers: ReturnType<typeof setTimeout>[] = [];
  if (options.timeoutMs !== undefined) {
    const kill = (signal: Deno.Signal) => {
      try {
        child.kill(signal);
      } catch {
        // It has exited meanwhile.
      }
    };
    timers.push(setTimeout(() => {
      timedOut = true;
      kill("SIGTERM");
      timers.push(setTimeout(() => kill("SIGKILL"), 5000));
    }, options.timeoutMs));
  }
  const output = await child.output().finally(() => timers.forEach(clearTimeout));
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr) +
      (timedOut ? `\n[test: stopped after ${options.timeoutMs} ms]\n` : ""),
  };
}

/** Runs `python args…` directly. */
export function runPython(python: string, args: string[], options: RunOptions = {}) {
  return run(python, args, options);
}

/** Runs `panopticon [options] args…` from source, as `deno run -A main.ts` does. */
export function runPanopticon(args: string[], options: RunOptions = {}): Promise<Outcome> {
  return run(Deno.execPath(), ["run", "-A", MAIN, ...args], options);
}

/**
 * Panopticon's own lines on stderr (`panopticon: …`, after the program's
 * output), removed so that the program's stderr can be compared with a
 * plain run's.
 */
export function programStderr(stderr: string): string {
  return stderr.split(/(?<=\n)/).filter((line) => !line.startsWith("panopticon: ")).join("");
}

/** A fresh temporary directory, removed by the returned function. */
export async function tempDir(): Promise<{ path: string; remove: () => Promise<void> }> {
  const path = await Deno.makeTempDir({ prefix: "panopticon-test-" });
  return { path, remove: () => Deno.remove(path, { recursive: true }) };
}

/**
 * Traces `args` (a program and its arguments, after Panopticon's own
 * `options`) with the interpreter at `python` into a temporary file, and
 * returns the outcome with the parsed trace. A missing or unreadable trace
 * fails with what Panopticon said.
 */
export async function traceProgram(
  python: string,
  options: string[],
  args: string[],
  run: RunOptions = {},
): Promise<{ outcome: Outcome; trace: Trace }> {
  const dir = await tempDir();
  try {
    const output = `${dir.path}/trace.json`;
    const outcome = await runPanopticon(
      ["--python", python, "-o", output, ...options, ...args],
      run,
    );
    let trace: Trace;
    try {
      trace = await readTrace(output);
    } catch (error) {
      throw new Error(`no readable trace (${error}); panopticon said:\n${outcome.stderr}`);
    }
    return { outcome, trace };
  } finally {
    await dir.remove();
  }
}

/**
 * {@linkcode traceProgram}, asserting that the program ran as under plain
 * `python` (stdout, stderr but Panopticon's own lines, status) and that the
 * trace is complete.
 */
export async function traceUnchanged(
  python: string,
  options: string[],
  args: string[],
): Promise<Trace> {
  const plain = await runPython(python, args);
  const { outcome, trace } = await traceProgram(python, options, args);
  assert.equal(outcome.stdout, plain.stdout, "stdout differs");
  assert.equal(programStderr(outcome.stderr), plain.stderr, "stderr differs");
  assert.equal(outcome.code, plain.code, "exit status differs");
  assert.equal(trace.otherData?.complete, true);
  return trace;
}
