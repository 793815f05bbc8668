/**
 * A reader of Perfetto traces as {@linkcode PerfettoWriter} writes them:
 * the protobuf packets decoded as a stream ({@linkcode PerfettoDecoder},
 * {@linkcode decodePerfetto}), and, for traces that fit in memory, the
 * slices, flows, counters and metadata they make ({@linkcode readPerfetto}),
 * built the way Perfetto's trace processor builds them.
 *
 * It reads the subset of the format the writer uses: track descriptors,
 * track events with interned names, categories, source locations and debug
 * annotation names, packet defaults, clock snapshots with incremental
 * clocks, and metadata in a `ChromeEventBundle`.
 *
 * @module
 */

import { ProtoDecodeError, ProtoReader } from "./_protobuf.ts";
import type { JsonValue } from "./protocol.ts";

/** A track: the process's, a thread's, or a counter's. */
export interface PerfettoTrack {
  uuid: number;
  /** The enclosing track: a thread's and a counter's is the process's. */
  parent?: number;
  /** The track's own name (counters). */
  name?: string;
  process?: { pid: number; name?: string; cmdline: string[] };
  thread?: { pid: number; tid: number; name?: string };
  /** Whether this is a counter track. */
  counter: boolean;
}

/** One `TrackEvent`, resolved: interned ids looked up, defaults applied, time made absolute. */
export interface PerfettoEvent {
  /** `TYPE_SLICE_BEGIN`, `TYPE_SLICE_END`, `TYPE_INSTANT` or `TYPE_COUNTER`. */
  type: "begin" | "end" | "instant" | "counter";
  /** In ns, on the trace's clock. */
  ts: number;
  /** Whether the packet gave its time absolutely rather than as a delta. */
  absolute: boolean;
  /** `trusted_packet_sequence_id`. */
  sequence: number;
  /** The track's uuid, given or by the sequence's default. */
  track: number;
  name?: string;
  categories: string[];
  /** From the interned source location. */
  file?: string;
  line?: number;
  flowIds: number[];
  terminatingFlowIds: number[];
  /** Debug annotations, by name. */
  args: Record<string, JsonValue>;
  /** A counter's value. */
  value?: number;
  /** `thread_time_absolute_us` (`--cpu-time`): the thread's CPU time, in µs. */
  threadTime?: number;
}

/** What a packet of the trace holds, as {@linkcode PerfettoDecoder} reports it. */
export type PerfettoPacket =
  | { kind: "track"; track: PerfettoTrack }
  | { kind: "event"; event: PerfettoEvent }
  | { kind: "metadata"; metadata: Record<string, string | number | boolean> }
  /** A packet that only sets up a sequence: defaults, clocks, cleared state. */
  | { kind: "sequence"; sequence: number };

/** Options of {@linkcode PerfettoDecoder}. */
export interface PerfettoDecoderOptions {
  /**
   * Reject any field the reader does not know, rather than skip it: the
   * check that a trace holds nothing but what the writer means to write.
   *
   * @default {false}
   */
  strict?: boolean;
}

/** The trace is not one this reader can read: malformed, cut short, or (strict) unknown fields. */
export class PerfettoReadError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PerfettoReadError";
  }
}

const TYPES = ["unspecified", "begin", "end", "instant", "counter"] as const;
/** Clock ids 64 to 127 are scoped to their sequence. */
const isSequenceClock = (id: number) => id >= 64 && id < 128;
/** `BUILTIN_CLOCK_BOOTTIME`, the default trace clock. */
const TRACE_CLOCK = 6;

interface Clock {
  incremental: boolean;
  /** The clock's last value (incremental clocks). */
  last: number;
  /** Trace time minus clock time, from the snapshot. */
  offset: number;
}

/** What a sequence has set up: defaults, interned tables, clocks. */
class SequenceState {
  clockId = 0;
  track = 0;
  readonly names = new Map<number, string>();
  readonly categories = new Map<number, string>();
  readonly annotationNames = new Map<number, string>();
  readonly locations = new Map<number, { file?: string; line?: number }>();
  readonly clocks = new Map<number, Clock>();
}

/**
 * Decodes a Perfetto trace as it arrives, packet by packet: push its bytes
 * in order with {@linkcode PerfettoDecoder.push}, then call
 * {@linkcode PerfettoDecoder.finish}. Memory holds one packet and each
 * sequence's interned tables.
 */
