/**
 * What recording the runtime's own work costs (issue 14): each program is
 * traced with Panopticon's defaults (garbage collections and CPU counters
 * on) and with `--no-gc --no-cpu-counters` (or the options given), in
 * alternating runs, and the medians of the whole traced run are compared,
 * and of the program's own time where it prints one (`elapsed SECONDS`),
 * which leaves out start-up and the converter's work after the program,
 * and of its thread's CPU time where it prints that (`cpu SECONDS`), which
 * also leaves out the time it waited for the converter on a busy machine.
 *
 *   deno run -A bench/runtime_cost.ts [--python PATH] [--collector native|python]
 *     [--runs N] [--off="--no-gc --no-cpu-counters"] [PROGRAM.py ...]
 *
 * Default programs: bench/gc_cost.py (a collection every few hundred
 * microseconds), bench/tasks_cost.py (40,000 short asyncio tasks) and the
 * shared workload threads.py.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { median, timeTracedRun } from "./_common.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const WORKLOADS = `${ROOT}../shared/bench/workloads`;

const { values, positionals } = parseArgs({
  args: Deno.args,
  allowPositionals: true,
  options: {
    python: { type: "string", default: "python3" },
    collector: { type: "string", default: "native" },
    runs: { type: "string", default: "5" },
    off: { type: "string", default: "--no-gc --no-cpu-counters" },
  },
});
const programs = positionals.length > 0
  ? positionals
  : [`${ROOT}bench/gc_cost.py`, `${ROOT}bench/tasks_cost.py`, `${WORKLOADS}/threads.py`];
const runs = Number(values.runs);
const off = values.off.split(/\s+/).filter((word) => word !== "");

/** The whole traced run's time, and the program's own and its CPU time if it printed them, in seconds. */
async function timeRun(
  program: string,
  extra: string[],
): Promise<[number, number | undefined, number | undefined]> {
  const { seconds, stdout } = await timeTracedRun(
    ["--python", values.python, "--collector", values.collector, ...extra],
    [program],
  );
  const own = /^elapsed ([0-9.]+)$/m.exec(stdout);
  const cpu = /^cpu ([0-9.]+)$/m.exec(stdout);
  return [seconds, own ? Number(own[1]) : undefined, cpu ? Number(cpu[1]) : undefined];
}

console.log(`${values.python}, ${values.collector} collector, ${runs} alternating runs`);
function report(what: string, on: number[], without: number[]): string {
  const a = median(on);
  const b = median(without);
  return `${what}: defaults ${a.toFixed(3)} s, ${off.join(" ")} ${b.toFixed(3)} s, ${
    ((a / b - 1) * 100).toFixed(1)
  }% (${on.map((x) => x.toFixed(3)).join(" ")} | ${without.map((x) => x.toFixed(3)).join(" ")})`;
}

for (const program of programs) {
  const whole: [number[], number[]] = [[], []];
  const own: [number[], number[]] = [[], []];
  const cpu: [number[], number[]] = [[], []];
  for (let i = 0; i < runs; i++) {
    for (const [kind, extra] of [[0, []], [1, off]] as const) {
      const [elapsed, itself, thread] = await timeRun(program, [...extra]);
      whole[kind].push(elapsed);
      if (itself !== undefined) own[kind].push(itself);
      if (thread !== undefined) cpu[kind].push(thread);
    }
  }
  console.log(report(`${program.split("/").at(-1)}, whole run`, ...whole));
  if (own[0].length === runs) console.log(report("  the program's own time", ...own));
  if (cpu[0].length === runs) console.log(report("  its thread's CPU time", ...cpu));
}
