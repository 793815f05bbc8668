/**
 * Converter throughput: converts a synthetic NDJSON stream, held in memory,
 * into a sink that discards the trace, and prints events per second, MB/s
 * in and out, and peak memory.
 *
 *     deno run -A bench/converter.ts [events]
 *
 * The number of events comes from the argument, else from
 * `PANOPTICON_BENCH_EVENTS`, else 5,000,000. The stream mixes what real
 * programs send: nested calls sent with frame id 0, C calls, generators
 * suspended and resumed (one on another thread), coroutines, reused frame
 * ids, two threads and a flush record per batch, in batches of 8192 events
 * as the collector sends them.
 *
 * @module
 */

import process from "node:process";
import { convert } from "../mod.ts";

const BATCH = 8192;
const THREADS = [140001, 140002];

const count = Number(Deno.args[0] ?? Deno.env.get("PANOPTICON_BENCH_EVENTS") ?? 5_000_000);
if (!Number.isSafeInteger(count) || count < 1) {
  console.error(`error: expected a positive number of events, got ${Deno.args[0]}`);
  Deno.exit(2);
}

/** One round of 18 events on `thread`: calls, C calls, a generator, a coroutine. */
function round(out: string[], thread: number, other: number, ts: number, n: number): number {
  const gen = 140_000_000_000 + (n % 64) * 512;
  const coro = 141_000_000_000 + (n % 64) * 512;
  const step = () => (ts += 37);
  out.push(
    `[0,${thread},${step()},0,1]`, // call f
    `[5,${thread},${step()},0,1]`, // c_call len
    `[6,${thread},${step()},0,1]`,
    `[0,${thread},${step()},0,2]`, // call g
    `[0,${thread},${step()},${gen},3]`, // call a generator
    `[4,${thread},${step()},${gen},3]`, // it yields
    `[2,${thread},${step()},0,2]`, // g returns
    `[1,${other},${step()},${gen},3]`, // resumed on the other thread
    `[4,${other},${step()},${gen},3]`,
    `[5,${thread},${step()},0,2]`, // c_call print
    `[6,${thread},${step()},0,2]`,
    `[1,${thread},${step()},${gen},3]`, // resumed back here
    `[2,${thread},${step()},${gen},3]`, // and ends
    `[0,${thread},${step()},${coro},4]`, // a coroutine
    `[4,${thread},${step()},${coro},4]`,
    `[1,${thread},${step()},${coro},4]`,
    `[2,${thread},${step()},${coro},4]`,
    `[2,${thread},${step()},0,1]`, // f returns
  );
  return ts;
}

function generate(events: number): { chunks: Uint8Array[]; bytes: number; records: number } {
  const encoder = new TextEncoder();
  const chunks: Uint8Array[] = [];
  const add = (text: string) => chunks.push(encoder.encode(text));
  add(
    [
      `{"kind":"hello","protocol":1,"pid":4242,"python":"3.12.1","engine":"monitoring","t0":1000,"main_thread":${
        THREADS[0]
      },"argv":["bench.py"]}`,
      `{"kind":"thread","thread":${THREADS[0]},"native_id":4242,"name":"MainThread"}`,
      `{"kind":"thread","thread":${THREADS[1]},"native_id":4243,"name":"Thread-1 (worker)"}`,
      `{"kind":"code","id":1,"module":"__main__","qualname":"f","file":"bench.py","line":1,"type":"function"}`,
      `{"kind":"code","id":2,"module":"bench.util","qualname":"Helper.g","file":"/src/bench/util.py","line":10,"type":"function"}`,
      `{"kind":"code","id":3,"module":"__main__","qualname":"numbers","file":"bench.py","line":20,"type":"generator"}`,
      `{"kind":"code","id":4,"module":"__main__","qualname":"main","file":"bench.py","line":30,"type":"coroutine"}`,
      `{"kind":"cfunc","id":1,"name":"len"}`,
      `{"kind":"cfunc","id":2,"name":"print"}`,
    ].join("\n") + "\n",
  );
  let records = 9;
  let ts = 1000;
  let written = 0;
  let n = 0;
  while (written < events) {
    const batch: string[] = [];
    const size = Math.min(BATCH, events - written);
    while (batch.length < size) {
      const thread = n % 2;
      ts = round(batch, THREADS[thread]!, THREADS[1 - thread]!, ts, n++);
    }
    batch.length = size;
    written += size;
    const flush = ts + 10;
    ts += 5000;
    add(
      `{"kind":"events","events":[${batch.join(",")}]}\n` +
        `{"kind":"flush","thread":${THREADS[0]},"start":${flush},"end":${ts},"events":${size}}\n`,
    );
    records += 2;
  }
  add(`{"kind":"end","ts":${ts + 1},"events":${written},"dropped":0,"reason":"exit"}\n`);
  records++;
  return { chunks, bytes: chunks.reduce((sum, chunk) => sum + chunk.length, 0), records };
}

const mb = (bytes: number) => (bytes / 1e6).toFixed(1);

const generated = performance.now();
const { chunks, bytes, records } = generate(count);
const rssBefore = Deno.memoryUsage().rss;
console.log(
  `input: ${count.toLocaleString("en-US")} events in ${records.toLocaleString("en-US")} records, ` +
    `${mb(bytes)} MB of NDJSON (generated in ${
      ((performance.now() - generated) / 1000).toFixed(1)
    } s)`,
);

let output = 0;
let peakRss = rssBefore;
let peakHeap = 0;
const sample = () => {
  const { rss, heapUsed } = Deno.memoryUsage();
  if (rss > peakRss) peakRss = rss;
  if (heapUsed > peakHeap) peakHeap = heapUsed;
};
let index = 0;
const input = new ReadableStream<Uint8Array>({
  pull(controller) {
    const chunk = chunks[index++];
    if (chunk === undefined) return controller.close();
    if (index % 16 === 0) sample();
    controller.enqueue(chunk);
  },
}, { highWaterMark: 0 });
const sink = new WritableStream<Uint8Array>({
  write(chunk) {
    output += chunk.length;
  },
});

const started = performance.now();
const cpuBefore = process.cpuUsage();
const summary = await convert(input, sink);
const cpu = process.cpuUsage(cpuBefore);
const seconds = (performance.now() - started) / 1000;
sample();

console.log(
  `converted: ${summary.slices.toLocaleString("en-US")} slices, ${mb(output)} MB of JSON ` +
    `in ${seconds.toFixed(2)} s (CPU time ${((cpu.user + cpu.system) / 1e6).toFixed(2)} s, ` +
    `all threads)`,
);
console.log(
  `throughput: ${(count / seconds / 1e6).toFixed(2)} M events/s, ` +
    `${(records / seconds).toFixed(0)} records/s, ` +
    `${mb(bytes / seconds)} MB/s in, ${mb(output / seconds)} MB/s out`,
);
console.log(
  `memory: peak RSS ${mb(peakRss)} MB (${mb(rssBefore)} MB before converting, ` +
    `input included), peak heap ${mb(peakHeap)} MB`,
);