export class PerfettoDecoder {
  readonly #strict: boolean;
  readonly #sequences = new Map<number, SequenceState>();
  #carry = new Uint8Array(0);
  /** Bytes of the stream before `#carry`. */
  #offset = 0;

  constructor(options: PerfettoDecoderOptions = {}) {
    this.#strict = options.strict ?? false;
  }

  /**
   * Decodes the packets that `chunk` completes.
   *
   * @throws {PerfettoReadError} for bytes that are not a trace.
   */
  push(chunk: Uint8Array, onPacket: (packet: PerfettoPacket) => void): void {
    let data = chunk;
    if (this.#carry.length > 0) {
      data = new Uint8Array(this.#carry.length + chunk.length);
      data.set(this.#carry);
      data.set(chunk, this.#carry.length);
    }
    let at = 0;
    try {
      while (at < data.length) {
        // A packet is `Trace.packet` (field 1): a tag, a length, the bytes.
        const header = readHeader(data, at);
        if (header === undefined) break;
        const [tag, length, bodyAt] = header;
        if (tag !== 0x0a) {
          throw new PerfettoReadError(
            `byte ${this.#offset + at}: expected a TracePacket (field 1 of Trace), got tag ${tag}`,
          );
        }
        if (bodyAt + length > data.length) break;
        this.#packet(new ProtoReader(data, bodyAt, bodyAt + length, this.#offset), onPacket);
        at = bodyAt + length;
      }
    } catch (error) {
      throw error instanceof ProtoDecodeError ? new PerfettoReadError(error.message) : error;
    }
    this.#carry = data.slice(at);
    this.#offset += at;
  }

  /**
   * Ends the stream.
   *
   * @throws {PerfettoReadError} if it ended inside a packet.
   */
  finish(): void {
    if (this.#carry.length > 0) {
      throw new PerfettoReadError(
        `the trace ends inside a packet: ${this.#carry.length} bytes from byte ${this.#offset} ` +
          "are left over (was it cut short?)",
      );
    }
  }

  #packet(reader: ProtoReader, onPacket: (packet: PerfettoPacket) => void): void {
    let timestamp: number | undefined;
    let clockId = 0;
    let sequenceId = 0;
    let cleared = false;
    let event: ProtoReader | undefined;
    let track: ProtoReader | undefined;
    let bundle: ProtoReader | undefined;
    let snapshot: ProtoReader | undefined;
    let defaults: ProtoReader | undefined;
    let interned: ProtoReader | undefined;
    while (reader.next()) {
      switch (reader.field) {
        case 8:
          timestamp = reader.int();
          break;
        case 58:
          clockId = reader.uint();
          break;
        case 10:
          sequenceId = reader.uint();
          break;
        case 13:
          cleared = (reader.uint() & 1) !== 0;
          break;
        case 87:
          reader.bool();
          break;
        case 11:
          event = reader.message();
          break;
        case 60:
          track = reader.message();
          break;
        case 5:
          bundle = reader.message();
          break;
        case 6:
          snapshot = reader.message();
          break;
        case 59:
          defaults = reader.message();
          break;
        case 12:
          interned = reader.message();
          break;
        default:
          this.#unknown("TracePacket", reader);
      }
    }
    // In the trace processor's order: cleared state, defaults, interned
    // data, clocks, then what the packet is.
    let state = this.#sequences.get(sequenceId);
    if (cleared || state === undefined) {
      state = new SequenceState();
      this.#sequences.set(sequenceId, state);
    }
    if (defaults !== undefined) this.#defaults(defaults, state);
    if (interned !== undefined) this.#interned(interned, state);
    if (snapshot !== undefined) this.#snapshot(snapshot, state);
    if (track !== undefined) onPacket({ kind: "track", track: this.#track(track) });
    if (bundle !== undefined) onPacket({ kind: "metadata", metadata: this.#metadata(bundle) });
    if (event !== undefined) {
      if (timestamp === undefined) {
        throw new PerfettoReadError(`byte ${reader.offset}: a track event without a timestamp`);
      }
      const clock = clockId || state.clockId || TRACE_CLOCK;
      let ts = timestamp;
      if (isSequenceClock(clock)) {
        const known = state.clocks.get(clock);
        if (known === undefined) {
          throw new PerfettoReadError(
            `byte ${reader.offset}: a timestamp on clock ${clock}, which sequence ${sequenceId} ` +
              "has no snapshot of",
          );
        }
        if (known.incremental) {
          known.last += timestamp;
          ts = known.last;
        }
        ts += known.offset;
      }
      onPacket({
        kind: "event",
        event: this.#event(event, state, ts, clock === TRACE_CLOCK, sequenceId),
      });
    } else if (track === undefined && bundle === undefined) {
      onPacket({ kind: "sequence", sequence: sequenceId });
    }
  }

  #defaults(reader: ProtoReader, state: SequenceState): void {
    while (reader.next()) {
      if (reader.field === 58) {
        state.clockId = reader.uint();
      } else if (reader.field === 11) {
        const inner = reader.message();
        while (inner.next()) {
          if (inner.field === 11) state.track = inner.uint();
          else this.#unknown("TrackEventDefaults", inner);
        }
      } else {
        this.#unknown("TracePacketDefaults", reader);
      }
    }
  }

  #interned(reader: ProtoReader, state: SequenceState): void {
    while (reader.next()) {
      const field = reader.field;
      if (field < 1 || field > 4) {
        this.#unknown("InternedData", reader);
        continue;
      }
      const entry = reader.message();
      let iid = 0;
      let name: string | undefined;
      let line: number | undefined;
      while (entry.next()) {
        if (entry.field === 1) iid = entry.uint();
        else if (entry.field === 2) name = entry.string();
        else if (field === 4 && entry.field === 4) line = entry.uint();
        else this.#unknown(field === 4 ? "SourceLocation" : "InternedEntry", entry);
      }
      if (field === 4) state.locations.set(iid, { file: name, line });
      else {
        const table = field === 1
          ? state.categories
          : field === 2
          ? state.names
          : state.annotationNames;
        table.set(iid, name ?? "");
      }
    }
  }

  #snapshot(reader: ProtoReader, state: SequenceState): void {
    const clocks: { id: number; ts: number; incremental: boolean }[] = [];
    while (reader.next()) {
      if (reader.field !== 1) {
        this.#unknown("ClockSnapshot", reader);
        continue;
      }
      const clock = reader.message();
      const value = { id: 0, ts: 0, incremental: false };
      while (clock.next()) {
        if (clock.field === 1) value.id = clock.uint();
        else if (clock.field === 2) value.ts = clock.uint();
        else if (clock.field === 3) value.incremental = clock.bool();
        else this.#unknown("Clock", clock);
      }
      clocks.push(value);
    }
    // Sequence clocks are tied to the trace clock by the same snapshot.
    const trace = clocks.find((clock) => clock.id === TRACE_CLOCK);
    for (const clock of clocks) {
      if (!isSequenceClock(clock.id)) continue;
      if (trace === undefined) {
        throw new PerfettoReadError(
          `byte ${reader.offset}: a clock snapshot of clock ${clock.id} without the trace clock`,
        );
      }
      state.clocks.set(clock.id, {
        incremental: clock.incremental,
        last: clock.ts,
        offset: trace.ts - clock.ts,
      });
    }
  }

  #track(reader: ProtoReader): PerfettoTrack {
    const track: PerfettoTrack = { uuid: 0, counter: false };
    while (reader.next()) {
      switch (reader.field) {
        case 1:
          track.uuid = reader.uint();
          break;
        case 2:
          track.name = reader.string();
          break;
        case 5:
          track.parent = reader.uint();
          break;
        case 3: {
          const inner = reader.message();
          const process: NonNullable<PerfettoTrack["process"]> = { pid: 0, cmdline: [] };
          while (inner.next()) {
            if (inner.field === 1) process.pid = inner.int();
            else if (inner.field === 2) process.cmdline.push(inner.string());
            else if (inner.field === 6) process.name = inner.string();
            else this.#unknown("ProcessDescriptor", inner);
          }
          track.process = process;
          break;
        }
        case 4: {
          const inner = reader.message();
          const thread: NonNullable<PerfettoTrack["thread"]> = { pid: 0, tid: 0 };
          while (inner.next()) {
            if (inner.field === 1) thread.pid = inner.int();
            else if (inner.field === 2) thread.tid = inner.int();
            else if (inner.field === 5) thread.name = inner.string();
            else this.#unknown("ThreadDescriptor", inner);
          }
          track.thread = thread;
          break;
        }
        case 8: {
          const inner = reader.message();
          while (inner.next()) this.#unknown("CounterDescriptor", inner);
          track.counter = true;
          break;
        }
        default:
          this.#unknown("TrackDescriptor", reader);
      }
    }
    return track;
  }

  #event(
    reader: ProtoReader,
    state: SequenceState,
    ts: number,
    absolute: boolean,
    sequence: number,
  ): PerfettoEvent {
    const event: PerfettoEvent = {
      type: "begin",
      ts,
      absolute,
      sequence,
      track: state.track,
      categories: [],
      flowIds: [],
      terminatingFlowIds: [],
      args: {},
    };
    let type = 0;
    const lookup = <T>(table: Map<number, T>, iid: number, what: string): T => {
      const value = table.get(iid);
      if (value === undefined) {
        throw new PerfettoReadError(
          `byte ${reader.offset}: ${what} ${iid} is not interned on sequence ${sequence}`,
        );
      }
      return value;
    };
    while (reader.next()) {
      switch (reader.field) {
        case 9:
          type = reader.uint();
          break;
        case 10:
          event.name = lookup(state.names, reader.uint(), "event name");
          break;
        case 23:
          event.name = reader.string();
          break;
        case 22:
          event.categories.push(reader.string());
          break;
        case 3:
          for (const iid of reader.repeated(false)) {
            event.categories.push(lookup(state.categories, iid, "category"));
          }
          break;
        case 11:
          event.track = reader.uint();
          break;
        case 34: {
          const location = lookup(state.locations, reader.uint(), "source location");
          if (location.file !== undefined) event.file = location.file;
          if (location.line !== undefined) event.line = location.line;
          break;
        }
        case 36:
        case 47:
          event.flowIds.push(...reader.repeated(reader.field === 47));
          break;
        case 42:
        case 48:
          event.terminatingFlowIds.push(...reader.repeated(reader.field === 48));
          break;
        case 30:
          event.value = reader.int();
          break;
        case 44:
          event.value = reader.double();
          break;
        case 17:
          event.threadTime = reader.int();
          break;
        case 4: {
          const [name, value] = this.#annotation(reader.message(), state, sequence);
          if (name !== undefined) event.args[name] = value;
          break;
        }
        default:
          this.#unknown("TrackEvent", reader);
      }
    }
    const name = TYPES[type];
    if (name === undefined || name === "unspecified") {
      throw new PerfettoReadError(`byte ${reader.offset}: a track event of unknown type ${type}`);
    }
    event.type = name;
    return event;
  }

  #annotation(
    reader: ProtoReader,
    state: SequenceState,
    sequence: number,
  ): [string | undefined, JsonValue] {
    let name: string | undefined;
    let value: JsonValue = null;
    let dict: Record<string, JsonValue> | undefined;
    let array: JsonValue[] | undefined;
    while (reader.next()) {
      switch (reader.field) {
        case 1: {
          const iid = reader.uint();
          name = state.annotationNames.get(iid);
          if (name === undefined) {
            throw new PerfettoReadError(
              `byte ${reader.offset}: debug annotation name ${iid} is not interned on sequence ${sequence}`,
            );
          }
          break;
        }
        case 10:
          name = reader.string();
          break;
        case 2:
          value = reader.bool();
          break;
        case 4:
          value = reader.int();
          break;
        case 5:
          value = reader.double();
          break;
        case 6:
          value = reader.string();
          break;
        case 11: {
          const [key, item] = this.#annotation(reader.message(), state, sequence);
          (dict ??= {})[key ?? ""] = item;
          break;
        }
        case 12:
          (array ??= []).push(this.#annotation(reader.message(), state, sequence)[1]);
          break;
        default:
          this.#unknown("DebugAnnotation", reader);
      }
    }
    return [name, dict ?? array ?? value];
  }

  #metadata(reader: ProtoReader): Record<string, string | number | boolean> {
    const metadata: Record<string, string | number | boolean> = {};
    while (reader.next()) {
      if (reader.field !== 2) {
        this.#unknown("ChromeEventBundle", reader);
        continue;
      }
      const entry = reader.message();
      let name = "";
      let value: string | number | boolean = "";
      while (entry.next()) {
        if (entry.field === 1) name = entry.string();
        else if (entry.field === 2) value = entry.string();
        else if (entry.field === 3) value = entry.bool();
        else if (entry.field === 4) value = entry.int();
        else this.#unknown("ChromeMetadata", entry);
      }
      metadata[name] = value;
    }
    return metadata;
  }

