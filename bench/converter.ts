/**
 * Converter throughput: converts a synthetic collector stream, held in
 * memory, and prints events per second, MB/s in and out, bytes per slice
 * and peak memory, twice: decoding and the frame-state machine into a sink
 * that discards what it gets, then the whole conversion to Catapult JSON
 * (into an output that counts and discards the bytes).
 *
 *     deno run -A bench/converter.ts [events...] [--threads N] [--format F]
 *                                    [--writer json|perfetto|json,perfetto]
 *
 * Each size (default: 5,000,000 and 10,000,000 events, or
 * `PANOPTICON_BENCH_EVENTS`) and each of the two runs goes in a fresh
 * process, so that the memory figures of one are not the leftovers of
 * another: the converter streams, so its peak memory should be the same at
 * every size.
 *
 * The events are what a collector sends for a busy program: 1 to 4
 * threads (default 4) taking turns as the GIL switches, real-looking
 * thread idents, frame ids and clock values (integers of 2^45 to 2^48),
 * and a mix of about 35% calls and returns of plain Python functions sent
 * with frame id 0, 40% C calls and returns, and generators and coroutines
 * suspended and resumed (sometimes on another thread) under their real
 * frame ids. A seeded generator makes every run the same. `--format` says
 * how they are sent:
 *
 * - `batch` (the default): protocol 4 as the native collector sends it,
 *   `batch` records of binary frames of at most 64 KiB, serial thread ids,
 *   a flush record after each frame;
 * - `marshal`: protocol 4 as the Python collector sends it, `events`
 *   records with a binary frame of marshal bytes, 8192 events each;
 * - `packed`: protocol 2, the same marshal bytes in base64 (`packed`);
 * - `json`: protocol 1, events as JSON arrays.
 *
 * @module
 */

import process from "node:process";
import { parseArgs } from "node:util";
import {
  convert,
  FrameStateMachine,
  NdjsonDecoder,
  type ProtocolEvent,
  type TraceSink,
} from "../mod.ts";
import { marshalEvents } from "../tests/_packed.ts";
import { batchLine, BatchWriter, nativeEvent } from "../tests/_batch.ts";

