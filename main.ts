/**
 * The `panopticon` command: parse the command line, run the program under
 * the collector, report, exit.
 *
 * Exit status: the traced program's own (128 + N when signal N killed it);
 * 2 for a command line Panopticon cannot understand; 1 when Panopticon fails
 * before the program runs. When the trace cannot be written although the
 * program ran, the program's status if it failed, else 1.
 *
 * @module
 */

import denoJson from "./deno.json" with { type: "json" };
import { HELP_TEXT, parseCommandLine, type TraceCommand, UsageError } from "./src/cli.ts";
import { findPython } from "./src/python.ts";
import { RunError, type RunResult, runTraced } from "./src/runner.ts";

/** `panopticon --version` prints `panopticon <this>`. */
export const VERSION: string = denoJson.version;

// Read once at start-up: shows the stack of an error of ours.
const DEBUG = Boolean(Deno.env.get("PANOPTICON_DEBUG"));

/** Runs the command line `args` and resolves with the exit status. */
export async function main(args: readonly string[]): Promise<number> {
  try {
    const command = parseCommandLine(args);
    switch (command.kind) {
      case "help":
        console.log(HELP_TEXT);
        return 0;
      case "version":
        console.log(`panopticon ${VERSION}`);
        return 0;
      case "trace":
        return await trace(command);
    }
  } catch (error) {
    if (error instanceof UsageError) {
      printError(error);
      return 2;
    }
    printError(error);
    return error instanceof RunError && error.exitCode !== undefined ? error.exitCode : 1;
  }
}

async function trace(command: TraceCommand): Promise<number> {
  const python = await findPython({ python: command.python });
  const result = await runTraced(command.target, {
    python,
    output: command.output,
    engine: command.engine,
    filters: command.filters,
    maxDepth: command.maxDepth,
  });
  console.error(describeRun(command.output, python.version, result));
  for (const warning of result.summary.warnings) console.error(`panopticon: warning: ${warning}`);
  return result.exitCode;
}

/** The line printed after a run. */
export function describeRun(
  output: string,
  version: readonly number[],
  result: Pick<RunResult, "summary" | "engine">,
): string {
  const { summary } = result;
  const count = (n: number, one: string) =>
    `${n.toLocaleString("en-US")} ${one}${n === 1 ? "" : "s"}`;
  return `panopticon: wrote ${output} — ${count(summary.events, "event")}, ` +
    `${count(summary.threads, "thread")} (Python ${summary.pythonVersion || version.join(".")}, ` +
    `${summary.engine || result.engine} engine)` +
    `${summary.complete ? "" : ", cut short"}. ` +
    "Open it in https://ui.perfetto.dev or chrome://tracing.";
}

function printError(error: unknown): void {
  const message = error instanceof Error ? error.message : String(error);
  console.error(`error: ${message}`);
  if (DEBUG && error instanceof Error && error.stack) console.error(error.stack);
}

if (import.meta.main) Deno.exit(await main(Deno.args));
