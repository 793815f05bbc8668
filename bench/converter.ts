/**
 * Converter throughput: converts a synthetic collector stream, held in
 * memory, into a sink that counts and discards the trace, and prints
 * events per second, MB/s in and out, bytes per slice and peak memory.
 *
 *     deno run -A bench/converter.ts [events...] [--threads N] [--json]
 *                                    [--format json|perfetto|json,perfetto]
 *
 * Each size (default: 5,000,000 and 10,000,000 events, or
 * `PANOPTICON_BENCH_EVENTS`) runs in a fresh process, so that the memory
 * figures of one are not the leftovers of another: the converter streams,
 * so its peak memory should be the same at every size. `--json` sends
 * events as JSON arrays (protocol 1) instead of packed batches. `--format`
 * chooses the trace the converter writes: JSON (the default), Perfetto's
 * protobuf, or both, one after the other on the same stream, with their
 * ratios.
 *
 * The stream is what the collector sends for a busy program: protocol 2
 * batches of 8192 packed events and a flush record each, 1 to 4 threads
 * (default 4) taking turns as the GIL switches, real-looking thread idents,
 * frame ids and clock values (integers of 2^45 to 2^48, as marshal longs),
 * and a mix of about 35% calls and returns of plain Python functions sent
 * with frame id 0, 40% C calls and returns, and generators and coroutines
 * suspended and resumed (sometimes on another thread) under their real
 * frame ids. A seeded generator makes every run the same.
 *
 * @module
 */

import process from "node:process";
import { parseArgs } from "node:util";
import { convert, type ProtocolEvent } from "../mod.ts";
import { marshalEvents } from "../tests/_packed.ts";

const BATCH = 8192;
/** The size of a read from the collector's socket. */
const READ = 65536;
const CODES = 200;
const GENERATORS = 20;
const CFUNCS = 60;

const { values: flags, positionals } = parseArgs({
  args: Deno.args,
  allowPositionals: true,
  options: {
    threads: { type: "string", default: "4" },
    json: { type: "boolean", default: false },
    format: { type: "string", default: "json" },
    // Internal: run one size in this process and print its figures as JSON.
    child: { type: "boolean", default: false },
  },
});
const formats = flags.format.split(",");
for (const format of formats) {
  if (format !== "json" && format !== "perfetto") {
    console.error(`error: expected --format json, perfetto or json,perfetto, got ${flags.format}`);
    Deno.exit(2);
  }
}
const threads = Number(flags.threads);
if (!Number.isInteger(threads) || threads < 1 || threads > 4) {
  console.error(`error: expected --threads 1 to 4, got ${flags.threads}`);
  Deno.exit(2);
}
const sizes =
  (positionals.length > 0
    ? positionals
    : (Deno.env.get("PANOPTICON_BENCH_EVENTS") ?? "5000000,10000000").split(","))
    .map((text) => Number(text.replaceAll("_", "")));
for (const size of sizes) {
  if (!Number.isSafeInteger(size) || size < 1) {
    console.error(`error: expected a positive number of events, got ${size}`);
    Deno.exit(2);
  }
}

/** A small, seeded pseudo-random generator (mulberry32): the same stream every run. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** What is open on one thread's stack. */
type Frame = { kind: "py"; code: number } | { kind: "gen"; id: number; code: number } | {
  kind: "c";
  cfunc: number;
};

/** What the collector would send for a busy program, event by event. */
class Program {
  readonly #next = random(42);
  readonly #idents: number[];
  readonly #stacks: Frame[][];
  /** Suspended generator frames: id to code. */
  readonly #suspended = new Map<number, number>();
  #thread = 0;
  #switchIn = 1000;
  #nextId = 0;
  ts = 264_000_000_000_000; // three days of uptime, in ns: a 4-digit marshal long

  constructor(threads: number) {
    this.#idents = Array.from({ length: threads }, (_, i) => 140_245_061_072_704 + i * 8_392_704);
    this.#stacks = this.#idents.map(() => []);
  }

