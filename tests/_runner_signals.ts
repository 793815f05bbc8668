/**
 * Run by runner_test.ts in a process of its own (`deno test` stops at a
 * SIGINT): traces a fake program, sends this process SIGINT, SIGTERM and
 * SIGHUP while it runs, and prints what the fake program was sent and what
 * the run returned. Without the runner's listeners the process would die.
 */
import { runTraced, type Spawn } from "../src/runner.ts";

const dir = await Deno.makeTempDir({ prefix: "panopticon-signals-test-" });
const script = `${dir}/app.py`;
await Deno.writeTextFile(script, "");
const kills: string[] = [];
let release = () => {};
const running = new Promise<void>((resolve) => release = resolve);
const spawn: Spawn = () => ({
  status: running.then(() => ({ code: 130, signal: "SIGINT" as const })),
  kill: (signal = "SIGTERM") => void kills.push(signal),
});
const run = runTraced({ kind: "script", path: script, args: [] }, {
  python: { path: "python-fake", version: [3, 12, 1] },
  output: `${dir}/t.json`,
  spawn,
  env: {},
  collectorSource: "",
  tempDir: dir,
});
run.catch(() => {});
await new Promise((resolve) => setTimeout(resolve, 50));
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  Deno.kill(Deno.pid, signal);
  await new Promise((resolve) => setTimeout(resolve, 50));
}
release();
const outcome = await run.then(
  (result) => ({ exitCode: result.exitCode }),
  (error) => ({ error: error.message, exitCode: error.exitCode }),
);
const left = (await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name).sort();
await Deno.remove(dir, { recursive: true });
console.log(JSON.stringify({ kills, ...outcome, left }));
