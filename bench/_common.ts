/**
 * What the benchmarks share: reading a finished trace's summary, the
 * interpreter's version, the code measured, formatting figures for the
 * tables they print, and saving their results.
 *
 * @module
 */

import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");

export function count(value: number | undefined): string {
  return value === undefined ? "n/a" : Math.round(value).toLocaleString("en-US");
}

export function git(args: string[]): string | undefined {
  try {
    const output = new Deno.Command("git", { args, cwd: ROOT, stdout: "piped", stderr: "null" })
      .outputSync();
    return output.success ? new TextDecoder().decode(output.stdout).trim() : undefined;
  } catch {
    return undefined;
  }
}

/** The time now, for a results file's name: `2026-12-01T15-06-08` (UTC). */
export function resultsStamp(): string {
  return new Date().toISOString().slice(0, 19).replaceAll(":", "-");
}

/** Writes `results` as JSON to `dir`/`name`-STAMP`Z.json` (see {@linkcode resultsStamp}); returns its path. */
export async function saveDatedResults(
  dir: string,
  name: string,
  results: unknown,
): Promise<string> {
  await Deno.mkdir(dir, { recursive: true });
  const path = join(dir, `${name}-${resultsStamp()}Z.json`);
  await Deno.writeTextFile(path, JSON.stringify(results, null, 2) + "\n");
  return path;
}

export function megabytes(bytes: number | undefined): string {
  return bytes === undefined ? "n/a" : `${(bytes / 1e6).toFixed(1)} MB`;
}

export function numberField(
  data: Record<string, unknown> | undefined,
  key: string,
): number | undefined {
  const value = data?.[key];
  return typeof value === "number" ? value : undefined;
}

export function pythonVersion(path: string): string {
  const output = new Deno.Command(path, {
    args: ["-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
    stdout: "piped",
    stderr: "piped",
  }).outputSync();
  if (!output.success) throw new Error(`Cannot run the Python interpreter ${path}`);
  return new TextDecoder().decode(output.stdout).trim();
}

export async function sha256(path: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", await Deno.readFile(path));
  return Array.from(new Uint8Array(digest), (byte) => byte.toString(16).padStart(2, "0")).join("");
}

/** Pads columns: the first to the left, the others to the right. */
export function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, column) =>
    Math.max(...rows.map((row) => row[column]?.length ?? 0))
  );
  return rows.map((row) =>
    row.map((cell, column) =>
      column === 0 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!)
    ).join("  ").trimEnd()
  ).join("\n");
}

/** Parses `otherData`, which the writer puts on the trace's last line. */
export async function readOtherData(path: string): Promise<Record<string, unknown> | undefined> {
  using file = await Deno.open(path);
  const { size } = await file.stat();
  const tail = Math.min(size, 65536);
  await file.seek(size - tail, Deno.SeekMode.Start);
  const buffer = new Uint8Array(tail);
  let filled = 0;
  while (filled < tail) {
    const read = await file.read(buffer.subarray(filled));
    if (read === null) break;
    filled += read;
  }
  const text = new TextDecoder().decode(buffer.subarray(0, filled)).trimEnd();
  const key = text.lastIndexOf('"otherData":');
  if (key === -1 || !text.endsWith("}")) return undefined;
  try {
    // `"otherData":{…}}`: the object, without the trace's closing brace.
    return JSON.parse(text.slice(key + '"otherData":'.length, -1));
  } catch {
    return undefined;
  }
}

/** `value` seconds, with `digits` decimals below ten seconds and one above. */
export function seconds(value: number | undefined, digits = 3): string {
  if (value === undefined) return "n/a";
  return value >= 10 ? `${value.toFixed(1)} s` : `${value.toFixed(digits)} s`;
}

/** A command line a benchmark cannot understand: it exits with status 2. */
export class UsageError extends Error {}

/**
 * Runs a benchmark's command line: `--help` prints `help`; a usage error
 * exits 2, any other error 1, each with one `error: …` line.
 */
export async function runBenchmark<Options>(
  args: string[],
  parseOptions: (args: string[]) => Options | "help",
  help: string,
  benchmark: (options: Options) => Promise<number>,
): Promise<number> {
  try {
    const options = parseOptions(args);
    if (options === "help") {
      console.log(help);
      return 0;
    }
    return await benchmark(options);
  } catch (error) {
    const usage = error instanceof UsageError ||
      (error as { code?: string }).code?.startsWith("ERR_PARSE_ARGS");
    console.error(`error: ${error instanceof Error ? error.message : String(error)}`);
    return usage ? 2 : 1;
  }
}

/** The median of `values` (the mean of the middle two for an even count). */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/**
 * Runs `deno run -A main.ts OPTIONS -o TMP/t.json PROGRAM...`, the trace in
 * a temporary directory removed after; returns the whole run's wall time in
 * seconds and what the program printed. A failed run throws with its stderr.
 */
export async function timeTracedRun(
  options: string[],
  program: string[],
): Promise<{ seconds: number; stdout: string }> {
  const dir = await Deno.makeTempDir({ prefix: "panopticon-bench-" });
  try {
    const start = performance.now();
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", `${ROOT}/main.ts`, ...options, "-o", `${dir}/t.json`, ...program],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const seconds = (performance.now() - start) / 1000;
    if (!output.success) throw new Error(new TextDecoder().decode(output.stderr));
    return { seconds, stdout: new TextDecoder().decode(output.stdout) };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
