/**
 * Perfetto protobuf traces, as {@linkcode PerfettoWriter} writes them,
 * back into a {@linkcode TraceSink}: the packets decoded as they arrive
 * ({@linkcode PerfettoDecoder}), each BEGIN paired with its END on its
 * track, in the order the ENDs come (the order the writer was given the
 * slices in), with the metadata as the summary.
 *
 * @module
 */

import {
  PerfettoDecoder,
  type PerfettoEvent,
  type PerfettoPacket,
  type PerfettoTrack,
} from "./perfetto_reader.ts";
import type { JsonValue } from "./protocol.ts";
import { ArrowEnds, TASK_CATEGORY } from "./tasks.ts";
import type {
  AsyncSlice,
  Slice,
  SliceArgs,
  SliceSite,
  ThreadInfo,
  TraceSink,
  TraceSummary,
} from "./trace_model.ts";

/**
 * Sends a protobuf trace, pushed to it in chunks, to a sink:
 * {@linkcode PerfettoSliceReader.push} the bytes in order, then
 * {@linkcode PerfettoSliceReader.finish}.
 *
 * Memory holds one packet, each sequence's interned names, the slices
 * begun and not yet ended (one a track with the writer's layout), and the
 * flows alive. A slice's flow arrives at it when its flow id was seen
 * before (the writer gives an instance one id), and leaves it unless the
 * id is among its `terminating_flow_ids`. Threads keep the writer's dense
 * ids; their idents are not in the trace (null).
 *
 * A track under a process that is neither a thread's nor a counter's is an
 * asyncio task's (its life and steps): its slices go to the sink as async
 * slices, of its process and of no known thread (`tid` 0). The `asyncio`
 * instants with a flow are the ends of the tasks' creation arrows: they go
 * as arrows, not marks.
 *
 * @example
 * ```ts
 * import { convert, PerfettoSliceReader, SummarySink } from "@panopticon/panopticon";
 * import assert from "node:assert/strict";
 *
 * const chunks: Uint8Array[] = [];
 * await convert(
 *   (await Deno.open(new URL("../tests/fixtures/generator.ndjson", import.meta.url))).readable,
 *   new WritableStream({ write: (chunk) => void chunks.push(chunk) }),
 *   { format: "perfetto" },
 * );
 * const sink = new SummarySink();
 * const reader = new PerfettoSliceReader(sink);
 * for (const chunk of chunks) reader.push(chunk);
 * reader.finish();
 * const numbers = sink.report().functions.find((f) => f.name === "numbers")!;
 * assert.deepEqual([numbers.calls, numbers.slices, numbers.livedNs], [1, 2, 500]);
 * ```
 */