/** Events in a batch of the Python collector. */
const BATCH = 8192;
/** The native collector's buffer, and so its largest frame. */
const FRAME = 65536;
const FORMATS = ["batch", "marshal", "packed", "json"] as const;
type Format = typeof FORMATS[number];
/** The runs of each size: into a discarding sink, then through each writer asked for. */
const SINKS = ["discard", "json", "perfetto"] as const;
type Sink = typeof SINKS[number];
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
    format: { type: "string", default: "batch" },
    writer: { type: "string", default: "json" },
    // Internal: run one size into this sink in this process and print its figures as JSON.
    child: { type: "string" },
  },
});
const format = flags.format as Format;
if (!FORMATS.includes(format)) {
  console.error(`error: expected --format ${FORMATS.join(", ")}, got ${flags.format}`);
  Deno.exit(2);
}
type Writer = Exclude<Sink, "discard">;
const WRITER_NAMES: Record<Writer, string> = { json: "JSON", perfetto: "protobuf" };
const writers = flags.writer.split(",") as Writer[];
if (writers.some((writer) => writer !== "json" && writer !== "perfetto")) {
  console.error(`error: expected --writer json, perfetto or json,perfetto, got ${flags.writer}`);
  Deno.exit(2);
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

/** Bytes of input per event, more than any format needs, by format. */
const BYTES_PER_EVENT: Record<Format, number> = { batch: 12, marshal: 70, packed: 90, json: 60 };

/** The stream of `events` events, in `format`. */
function generate(events: number): Input {
  const encoder = new TextEncoder();
  const program = new Program(threads);
  const idents = program.idents;
  const native = format === "batch";
  // The native collector numbers threads itself (serial ids, protocol 4).
  const idOf = new Map(idents.map((ident, i) => [ident, native ? i + 1 : ident]));
  // One buffer, larger than needed: the pages never written are never
  // resident, so the RSS before converting is the input and little else.
  const buffer = new Uint8Array(1_000_000 + events * BYTES_PER_EVENT[format]);
  let at = 0;
  const add = (text: string) => {
    if (at + text.length * 3 > buffer.length) throw new Error("the input buffer is too small");
    at += encoder.encodeInto(text, buffer.subarray(at)).written;
  };
  const addBytes = (bytes: Uint8Array) => {
    if (at + bytes.length > buffer.length) throw new Error("the input buffer is too small");
    buffer.set(bytes, at);
    at += bytes.length;
  };
  const protocol = { batch: 4, marshal: 4, packed: 2, json: 1 }[format];
  const hello = native
    ? ',"collector":"native","thread_ids":"serial","clock":"tsc"'
    : format === "marshal"
    ? ',"collector":"python"'
    : "";
  const lines = [
    `{"kind":"hello","protocol":${protocol},"pid":4242,"python":"3.12.1","engine":"monitoring",` +
    `"t0":${program.ts},"main_thread":${idOf.get(idents[0]!)},"argv":["bench.py"]${hello}}`,
    ...idents.map((ident, i) =>
      `{"kind":"thread","thread":${idOf.get(ident)},"native_id":${4242 + i},"name":"${
        i === 0 ? "MainThread" : `Thread-${i} (worker)`
      }"${native ? `,"ident":${ident}` : ""}}`
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
  const count = (event: ProtocolEvent) => {
    if (event[0] >= 5) mix.c++;
    else if (event[3] === 0) mix.plain++;
    else mix.generator++;
  };
  /** A flush record: the collector's handover of `size` events, on the main thread. */
  const flush = (size: number) => {
    const start = program.ts += 100;
    const end = program.ts += 20_000;
    add(
      `{"kind":"flush","thread":${
        idOf.get(idents[0]!)
      },"start":${start},"end":${end},"events":${size}}\n`,
    );
    records++;
  };
  let written = 0;
  const batch: ProtocolEvent[] = [];
  if (native) {
    // As the native collector fills its buffer: a frame when the next event
    // does not fit, then the flush (the event that did not fit came first).
    const writer = new BatchWriter(program.ts, 1, FRAME);
    const take = () => {
      const size = writer.events;
      const { record, frame } = writer.take();
      add(batchLine(record) + "\n");
      addBytes(frame);
      records++;
      flush(size);
    };
    while (written < events) {
      batch.length = 0;
      program.step(batch);
      for (const event of batch) {
        if (written === events) break;
        const [op, ident, ts, frame, ref] = event;
        const native = nativeEvent([op, idOf.get(ident)!, ts, frame, ref]);
        if (!writer.add(native)) {
          take();
          writer.add(native);
        }
        count(event);
        written++;
      }
    }
    take();
  } else {
    while (written < events) {
      batch.length = 0;
      const size = Math.min(BATCH, events - written);
      while (batch.length < size) program.step(batch);
      batch.length = size;
      batch.forEach(count);
      written += size;
      if (format === "marshal") {
        const frame = marshalEvents(batch);
        add(`{"kind":"events","marshal":${frame.length}}\n`);
        addBytes(frame);
      } else if (format === "packed") {
        add(`{"kind":"events","packed":"${marshalEvents(batch).toBase64()}"}\n`);
      } else {
        add(`{"kind":"events","events":${JSON.stringify(batch)}}\n`);
      }
      records++;
      flush(size);
    }
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

/** Discards everything: what is left to measure is decoding and the state machine. */
const DISCARD: TraceSink = {
  process() {},
  thread() {},
  slice() {},
  mark() {},
  finish() {},
};

/** The figures of `count` events converted into `sink`. */
async function measure(count: number, sink: Sink): Promise<Figures> {
  const { bytes, records, mix } = generate(count);
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
  const started = performance.now();
  const cpuBefore = process.cpuUsage();
  const slices = sink === "discard" ? await discard(input) : (await convert(
    input,
    new WritableStream({ write: (chunk) => void (output += chunk.length) }),
    { format: sink },
  ))
    .slices;
  const cpu = process.cpuUsage(cpuBefore);
  const seconds = (performance.now() - started) / 1000;
  sample();
  return {
    events: count,
    records,
    slices,
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

/** What `convert` does, without the writer: reads, decodes, runs the machine into DISCARD. */
async function discard(input: ReadableStream<Uint8Array>): Promise<number> {
  const decoder = new NdjsonDecoder();
  const machine = new FrameStateMachine(DISCARD);
  const onRecord = machine.push.bind(machine);
  const reader = input.getReader();
  for (let next = await reader.read(); !next.done; next = await reader.read()) {
    decoder.push(next.value, onRecord);
  }
  decoder.finish(onRecord);
  return machine.end().slices;
}

if (flags.child !== undefined) {
  console.log(JSON.stringify(await measure(sizes[0]!, flags.child as Sink)));
  Deno.exit(0);
}

const mb = (bytes: number) => (bytes / 1e6).toFixed(1);
const thousands = (n: number) => Math.round(n).toLocaleString("en-US");
const percent = (part: number, whole: number) => `${Math.round((100 * part) / whole)}%`;
const memory = (run: Figures) =>
  `peak RSS ${mb(run.peakRss)} MB (${mb(run.rssBefore)} MB before, the input ` +
  `included: +${mb(run.peakRss - run.rssBefore)} MB converting), ` +
  `peak heap ${mb(run.peakHeap)} MB (+${mb(run.peakHeap - run.heapBefore)} MB)`;

const FORMAT_NAMES: Record<Format, string> = {
  batch: `native batches (protocol 4, frames of up to ${FRAME} bytes)`,
  marshal: `marshal frames (protocol 4, ${BATCH} events each)`,
  packed: `packed events (protocol 2, ${BATCH} events each)`,
  json: `JSON events (protocol 1, ${BATCH} events each)`,
};
console.log(
  `converter benchmark: ${FORMAT_NAMES[format]}, ` +
    `${threads} thread${threads === 1 ? "" : "s"}, reads of ${READ} bytes`,
);

/** Runs one size into one sink in a fresh process. */
async function child(size: number, sink: Sink): Promise<Figures> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--v8-flags=--expose-gc",
      import.meta.filename!,
      String(size),
      "--threads",
      String(threads),
      "--format",
      format,
      "--child",
      sink,
    ],
    stderr: "inherit",
  }).output();
  if (!output.success) Deno.exit(1);
  return JSON.parse(new TextDecoder().decode(output.stdout));
}

const results: Figures[] = [];
const discarded: Figures[] = [];
const byWriter = new Map<Writer, Figures[]>();
for (const [size, writer] of sizes.flatMap((size) => writers.map((w) => [size, w] as const))) {
  const fast = writer === writers[0] ? await child(size, "discard") : discarded.at(-1)!;
  const run = await child(size, writer);
  if (writer === writers[0]) {
    results.push(run);
    discarded.push(fast);
  }
  byWriter.set(writer, [...byWriter.get(writer) ?? [], run]);
  const total = run.mix.plain! + run.mix.c! + run.mix.generator!;
  // The lines from "converted in" to "memory" are read by bench/overhead.ts: keep their words.
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
      `${thousands(run.slices)} slices, ${mb(run.output)} MB of ${WRITER_NAMES[writer]}, ` +
      `${(run.output / run.slices).toFixed(1)} bytes per slice`,
  );
  console.log(
    `  throughput: ${thousands(run.events / run.seconds)} events/s, ` +
      `${mb(run.input / run.seconds)} MB/s in, ${mb(run.output / run.seconds)} MB/s out`,
  );
  console.log(`  memory: ${memory(run)}`);
  console.log(
    `  decoding and state machine alone, into a discarding sink: ${fast.seconds.toFixed(2)} s ` +
      `(CPU ${fast.cpu.toFixed(2)} s), ${thousands(fast.events / fast.seconds)} events/s, ` +
      `${thousands(fast.slices)} slices; its ${memory(fast)}`,
  );
}
if (results.length > 1) {
  console.log(
    `\nmemory while converting, by size: ${
      results.map((run, i) =>
        `${thousands(run.events)} events: RSS +${mb(run.peakRss - run.rssBefore)} MB, ` +
        `heap peak ${mb(run.peakHeap)} MB (discarding: RSS +${
          mb(discarded[i]!.peakRss - discarded[i]!.rssBefore)
        } MB, heap peak ${mb(discarded[i]!.peakHeap)} MB)`
      ).join("; ")
    }`,
  );
}
const [json, protobuf] = [byWriter.get("json"), byWriter.get("perfetto")];
if (json !== undefined && protobuf !== undefined) {
  console.log(
    `\nprotobuf against JSON, by size: ${
      json.map((run, i) => {
        const other = protobuf[i]!;
        return `${thousands(run.events)} events: ` +
          `${((run.output / run.slices) / (other.output / other.slices)).toFixed(2)}× smaller, ` +
          `${(other.seconds / run.seconds).toFixed(2)}× the time`;
      }).join("; ")
    }`,
  );
}
