/**
 * Run by runner_test.ts in a process of its own (SIGTERM is sent to this
 * process): traces a real Python program whose stand-in collector sends its
 * `hello` and keeps the connection open while the program sleeps, then ends
 * the program as `Deno.args[0]` says: `SIGTERM` sent to this process (the
 * runner forwards it) or `SIGKILL` sent to the program. Prints what the run
 * returned and what is left where the private directory was made.
 */
import { convertProcesses, type ProcessStreams } from "../src/processes.ts";
import { type ChildProcess, runTraced, spawnChild } from "../src/runner.ts";

const how = Deno.args[0];
const dir = await Deno.makeTempDir({ prefix: "panopticon-killed-test-" });
const tmp = `${dir}/tmp`;
await Deno.mkdir(tmp);
const script = `${dir}/app.py`;
await Deno.writeTextFile(script, "import time\ntime.sleep(60)\n");
const collector = `
import json, os, socket, sys, threading, time
s = socket.socket(socket.AF_UNIX)
s.connect(os.environ.pop("PANOPTICON_CHANNEL"))
s.sendall((json.dumps({"kind": "hello", "protocol": 2, "pid": os.getpid(), "python": "3.11.0",
  "engine": "setprofile", "t0": time.perf_counter_ns(), "main_thread": threading.get_ident(),
  "argv": sys.argv, "secret": os.environ.pop("PANOPTICON_SECRET")}) + "\\n").encode())
sys.panopticon_channel = s
`;
let child: ChildProcess | undefined;
const admitted = Promise.withResolvers<void>();
const run = runTraced({ kind: "script", path: script, args: [] }, {
  python: { path: "python3", version: [3, 11, 0] },
  output: `${dir}/t.json`,
  spawn: (request) => child = spawnChild(request),
  convert: (input, output, options) => {
    const source = input as ProcessStreams;
    // Once the collector's connection is admitted, the program is ended.
    const connections = (source.connections as ReadableStream<ReadableStream<Uint8Array>>)
      .pipeThrough(
        new TransformStream({
          transform(stream, controller) {
            admitted.resolve();
            controller.enqueue(stream);
          },
        }),
      );
    return convertProcesses({ connections, stop: () => source.stop?.() }, output, options);
  },
  collectorSource: collector,
  tempDir: tmp,
});
run.catch(() => {});
await admitted.promise;
if (how === "SIGTERM") Deno.kill(Deno.pid, "SIGTERM");
else child!.kill("SIGKILL");
const outcome = await run.then(
  (result) => ({
    exitCode: result.exitCode,
    signal: result.status.signal,
    complete: result.summary.complete,
  }),
  (error) => ({ error: error.message, exitCode: error.exitCode }),
);
const left = (await Array.fromAsync(Deno.readDir(tmp))).map((e) => e.name);
await Deno.remove(dir, { recursive: true });
console.log(JSON.stringify({ ...outcome, left }));