export class PerfettoSliceReader {
  readonly #sink: TraceSink;
  readonly #decoder = new PerfettoDecoder();
  readonly #tracks = new Map<number, PerfettoTrack>();
  /** The BEGINs not yet ended, by track. */
  readonly #open = new Map<number, PerfettoEvent[]>();
  readonly #flows = new Set<number>();
  /** The task arrows, joined from their two ends. */
  readonly #arrows = new ArrowEnds();
  readonly #sites = new Map<string, SliceSite>();
  readonly #threads = new Set<number>();
  #metadata: Record<string, string | number | boolean> = {};
  #process = false;
  #pid = 0;
  #slices = 0;
  #unfinished = 0;
  #end = 0;
  readonly #onPacket = this.#packet.bind(this);
  /** The one slice handed to the sink, refilled for each (sinks copy what they keep). */
  readonly #slice: Slice = {
    tid: 0,
    start: 0,
    duration: 0,
    site: { name: "", category: "" },
    flow: 0,
    flowIn: false,
    flowOut: false,
    args: undefined,
  };

  constructor(sink: TraceSink) {
    this.#sink = sink;
  }

  /**
   * Reads the packets `chunk` completes.
   *
   * @throws {PerfettoReadError} for bytes that are not a trace.
   */
  push(chunk: Uint8Array): void {
    this.#decoder.push(chunk, this.#onPacket);
  }

  /**
   * Ends the trace and finishes the sink.
   *
   * @throws {PerfettoReadError} if it ended inside a packet.
   */
  finish(): TraceSummary {
    this.#decoder.finish();
    this.#ensureProcess(undefined);
    const m = this.#metadata;
    const number = (key: string) => typeof m[key] === "number" ? m[key] as number : undefined;
    const string = (key: string) => typeof m[key] === "string" ? m[key] as string : undefined;
    const summary: TraceSummary = {
      complete: m["complete"] === true,
      events: number("events") ?? this.#slices,
      recorded: number("recorded"),
      dropped: number("dropped") ?? 0,
      reason: string("reason"),
      slices: this.#slices,
      omittedSlices: number("omitted_slices") ?? 0,
      unfinished: this.#unfinished,
      threads: this.#threads.size,
      duration: this.#end / 1000,
      pid: number("pid") ?? this.#pid,
      pythonVersion: string("python") ?? "",
      engine: string("engine") ?? "",
      protocol: number("protocol") ?? 0,
      pythonMaxRss: number("python_max_rss"),
    };
    const collector = string("collector");
    if (collector !== undefined) summary.collector = collector;
    const clock = string("clock");
    if (clock !== undefined) summary.clock = clock;
    const limitedTs = number("limited_ts");
    const limitedEvents = number("limited_events");
    if (limitedTs !== undefined && limitedEvents !== undefined) {
      summary.limited = { ts: limitedTs, events: limitedEvents };
    }
    this.#sink.finish(summary);
    return summary;
  }

  #packet(packet: PerfettoPacket): void {
    switch (packet.kind) {
      case "track":
        this.#track(packet.track);
        break;
      case "event":
        this.#event(packet.event);
        break;
      case "metadata":
        this.#metadata = { ...this.#metadata, ...packet.metadata };
        break;
    }
  }

  #track(track: PerfettoTrack): void {
    const known = { ...this.#tracks.get(track.uuid), ...track };
    this.#tracks.set(track.uuid, known);
    if (known.process !== undefined) {
      this.#ensureProcess(known.process);
    } else if (known.thread !== undefined) {
      this.#ensureProcess(undefined);
      const info: ThreadInfo = {
        tid: known.thread.tid,
        name: known.thread.name ?? `Thread ${known.thread.tid}`,
        ident: null,
        nativeId: null,
      };
      this.#threads.add(info.tid);
      this.#sink.thread(info);
    }
  }

  #ensureProcess(process: PerfettoTrack["process"]): void {
    if (this.#process) return;
    this.#process = true;
    this.#pid = process?.pid ?? 0;
    this.#sink.process({
      pid: this.#pid,
      name: process?.name ?? "",
      argv: process?.cmdline ?? [],
      pythonVersion: "",
      engine: "",
      protocol: 0,
    });
  }

  /** The dense id of the thread whose track `uuid` is, announced if need be. */
  #tid(uuid: number): number {
    const thread = this.#tracks.get(uuid)?.thread;
    const tid = thread?.tid ?? uuid;
    if (!this.#threads.has(tid)) {
      this.#ensureProcess(undefined);
      this.#threads.add(tid);
      this.#sink.thread({ tid, name: `Thread ${tid}`, ident: null, nativeId: null });
    }
    return tid;
  }

  #event(event: PerfettoEvent): void {
    switch (event.type) {
      case "begin": {
        let open = this.#open.get(event.track);
        if (open === undefined) this.#open.set(event.track, open = []);
        open.push(event);
        break;
      }
      case "end": {
        const begin = this.#open.get(event.track)?.pop();
        if (begin !== undefined) this.#ended(begin, event.ts);
        break;
      }
      case "instant":
        if (event.categories.length === 1 && event.categories[0] === TASK_CATEGORY) {
          if (this.#arrowEnd(event)) break;
        }
        if (event.ts > this.#end) this.#end = event.ts;
        this.#sink.mark?.({
          kind: "instant",
          tid: this.#tid(event.track),
          ts: event.ts / 1000,
          name: event.name ?? "",
          category: event.categories.join(","),
          args: event.args,
        });
        break;
      case "counter":
        if (event.ts > this.#end) this.#end = event.ts;
        this.#sink.mark?.({
          kind: "counter",
          tid: 0,
          ts: event.ts / 1000,
          name: this.#tracks.get(event.track)?.name ?? `track ${event.track}`,
          category: "",
          args: { value: event.value ?? 0 },
        });
        break;
    }
  }

  /** An end of a creation arrow, if `event` is one: where it leaves is kept until it arrives. */
  #arrowEnd(event: PerfettoEvent): boolean {
    const out = event.flowIds[0];
    const last = event.terminatingFlowIds[0];
    if ((out === undefined) === (last === undefined)) return false;
    const tid = this.#tid(event.track);
    const ts = event.ts / 1000;
    if (out !== undefined) this.#arrows.leaves(out, tid, ts, event.name ?? "");
    else this.#arrows.arrives(last!, tid, ts, this.#sink);
    return true;
  }

  /** Whether `track` is an async track: named, under a process, not a thread's or a counter's. */
  #isAsync(track: PerfettoTrack | undefined): track is PerfettoTrack {
    return track !== undefined && track.process === undefined && track.thread === undefined &&
      !track.counter && track.name !== undefined && track.parent !== undefined;
  }

  #ended(begin: PerfettoEvent, end: number): void {
    const track = this.#tracks.get(begin.track);
    if (this.#isAsync(track)) {
      const parent = this.#tracks.get(track.parent!);
      const slice: AsyncSlice = {
        id: track.uuid,
        track: track.name!,
        name: begin.name ?? "",
        category: begin.categories.join(","),
        tid: 0,
        pid: parent?.process?.pid ?? this.#pid,
        start: begin.ts / 1000,
        duration: Math.max(0, end - begin.ts) / 1000,
        args: Object.keys(begin.args).length === 0 ? undefined : begin.args as SliceArgs,
      };
      this.#sink.asyncSlice?.(slice);
      return;
    }
    const name = begin.name ?? "";
    const category = begin.categories.join(",");
    const key = `${name}\0${category}\0${begin.file ?? ""}\0${begin.line ?? ""}`;
    let site = this.#sites.get(key);
    if (site === undefined) {
      site = { name, category };
      if (begin.file !== undefined) (site as { file?: string }).file = begin.file;
      if (begin.line !== undefined) (site as { line?: number }).line = begin.line;
      this.#sites.set(key, site);
    }
    let flow = 0;
    let flowIn = false;
    let flowOut = false;
    const out = begin.flowIds[0];
    const last = begin.terminatingFlowIds[0];
    if (out !== undefined) {
      flow = out;
      flowOut = true;
      flowIn = this.#flows.has(out);
      this.#flows.add(out);
    } else if (last !== undefined) {
      flow = last;
      flowIn = this.#flows.delete(last);
      // A chain of one slice is no flow at all.
      if (!flowIn) flow = 0;
    }
    const args = Object.keys(begin.args).length === 0
      ? undefined
      : begin.args as Readonly<Record<string, JsonValue>> as SliceArgs;
    if (args !== undefined && args["unfinished"] === true) this.#unfinished++;
    if (end > this.#end) this.#end = end;
    this.#slices++;
    const slice = this.#slice;
    slice.tid = this.#tid(begin.track);
    slice.start = begin.ts / 1000;
    slice.duration = Math.max(0, end - begin.ts) / 1000;
    slice.site = site;
    slice.flow = flow;
    slice.flowIn = flowIn;
    slice.flowOut = flowOut;
    slice.args = args;
    this.#sink.slice(slice);
  }
}