  get idents(): readonly number[] {
    return this.#idents;
  }

  /**
   * Appends the next event or two to `out`. Every frame opened is closed
   * again, so each kind's share of events is twice its share of openings:
   * the chances below give about 35% plain calls and returns, 40% C and
   * 25% generator and coroutine events. The depth wanders between 1 and 30.
   */
  step(out: ProtocolEvent[]): void {
    const r = this.#next;
    if (--this.#switchIn <= 0) {
      // The GIL changes hands every few thousand events.
      this.#thread = Math.floor(r() * this.#idents.length);
      this.#switchIn = 500 + Math.floor(r() * 3000);
    }
    const ident = this.#idents[this.#thread]!;
    const stack = this.#stacks[this.#thread]!;
    const tick = () => (this.ts += 40 + Math.floor(r() * 400));
    const depth = stack.length;
    const x = r();
    if (depth === 0 || (depth < 4 && x < 0.3)) return this.#call(out, stack, ident, tick());
    const top = stack[depth - 1]!;
    if (depth >= 30 || x < 0.394) {
      stack.pop();
      if (top.kind === "c") out.push([x < 0.01 ? 7 : 6, ident, tick(), 0, top.cfunc]);
      else if (top.kind === "py") out.push([x < 0.005 ? 3 : 2, ident, tick(), 0, top.code]);
      else if (r() < 0.667 && this.#suspended.size < 256) {
        this.#suspended.set(top.id, top.code);
        out.push([4, ident, tick(), top.id, top.code]);
      } else out.push([2, ident, tick(), top.id, top.code]);
    } else if (x < 0.606) {
      // A leaf C call: len(), list.append(), isinstance()...
      const cfunc = 1 + Math.floor(r() * CFUNCS);
      out.push([5, ident, tick(), 0, cfunc], [6, ident, tick(), 0, cfunc]);
    } else if (x < 0.636) {
      // A C call that calls back into Python (sorted(key=...), map...).
      const cfunc = 1 + Math.floor(r() * CFUNCS);
      stack.push({ kind: "c", cfunc });
      out.push([5, ident, tick(), 0, cfunc]);
    } else if (x < 0.848) {
      this.#call(out, stack, ident, tick());
    } else if (x < 0.898 || this.#suspended.size === 0) {
      // A new generator or coroutine frame, under its real id.
      const id = 139_872_345_634_560 + (this.#nextId++ % 1_048_576) * 432;
      const code = CODES + 1 + Math.floor(r() * GENERATORS);
      stack.push({ kind: "gen", id, code });
      out.push([0, ident, tick(), id, code]);
    } else {
      // Resume a suspended generator or coroutine, often one that ran on
      // another thread (a work queue).
      const [id, code] = this.#suspended.entries().next().value!;
      this.#suspended.delete(id);
      stack.push({ kind: "gen", id, code });
      out.push([1, ident, tick(), id, code]);
    }
  }

  #call(out: ProtocolEvent[], stack: Frame[], ident: number, ts: number): void {
    // A few hot functions take most calls, as in real programs.
    const r = this.#next();
    const code = 1 + Math.floor(r * r * r * CODES);
    stack.push({ kind: "py", code });
    out.push([0, ident, ts, 0, code]);
  }
}

interface Input {
  bytes: Uint8Array;
  records: number;
  mix: Record<string, number>;
}

