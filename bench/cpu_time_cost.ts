/**
 * What `--cpu-time` costs an event, with each collector: a loop of 200,000
 * calls (400,000 Python events; bench/cpu_time_cost.py) traced with and
 * without the option, in alternating runs; the difference of the medians of
 * the loop's own time, divided by its events.
 *
 * `deno run -A bench/cpu_time_cost.ts [--python PATH] [--runs N]`
 */
import { parseArgs } from "node:util";

const { values } = parseArgs({
  args: Deno.args,
  options: { python: { type: "string", multiple: true }, runs: { type: "string", default: "7" } },
});
const MAIN = new URL("../main.ts", import.meta.url).pathname;
const WORKLOAD = new URL("./cpu_time_cost.py", import.meta.url).pathname;
const EVENTS = 400_000;
const runs = Number(values.runs);
const pythons = values.python ?? ["python3"];

async function loopNs(python: string, collector: string, cpuTime: boolean): Promise<number> {
  const output = await Deno.makeTempFile({ suffix: ".json" });
  try {
    const args = ["run", "-A", MAIN, "--python", python, "--collector", collector, "-o", output];
    if (cpuTime) args.push("--cpu-time");
    const result = await new Deno.Command(Deno.execPath(), {
      args: [...args, WORKLOAD],
      stdout: "piped",
      stderr: "null",
    }).output();
    return Number(new TextDecoder().decode(result.stdout).trim());
  } finally {
    await Deno.remove(output);
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

for (const python of pythons) {
  for (const collector of ["native", "python"]) {
    const off: number[] = [];
    const on: number[] = [];
    for (let i = 0; i < runs; i++) {
      off.push(await loopNs(python, collector, false));
      on.push(await loopNs(python, collector, true));
    }
    const perEvent = (median(on) - median(off)) / EVENTS;
    console.log(
      `${python} ${collector}: loop ${(median(off) / 1e6).toFixed(1)} ms without, ` +
        `${(median(on) / 1e6).toFixed(1)} ms with --cpu-time (medians of ${runs}): ` +
        `${perEvent.toFixed(0)} ns an event more`,
    );
  }
}
