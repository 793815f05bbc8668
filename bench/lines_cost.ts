/**
 * What `--lines` costs (issue 13): bench/lines_cost.py traced plain, with
 * `--lines function:nothing` (a pattern that selects no code: what the
 * unselected code pays) and with `--lines function:work` (its loop's
 * lines recorded), in alternating runs. Prints the medians of the whole
 * traced run (conversion included) and of the program's own time, and
 * what a recorded line costs: the difference over the lines `work` ran.
 *
 *   deno run -A bench/lines_cost.ts [--python PATH] [--collector native|python]
 *     [--runs N]       (BENCH_N sets the loop's iterations, 200,000)
 *
 * @module
 */

import { parseArgs } from "node:util";
import { median, timeTracedRun } from "./_common.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const PROGRAM = `${ROOT}bench/lines_cost.py`;

const { values } = parseArgs({
  args: Deno.args,
  options: {
    python: { type: "string", default: "python3" },
    collector: { type: "string", default: "native" },
    runs: { type: "string", default: "5" },
  },
});
const runs = Number(values.runs);

const VARIANTS: [string, string[]][] = [
  ["plain", []],
  ["--lines function:nothing", ["--lines", "function:nothing"]],
  ["--lines function:work", ["--lines", "function:work"]],
];

/** The whole traced run's time and the program's own, in seconds, and the lines it ran. */
async function timeRun(extra: string[]): Promise<[number, number, number]> {
  const { seconds, stdout } = await timeTracedRun(
    ["--python", values.python, "--collector", values.collector, "--no-c-calls", ...extra],
    [PROGRAM],
  );
  const own = Number(/^elapsed ([0-9.]+)$/m.exec(stdout)?.[1]);
  const lines = Number(/^lines ([0-9]+)$/m.exec(stdout)?.[1]);
  return [seconds, own, lines];
}

const whole: number[][] = VARIANTS.map(() => []);
const own: number[][] = VARIANTS.map(() => []);
let lines = 0;
for (let i = 0; i < runs; i++) {
  for (const [index, [, extra]] of VARIANTS.entries()) {
    const [elapsed, itself, ran] = await timeRun(extra);
    whole[index]!.push(elapsed);
    own[index]!.push(itself);
    lines = ran;
  }
}

console.log(`${values.python}, ${values.collector} collector, ${runs} alternating runs`);
for (const [index, [name]] of VARIANTS.entries()) {
  console.log(
    `${name.padEnd(26)} whole run ${median(whole[index]!).toFixed(3)} s, ` +
      `program ${median(own[index]!).toFixed(3)} s`,
  );
}
const perLine = (list: number[][]) => ((median(list[2]!) - median(list[0]!)) / lines) * 1e9;
console.log(
  `a recorded line (${lines.toLocaleString("en")} lines): ${perLine(own).toFixed(0)} ns ` +
    `of the program's time, ${perLine(whole).toFixed(0)} ns of the whole run`,
);
