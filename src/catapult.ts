/**
 * A streaming writer of Catapult traces (the Trace Event Format, JSON
 * object form) that Perfetto, chrome://tracing and speedscope open.
 *
 * @module
 */

import manifest from "../deno.json" with { type: "json" };
import type {
  ProcessInfo,
  Slice,
  SliceSite,
  ThreadInfo,
  TraceSink,
  TraceSummary,
} from "./trace_model.ts";

/** Options of {@linkcode CatapultWriter}. */
export interface CatapultWriterOptions {
  /**
   * How many characters to gather before writing them as one chunk. Larger
   * chunks mean fewer writes; the writer never holds much more than this.
   *
   * @default {65536}
   */
  chunkSize?: number;
  /**
   * The Panopticon version recorded in the trace's `otherData`.
   *
   * @default {the version of this package}
   */
  version?: string;
}

/** The rendered parts of a site's events, computed once per site. */
interface RenderedSite {
  /** `,"name":…,"cat":…,"args":{…}`: the whole tail for a slice without extra args. */
  plain: string;
  /** `,"name":…,"cat":…` */
  head: string;
  /** The site's args without braces, e.g. `"file":"a.py","line":1`, or "". */
  args: string;
}

const noop = () => {};

/**
 * Formats microseconds with at most three decimals (nanoseconds), shortest
 * form. Formatting the whole and the fraction as integers is about three
 * times faster than `String()` of the float, and this runs twice a slice.
 */
function micros(us: number): string {
  let ns = Math.round(us * 1000);
  if (ns === 0) return "0";
  let sign = "";
  if (ns < 0) {
    sign = "-";
    ns = -ns;
  }
  const whole = Math.floor(ns / 1000);
  const fraction = ns - whole * 1000;
  if (fraction === 0) return sign + whole;
  if (fraction % 10 !== 0) {
    return sign + whole + (fraction < 10 ? ".00" : fraction < 100 ? ".0" : ".") + fraction;
  }
  if (fraction % 100 !== 0) {
    const tenths = fraction / 10;
    return sign + whole + (tenths < 10 ? ".0" : ".") + tenths;
  }
  return sign + whole + "." + fraction / 100;
}

/**
 * Writes a Catapult trace to a stream of text, as a {@linkcode TraceSink}.
 *
 * The output is `{"traceEvents":[` then one event per line, then
 * `],"displayTimeUnit":"ns","otherData":{…}}`. Metadata events (`ph:"M"`)
 * name the process and each thread, as soon as they are known; slices are
 * complete events (`ph:"X"`) in microseconds; the slices of one generator,
 * coroutine or async generator are joined with v2 flows (`bind_id` with
 * `flow_in`/`flow_out` on the slices themselves). Chunks of about
 * `chunkSize` characters are written as they fill, without waiting: await
 * {@linkcode CatapultWriter.ready} between batches to respect
 * backpressure, and {@linkcode CatapultWriter.close} at the end.
 *
 * @example Writing a trace by hand
 * ```ts
 * import { CatapultWriter } from "@panopticon/panopticon";
 * import assert from "node:assert/strict";
 *
 * const chunks: string[] = [];
 * const writer = new CatapultWriter(new WritableStream({ write: (chunk) => void chunks.push(chunk) }));
 * writer.process({ pid: 7, name: "python a.py", argv: ["a.py"], pythonVersion: "3.12.1", engine: "monitoring", protocol: 1 });
 * writer.thread({ tid: 1, name: "MainThread", ident: 140001, nativeId: 7 });
 * const site = { name: "main", category: "function", file: "a.py", line: 1 };
 * writer.slice({ tid: 1, start: 0, duration: 2.5, site, flow: 0, flowIn: false, flowOut: false, args: undefined });
 * writer.finish({
 *   complete: true, events: 2, recorded: 2, dropped: 0, reason: "exit", slices: 1, unfinished: 0, threads: 1,
 *   duration: 3, pid: 7, pythonVersion: "3.12.1", engine: "monitoring", protocol: 1,
 * });
 * await writer.close();
 * const trace = JSON.parse(chunks.join(""));
 * assert.deepEqual(trace.traceEvents.at(-1), {
 *   ph: "X", pid: 7, tid: 1, ts: 0, dur: 2.5, name: "main", cat: "function", args: { file: "a.py", line: 1 },
 * });
 * ```
 */
export class CatapultWriter implements TraceSink {
  readonly #writer: WritableStreamDefaultWriter<string>;
  readonly #chunkSize: number;
  readonly #version: string;
  #buffer = '{"traceEvents":[\n';
  #separator = "";
  #pid = 0;
  /** `{"ph":"X","pid":<pid>,"tid":`, the start of every slice. */
  #sliceStart = '{"ph":"X","pid":0,"tid":';
  #sites = new Map<SliceSite, RenderedSite>();
  #sortedTids = 0;