function generate(events: number, json: boolean): Input {
  const encoder = new TextEncoder();
  const program = new Program(threads);
  const idents = program.idents;
  // One buffer, larger than needed: the pages never written are never
  // resident, so the RSS before converting is the input and little else.
  const buffer = new Uint8Array(1_000_000 + events * (json ? 60 : 90));
  let at = 0;
  const add = (text: string) => {
    at += encoder.encodeInto(text, buffer.subarray(at)).written;
  };
  const lines = [
    `{"kind":"hello","protocol":${
      json ? 1 : 2
    },"pid":4242,"python":"3.12.1","engine":"monitoring","t0":${program.ts},"main_thread":${
      idents[0]
    },"argv":["bench.py"]}`,
    ...idents.map((ident, i) =>
      `{"kind":"thread","thread":${ident},"native_id":${4242 + i},"name":"${
        i === 0 ? "MainThread" : `Thread-${i} (worker)`
      }"}`
    ),
  ];
  for (let id = 1; id <= CODES + GENERATORS; id++) {
    const type = id <= CODES ? "function" : id % 2 === 0 ? "generator" : "coroutine";
    lines.push(
      `{"kind":"code","id":${id},"module":"app.module_${id % 23}","qualname":"Handler${
        id % 7
      }.method_${id}","file":"/home/user/project/app/module_${id % 23}.py","line":${
        id * 7
      },"type":"${type}"}`,
    );
  }
  for (let id = 1; id <= CFUNCS; id++) {
    lines.push(`{"kind":"cfunc","id":${id},"name":"builtins.function_${id}"}`);
  }
  add(lines.join("\n") + "\n");
  let records = lines.length;
  const mix = { plain: 0, c: 0, generator: 0 };
  let written = 0;
  const batch: ProtocolEvent[] = [];
  while (written < events) {
    batch.length = 0;
    const size = Math.min(BATCH, events - written);
    while (batch.length < size) program.step(batch);
    batch.length = size;
    for (const [op, , , frame] of batch) {
      if (op >= 5) mix.c++;
      else if (frame === 0) mix.plain++;
      else mix.generator++;
    }
    written += size;
    const start = program.ts += 100;
    const end = program.ts += 20_000;
    const body = json
      ? `"events":${JSON.stringify(batch)}`
      : `"packed":"${marshalEvents(batch).toBase64()}"`;
    if (at + body.length + 1000 > buffer.length) throw new Error("the input buffer is too small");
    add(
      `{"kind":"events",${body}}\n` +
        `{"kind":"flush","thread":${idents[0]},"start":${start},"end":${end},"events":${size}}\n`,
    );
    records += 2;
  }
  add(
    `{"kind":"end","ts":${program.ts + 1},"events":${written},"dropped":0,"reason":"exit",` +
      `"max_rss":31457280}\n`,
  );
  records++;
  return { bytes: buffer.subarray(0, at), records, mix };
}

/** What one run measured. */
interface Figures {
  events: number;
  records: number;
  slices: number;
  seconds: number;
  cpu: number;
  input: number;
  output: number;
  mix: Record<string, number>;
  rssBefore: number;
  peakRss: number;
  peakHeap: number;
  heapBefore: number;
}

async function measure(count: number, format: "json" | "perfetto"): Promise<Figures> {
  const { bytes, records, mix } = generate(count, flags.json);
  // Let the generator's garbage go before measuring.
  (globalThis as { gc?: () => void }).gc?.();
  const { rss: rssBefore, heapUsed: heapBefore } = Deno.memoryUsage();
  let peakRss = rssBefore;
  let peakHeap = heapBefore;
  const sample = () => {
    const { rss, heapUsed } = Deno.memoryUsage();
    if (rss > peakRss) peakRss = rss;
    if (heapUsed > peakHeap) peakHeap = heapUsed;
  };
  let at = 0;
  let reads = 0;
  const input = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (at >= bytes.length) return controller.close();
      if (++reads % 64 === 0) sample();
      controller.enqueue(bytes.subarray(at, at + READ));
      at += READ;
    },
  }, { highWaterMark: 0 });
  let output = 0;
  const sink = new WritableStream<Uint8Array>({
    write(chunk) {
      output += chunk.length;
    },
  });
  const started = performance.now();
  const cpuBefore = process.cpuUsage();
  const summary = await convert(input, sink, { format });
  const cpu = process.cpuUsage(cpuBefore);
  const seconds = (performance.now() - started) / 1000;
  sample();
  return {
    events: count,
    records,
    slices: summary.slices,
    seconds,
    cpu: (cpu.user + cpu.system) / 1e6,
    input: bytes.length,
    output,
    mix,
    rssBefore,
    peakRss,
    peakHeap,
    heapBefore,
  };
}

