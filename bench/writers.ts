/**
 * The trace writers alone: the same slices, recorded once from the
 * frame-state machine, written again and again by the Catapult JSON writer
 * and by the Perfetto protobuf writer in alternating rounds, into a sink
 * that counts and discards the bytes. Prints, for each, the median time a
 * slice, the slices and events a second (an event is half a slice) and the
 * bytes a slice, side by side.
 *
 *     deno run -A bench/writers.ts [--slices N] [--rounds N] [--threads N] [--only json|protobuf]
 *
 * The slices are what a busy program makes, as bench/converter.ts's stream
 * does: 1 to 4 threads, a stack that wanders between 1 and 30 deep, plain
 * Python calls and C calls (about 40% of slices), and generators and
 * coroutines suspended and resumed, sometimes on another thread, their
 * slices joined by flows. A seeded generator makes every run the same.
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  CatapultWriter,
  FrameStateMachine,
  PerfettoWriter,
  type ProtocolEvent,
  type ProtocolRecord,
  type Slice,
  type TraceSink,
  type TraceSummary,
} from "../mod.ts";

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    slices: { type: "string", default: "1000000" },
    rounds: { type: "string", default: "5" },
    threads: { type: "string", default: "4" },
    // One writer only, e.g. to profile it.
    only: { type: "string" },
  },
});
const wanted = Number(flags.slices);
const rounds = Number(flags.rounds);
const threads = Number(flags.threads);
if (![wanted, rounds, threads].every((n) => Number.isSafeInteger(n) && n > 0) || threads > 4) {
  console.error("error: expected positive whole numbers, and --threads 1 to 4");
  Deno.exit(2);
}

function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A stream of records for about `wanted` slices, as a busy program sends them. */
function records(): ProtocolRecord[] {
  const r = random(7);
  const idents = Array.from({ length: threads }, (_, i) => 140_000 + i);
  const out: ProtocolRecord[] = [
    {
      kind: "hello",
      protocol: 3,
      pid: 4242,
      python: "3.12.1",
      engine: "monitoring",
      t0: 0,
      main_thread: idents[0]!,
      argv: ["bench.py"],
    },
  ];
  for (const [i, ident] of idents.entries()) {
    out.push({ kind: "thread", thread: ident, native_id: 4242 + i, name: `Thread-${i}` });
  }
  for (let id = 1; id <= 220; id++) {
    out.push({
      kind: "code",
      id,
      module: `app.module_${id % 23}`,
      qualname: `Handler${id % 7}.method_${id}`,
      file: `/home/user/project/app/module_${id % 23}.py`,
      line: id * 7,
      type: id <= 200 ? "function" : id % 2 === 0 ? "generator" : "coroutine",
    });
  }
  for (let id = 1; id <= 60; id++) out.push({ kind: "cfunc", id, name: `builtins.function_${id}` });
  const stacks: { frame: number; code: number; c: boolean }[][] = idents.map(() => []);
  const suspended: { frame: number; code: number }[] = [];
  let ts = 1000;
  let frames = 1;
  let events: ProtocolEvent[] = [];
  let thread = 0;
  let slices = 0;
  while (slices < wanted) {
    if (r() < 0.001) thread = Math.floor(r() * threads);
    const ident = idents[thread]!;
    const stack = stacks[thread]!;
    ts += 40 + Math.floor(r() * 400);
    const x = r();
    if (stack.length > 0 && (stack.length >= 30 || x < 0.4)) {
      const top = stack.pop()!;
      slices++;
      if (top.c) events.push([6, ident, ts, 0, top.code]);
      else if (top.frame !== 0 && r() < 0.6 && suspended.length < 256) {
        suspended.push(top);
        events.push([4, ident, ts, top.frame, top.code]);
      } else events.push([2, ident, ts, top.frame, top.code]);
    } else if (x < 0.6) {
      const code = 1 + Math.floor(r() * 60);
      events.push([5, ident, ts, 0, code], [6, ident, ts + 20, 0, code]);
      ts += 20;
      slices++;
    } else if (x < 0.85 || (x < 0.95 && suspended.length === 0)) {
      const code = 1 + Math.floor(r() ** 3 * 200);
      stack.push({ frame: 0, code, c: false });
      events.push([0, ident, ts, 0, code]);
    } else if (x < 0.95) {
      const frame = suspended.shift()!;
      stack.push({ ...frame, c: false });
      events.push([1, ident, ts, frame.frame, frame.code]);
    } else {
      const entry = { frame: 100_000 + frames++, code: 201 + Math.floor(r() * 20), c: false };
      stack.push(entry);
      events.push([0, ident, ts, entry.frame, entry.code]);
    }
    if (events.length >= 8192) {
      out.push({ kind: "events", events });
      events = [];
    }
  }
  out.push({ kind: "events", events });
  return out;
}

/** The slices the machine makes of the stream, copied, and the rest of what it tells a sink. */
function record() {
  const calls: ((sink: TraceSink) => void)[] = [];
  let summary: TraceSummary | undefined;
  const sink: TraceSink = {
    process: (process) => calls.push((s) => s.process(process)),
    thread: (thread) => calls.push((s) => s.thread({ ...thread })),
    slice: (slice) => {
      const copy: Slice = { ...slice };
      calls.push((s) => s.slice(copy));
    },
    finish: (done) => void (summary = done),
  };
  const machine = new FrameStateMachine(sink);
  for (const item of records()) machine.push(item);
  machine.end();
  return { calls, summary: summary! };
}

const { calls, summary } = record();
const slices = summary.slices;

type Writer = "json" | "protobuf";
const times: Record<Writer, number[]> = { json: [], protobuf: [] };
const sizes: Record<Writer, number> = { json: 0, protobuf: 0 };

async function run(writer: Writer): Promise<void> {
  let bytes = 0;
  const output = new WritableStream<Uint8Array>({ write: (chunk) => void (bytes += chunk.length) });
  const started = performance.now();
  const sink = writer === "json" ? new CatapultWriter(output) : new PerfettoWriter(output);
  for (let i = 0; i < calls.length; i++) {
    calls[i]!(sink);
    // As the converter does between batches: let the output drain.
    if ((i & 8191) === 0) await sink.ready();
  }
  sink.finish(summary);
  await sink.close();
  times[writer].push((performance.now() - started) / 1000);
  sizes[writer] = bytes;
}

console.log(
  `trace writers alone: ${slices.toLocaleString("en-US")} slices on ${threads} threads, ` +
    `${rounds} alternating rounds after a warm-up`,
);
const writers: Writer[] = flags.only === undefined ? ["json", "protobuf"] : [flags.only as Writer];
for (const writer of writers) await run(writer);
times.json.length = 0;
times.protobuf.length = 0;
for (let round = 0; round < rounds; round++) {
  for (const writer of writers) await run(writer);
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[values.length >> 1]!;
for (const writer of writers) {
  const seconds = median(times[writer]);
  console.log(
    `  ${writer.padEnd(8)} ${(seconds * 1e9 / slices).toFixed(0).padStart(4)} ns a slice, ` +
      `${Math.round(slices / seconds).toLocaleString("en-US")} slices/s ` +
      `(${Math.round(2 * slices / seconds).toLocaleString("en-US")} events/s), ` +
      `${(sizes[writer] / slices).toFixed(1)} bytes a slice`,
  );
}
if (writers.length === 2) {
  console.log(
    `  protobuf: ${((sizes.json / slices) / (sizes.protobuf / slices)).toFixed(2)}× fewer bytes, ` +
      `${(median(times.json) / median(times.protobuf)).toFixed(2)}× the speed of JSON`,
  );
}