  /** A field the reader does not know: skipped (by `next()`), or an error when strict. */
  #unknown(message: string, reader: ProtoReader): void {
    if (!this.#strict) return;
    throw new PerfettoReadError(
      `byte ${reader.offset}: field ${reader.field} (wire type ${reader.wire}) of ${message}, ` +
        "which the reader does not know",
    );
  }
}

/** What {@linkcode decodePerfetto} and {@linkcode readPerfetto} read. */
export type PerfettoInput = ReadableStream<Uint8Array> | AsyncIterable<Uint8Array> | Uint8Array;

/**
 * Decodes a trace's packets as they arrive.
 *
 * @throws {PerfettoReadError} for bytes that are not a trace, or a trace cut short.
 */
export async function* decodePerfetto(
  input: PerfettoInput,
  options: PerfettoDecoderOptions = {},
): AsyncGenerator<PerfettoPacket> {
  const decoder = new PerfettoDecoder(options);
  const chunks = input instanceof Uint8Array ? [input] : input;
  for await (const chunk of chunks as AsyncIterable<Uint8Array>) {
    const packets: PerfettoPacket[] = [];
    decoder.push(chunk, (packet) => packets.push(packet));
    yield* packets;
  }
  decoder.finish();
}

/** A slice, as the trace processor builds it from a BEGIN and an END (or an INSTANT). */
export interface PerfettoSlice {
  /** Its index in {@linkcode PerfettoTrace.slices}: sorted by start, then by file order. */
  id: number;
  track: number;
  /** The thread's dense id and name, if the track is a thread's. */
  tid?: number;
  thread?: string;
  name: string;
  category: string;
  ts: number;
  /** In ns; -1 if it never ended. */
  dur: number;
  /** 0 for the outermost slice of its track. */
  depth: number;
  parent?: number;
  file?: string;
  line?: number;
  args: Record<string, JsonValue>;
  /** Whether it is an instant. */
  instant: boolean;
  /** Its thread's CPU time at its start, and what it spent, in µs (`--cpu-time`). */
  threadTs?: number;
  threadDur?: number;
}