if (flags.child) {
  console.log(JSON.stringify(await measure(sizes[0]!, formats[0] as "json" | "perfetto")));
  Deno.exit(0);
}

const mb = (bytes: number) => (bytes / 1e6).toFixed(1);
const thousands = (n: number) => Math.round(n).toLocaleString("en-US");
const percent = (part: number, whole: number) => `${Math.round((100 * part) / whole)}%`;

console.log(
  `converter benchmark: ${
    flags.json ? "JSON events (protocol 1)" : "packed events (protocol 2)"
  }, ` +
    `${threads} thread${threads === 1 ? "" : "s"}, batches of ${BATCH}, reads of ${READ} bytes`,
);
const results: Figures[] = [];
const runs = formats.flatMap((format) => sizes.map((size) => [format, size] as const));
const byFormat = new Map<string, Figures[]>();
for (const [format, size] of runs) {
  const child = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--v8-flags=--expose-gc",
      import.meta.filename!,
      String(size),
      "--threads",
      String(threads),
      ...(flags.json ? ["--json"] : []),
      "--format",
      format,
      "--child",
    ],
    stderr: "inherit",
  }).output();
  if (!child.success) Deno.exit(1);
  const run: Figures = JSON.parse(new TextDecoder().decode(child.stdout));
  results.push(run);
  byFormat.set(format, [...byFormat.get(format) ?? [], run]);
  const total = run.mix.plain! + run.mix.c! + run.mix.generator!;
  console.log(
    `\n${thousands(run.events)} events in ${thousands(run.records)} records, ${
      mb(run.input)
    } MB in: ` +
      `${percent(run.mix.plain!, total)} plain Python calls/returns (frame 0), ` +
      `${percent(run.mix.c!, total)} C calls/returns, ` +
      `${percent(run.mix.generator!, total)} generator/coroutine events`,
  );
  console.log(
    `  converted in ${run.seconds.toFixed(2)} s (CPU ${run.cpu.toFixed(2)} s, all threads): ` +
      `${thousands(run.slices)} slices, ${mb(run.output)} MB of ${
        format === "perfetto" ? "protobuf" : "JSON"
      }, ` +
      `${(run.output / run.slices).toFixed(1)} bytes per slice`,
  );
  console.log(
    `  throughput: ${thousands(run.events / run.seconds)} events/s, ` +
      `${mb(run.input / run.seconds)} MB/s in, ${mb(run.output / run.seconds)} MB/s out`,
  );
  console.log(
    `  memory: peak RSS ${mb(run.peakRss)} MB (${mb(run.rssBefore)} MB before, the input ` +
      `included: +${mb(run.peakRss - run.rssBefore)} MB converting), ` +
      `peak heap ${mb(run.peakHeap)} MB (+${mb(run.peakHeap - run.heapBefore)} MB)`,
  );
}
const [json, protobuf] = [byFormat.get("json"), byFormat.get("perfetto")];
if (json !== undefined && protobuf !== undefined) {
  console.log(
    `\nprotobuf against JSON, by size: ${
      json.map((run, i) => {
        const other = protobuf[i]!;
        return `${thousands(run.events)} events: ` +
          `${
            ((run.output / run.slices) / (other.output / other.slices)).toFixed(2)
          }× fewer bytes ` +
          `a slice, ${(run.seconds / other.seconds).toFixed(2)}× the speed`;
      }).join("; ")
    }`,
  );
}
if (results.length > 1) {
  console.log(
    `\nmemory while converting, by size: ${
      results.map((run) =>
        `${thousands(run.events)} events: RSS +${mb(run.peakRss - run.rssBefore)} MB, ` +
        `heap peak ${mb(run.peakHeap)} MB`
      ).join("; ")
    }`,
  );
}
