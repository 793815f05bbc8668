/**
 * Trace sizes by format: traces each workload of the shared benchmark once
 * per format (JSON, gzipped JSON, protobuf, gzipped protobuf) and prints a
 * table of sizes and bytes a slice, the protobuf trace's against the JSON
 * trace's (the target is at most a fifth). Also, with the trace processor
 * set up (see tests/_viewer.ts), the peak memory of loading the JSON and
 * the protobuf trace into it.
 *
 *     deno run -A bench/sizes.ts [--python PATH] [--reps N] [--workloads a,b]
 *                                [--workloads-dir DIR]
 *
 * Times are not measured: runs may overlap other work.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { PerfettoDecoder } from "../src/perfetto_reader.ts";
import { TEST_PYTHONS } from "../tests/_pythons.ts";
import { VIEWER } from "../tests/_viewer.ts";
import { pythonVersion, table } from "./_common.ts";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const MAIN = join(ROOT, "main.ts");

const { values } = parseArgs({
  args: Deno.args,
  options: {
    python: { type: "string" },
    reps: { type: "string", default: "1" },
    workloads: { type: "string" },
    "workloads-dir": { type: "string" },
  },
});
const python = values.python ?? TEST_PYTHONS.at(-1)?.path ?? "python3";
const dir = resolve(values["workloads-dir"] ?? join(ROOT, "..", "shared", "bench", "workloads"));
const names = values.workloads?.split(",").map((name) => name.replace(/\.py$/, "")) ??
  [...Deno.readDirSync(dir)].filter((e) => e.name.endsWith(".py")).map((e) =>
    basename(e.name, ".py")
  )
    .sort();

const FILES = ["trace.json", "trace.json.gz", "trace.pftrace", "trace.pftrace.gz"] as const;

/** The slices of a JSON trace: its `ph:"X"` lines, counted without parsing. */
async function jsonSlices(path: string): Promise<number> {
  const text = await Deno.readTextFile(path);
  let count = 0;
  for (let at = text.indexOf('\n{"ph":"X"'); at !== -1; at = text.indexOf('\n{"ph":"X"', at + 1)) {
    count++;
  }
  return count;
}

async function protobufSlices(path: string): Promise<number> {
  using file = await Deno.open(path);
  const decoder = new PerfettoDecoder();
  let count = 0;
  for await (const chunk of file.readable) {
    decoder.push(chunk, (packet) => {
      if (packet.kind === "event" && packet.event.type === "begin") count++;
    });
  }
  decoder.finish();
  return count;
}

/** The peak RSS of loading `trace` into the trace processor, in bytes; undefined without it. */
async function loadPeak(trace: string): Promise<number | undefined> {
  if (!("path" in VIEWER)) return undefined;
  const time = await new Deno.Command("/usr/bin/env", {
    args: ["python3", "-c", LOAD_PEAK, VIEWER.path, trace],
    stdout: "piped",
    stderr: "null",
  }).output().catch(() => undefined);
  if (time === undefined || !time.success) return undefined;
  return Number(new TextDecoder().decode(time.stdout).trim());
}

/** Runs tp_query on a trace and prints its peak RSS (ru_maxrss) in bytes. */
const LOAD_PEAK = `
import resource, subprocess, sys
subprocess.run([sys.argv[1], sys.argv[2], "select count(*) from slice"], stdout=subprocess.DEVNULL, check=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)
`;

const mb = (bytes: number | undefined) =>
  bytes === undefined ? "n/a" : `${(bytes / 1e6).toFixed(1)} MB`;

const rows = [[
  "workload",
  "slices",
  "JSON",
  "B/slice",
  "JSON.gz",
  "protobuf",
  "B/slice",
  "JSON/protobuf",
  "protobuf.gz",
  "TP peak, JSON",
  "TP peak, protobuf",
]];
const temp = await Deno.makeTempDir({ prefix: "panopticon-sizes-" });
try {
  for (const name of names) {
    const sizes: number[] = [];
    for (const file of FILES) {
      const output = join(temp, file);
      const run = await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", MAIN, "--python", python, "-o", output, join(dir, `${name}.py`)],
        env: { BENCH_REPS: values.reps },
        stdout: "null",
        stderr: "piped",
      }).output();
      if (!run.success) throw new Error(`${name}: ${new TextDecoder().decode(run.stderr)}`);
      sizes.push((await Deno.stat(output)).size);
    }
    const [json, jsonGz, protobuf, protobufGz] = sizes as [number, number, number, number];
    const slices = await jsonSlices(join(temp, "trace.json"));
    const protobufCount = await protobufSlices(join(temp, "trace.pftrace"));
    const jsonPeak = await loadPeak(join(temp, "trace.json"));
    const protobufPeak = await loadPeak(join(temp, "trace.pftrace"));
    rows.push([
      name,
      slices.toLocaleString("en-US"),
      mb(json),
      (json / slices).toFixed(1),
      mb(jsonGz),
      mb(protobuf),
      (protobuf / protobufCount).toFixed(1),
      `${((json / slices) / (protobuf / protobufCount)).toFixed(2)}×`,
      mb(protobufGz),
      mb(jsonPeak),
      mb(protobufPeak),
    ]);
    console.error(`${name}: done`);
  }
} finally {
  await Deno.remove(temp, { recursive: true });
}
console.log(
  `trace sizes, Python ${pythonVersion(python)}, BENCH_REPS ${values.reps} ` +
    "(each format from its own run of the workload):",
);
console.log(table(rows));