/** A flow arrow between two slices. */
export interface PerfettoFlow {
  id: number;
  from: number;
  to: number;
}

/** A whole trace, read into memory. */
export interface PerfettoTrace {
  tracks: Map<number, PerfettoTrack>;
  slices: PerfettoSlice[];
  flows: PerfettoFlow[];
  /** Counter values, by counter track name, in time order. */
  counters: Map<string, { ts: number; value: number }[]>;
  metadata: Record<string, string | number | boolean>;
  /** Every track event in file order, resolved. */
  events: PerfettoEvent[];
  /** Packets that only set a sequence up. */
  sequencePackets: number;
}

/**
 * Reads a whole trace into memory and builds what the trace processor
 * builds from it: events sorted by time (ties in file order), a BEGIN
 * nesting under the open slices of its track and an END closing the
 * innermost, flows joining the slices that share a flow id in time order
 * until a `terminating_flow_ids` ends the chain. For tests and small
 * traces: memory grows with the trace.
 *
 * @example
 * ```ts
 * import { convert, readPerfetto } from "@panopticon/panopticon";
 * import assert from "node:assert/strict";
 *
 * const chunks: Uint8Array[] = [];
 * await convert(
 *   (await Deno.open(new URL("../tests/fixtures/generator.ndjson", import.meta.url))).readable,
 *   new WritableStream({ write: (chunk) => void chunks.push(chunk) }),
 *   { format: "perfetto" },
 * );
 * const trace = await readPerfetto(ReadableStream.from(chunks));
 * const numbers = trace.slices.filter((slice) => slice.name === "numbers");
 * assert.deepEqual(numbers.map((slice) => [slice.ts, slice.dur]), [[100, 100], [500, 100]]);
 * assert.deepEqual(trace.flows, [{ id: 1, from: numbers[0]!.id, to: numbers[1]!.id }]);
 * ```
 */