  /** Makes a writer that locks `output` and writes the trace to it. */
  constructor(output: WritableStream<string>, options: CatapultWriterOptions = {}) {
    this.#writer = output.getWriter();
    this.#chunkSize = options.chunkSize ?? 65536;
    this.#version = options.version ?? manifest.version;
  }

  /** Writes the `process_name` metadata event. */
  process(process: ProcessInfo): void {
    this.#pid = process.pid;
    this.#sliceStart = `{"ph":"X","pid":${process.pid},"tid":`;
    // No `tid`: a metadata event of the process as a whole.
    this.#event(
      `{"ph":"M","pid":${process.pid},"name":"process_name","args":{"name":${
        JSON.stringify(process.name)
      }}}`,
    );
  }

  /** Writes `thread_name` (with `ident` and `native_id`), and `thread_sort_index` once per thread. */
  thread(thread: ThreadInfo): void {
    const head = `{"ph":"M","pid":${this.#pid},"tid":${thread.tid},"name":`;
    this.#event(
      `${head}"thread_name","args":{"name":${
        JSON.stringify(thread.name)
      },"ident":${thread.ident},"native_id":${thread.nativeId}}}`,
    );
    if (thread.tid > this.#sortedTids) {
      // Dense ids grow by one per new thread; a rename repeats a smaller one.
      this.#sortedTids = thread.tid;
      this.#event(`${head}"thread_sort_index","args":{"sort_index":${thread.tid}}}`);
    }
  }

  /** Writes one complete event (`ph:"X"`), with its flow if it has one. */
  slice(slice: Slice): void {
    const site = this.#sites.get(slice.site) ?? this.#render(slice.site);
    let text = this.#sliceStart + slice.tid + ',"ts":' + micros(slice.start) + ',"dur":' +
      micros(slice.duration);
    const args = slice.args;
    if (args === undefined) {
      text += site.plain;
    } else {
      const extra = JSON.stringify(args).slice(1, -1);
      text += site.head + ',"args":{' + site.args + (site.args === "" ? "" : ",") + extra + "}";
    }
    if (slice.flow !== 0) {
      // Chromium writes v2 flow ids as hex strings; Perfetto reads them so.
      text += ',"bind_id":"0x' + slice.flow.toString(16) + '"';
      if (slice.flowIn) text += ',"flow_in":true';
      if (slice.flowOut) text += ',"flow_out":true';
    }
    this.#event(text + "}");
  }

  /** Writes the end of the trace, with the summary in `otherData`. */
  finish(summary: TraceSummary): void {
    const otherData = {
      panopticon: this.#version,
      python: summary.pythonVersion,
      engine: summary.engine,
      protocol: summary.protocol,
      pid: summary.pid,
      complete: summary.complete,
      reason: summary.reason,
      events: summary.events,
      recorded: summary.recorded,
      dropped: summary.dropped,
      slices: summary.slices,
      unfinished: summary.unfinished,
    };
    this.#buffer += `\n],"displayTimeUnit":"ns","otherData":${JSON.stringify(otherData)}}\n`;
    this.#flush();
  }

  /**
   * Resolves when the output wants more (its queue is below its high-water
   * mark); rejects if the output failed.
   */
  ready(): Promise<void> {
    return this.#writer.ready;
  }

  /** Writes what is gathered and closes the output; rejects with the output's failure. */
  async close(): Promise<void> {
    this.#flush();
    try {
      await this.#writer.close();
    } catch (error) {
      // Closing an errored stream rejects with a generic TypeError; the
      // stream's own error, which `closed` carries, says what went wrong.
      await this.#writer.closed;
      throw error;
    }
  }

  /** Aborts the output, e.g. because the input was malformed. */
  async abort(reason?: unknown): Promise<void> {
    this.#buffer = "";
    await this.#writer.abort(reason);
  }

  #event(text: string): void {
    this.#buffer += this.#separator + text;
    this.#separator = ",\n";
    if (this.#buffer.length >= this.#chunkSize) this.#flush();
  }

  #flush(): void {
    if (this.#buffer === "") return;
    // Not awaited: a failure also rejects `ready()` and `close()`, where it
    // is reported; this catch only keeps it from being unhandled here.
    this.#writer.write(this.#buffer).catch(noop);
    this.#buffer = "";
  }

  #render(site: SliceSite): RenderedSite {
    const head = `,"name":${JSON.stringify(site.name)},"cat":${JSON.stringify(site.category)}`;
    let args = "";
    if (site.file !== undefined) args += `"file":${JSON.stringify(site.file)}`;
    if (site.line !== undefined) args += `${args === "" ? "" : ","}"line":${site.line}`;
    const rendered = { head, args, plain: args === "" ? head : `${head},"args":{${args}}` };
    this.#sites.set(site, rendered);
    return rendered;
  }
}