export async function readPerfetto(
  input: PerfettoInput,
  options: PerfettoDecoderOptions = {},
): Promise<PerfettoTrace> {
  const tracks = new Map<number, PerfettoTrack>();
  const events: PerfettoEvent[] = [];
  let metadata: Record<string, string | number | boolean> = {};
  let sequencePackets = 0;
  for await (const packet of decodePerfetto(input, options)) {
    if (packet.kind === "track") {
      tracks.set(packet.track.uuid, { ...tracks.get(packet.track.uuid), ...packet.track });
    } else if (packet.kind === "event") events.push(packet.event);
    else if (packet.kind === "metadata") metadata = { ...metadata, ...packet.metadata };
    else sequencePackets++;
  }

  const order = events.map((event, index) => ({ event, index }))
    .sort((a, b) => a.event.ts - b.event.ts || a.index - b.index);
  const slices: PerfettoSlice[] = [];
  const counters = new Map<string, { ts: number; value: number }[]>();
  const stacks = new Map<number, PerfettoSlice[]>();
  for (const { event } of order) {
    if (event.type === "counter") {
      const name = tracks.get(event.track)?.name ?? `track ${event.track}`;
      const values = counters.get(name) ?? [];
      values.push({ ts: event.ts, value: event.value ?? 0 });
      counters.set(name, values);
      continue;
    }
    const stack = stacks.get(event.track) ?? [];
    stacks.set(event.track, stack);
    if (event.type === "end") {
      const open = stack.pop();
      if (open !== undefined) open.dur = event.ts - open.ts;
      if (open?.threadTs !== undefined && event.threadTime !== undefined) {
        open.threadDur = event.threadTime - open.threadTs;
      }
      continue;
    }
    const thread = tracks.get(event.track)?.thread;
    const parent = stack.at(-1);
    const slice: PerfettoSlice = {
      id: slices.length,
      track: event.track,
      name: event.name ?? "",
      category: event.categories.join(","),
      ts: event.ts,
      dur: event.type === "instant" ? 0 : -1,
      depth: stack.length,
      args: event.args,
      instant: event.type === "instant",
    };
    if (thread !== undefined) {
      slice.tid = thread.tid;
      if (thread.name !== undefined) slice.thread = thread.name;
    }
    if (parent !== undefined) slice.parent = parent.id;
    if (event.file !== undefined) slice.file = event.file;
    if (event.line !== undefined) slice.line = event.line;
    if (event.threadTime !== undefined) slice.threadTs = event.threadTime;
    slices.push(slice);
    if (event.type === "begin") stack.push(slice);
  }

  // Flows, in the order of the slices' starts.
  const flows: PerfettoFlow[] = [];
  const active = new Map<number, number>();
  let at = 0;
  for (const { event } of order) {
    if (event.type === "end" || event.type === "counter") continue;
    const slice = slices[at++]!;
    for (const id of event.flowIds) {
      const from = active.get(id);
      if (from !== undefined) flows.push({ id, from, to: slice.id });
      active.set(id, slice.id);
    }
    for (const id of event.terminatingFlowIds) {
      const from = active.get(id);
      if (from === undefined) continue;
      flows.push({ id, from, to: slice.id });
      active.delete(id);
    }
  }
  return { tracks, slices, flows, counters, metadata, events, sequencePackets };
}

/** A packet's tag and length at `at`, and where its bytes start; undefined if cut off. */
function readHeader(data: Uint8Array, at: number): [number, number, number] | undefined {
  const tag = data[at];
  if (tag === undefined) return undefined;
  let length = 0;
  let scale = 1;
  let i = at + 1;
  for (let n = 0; n < 10; n++, i++) {
    const byte = data[i];
    if (byte === undefined) return undefined;
    length += (byte & 0x7f) * scale;
    if (byte < 0x80) return [tag, length, i + 1];
    scale *= 128;
  }
  throw new PerfettoReadError(`a packet length longer than ten bytes`);
}
