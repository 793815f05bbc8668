/**
 * A streaming writer of Perfetto traces (the protobuf `Trace` of Perfetto's
 * `protos/perfetto/trace/`, TracePackets carrying TrackEvents), the format
 * ui.perfetto.dev reads natively and keeps small.
 *
 * @module
 */

import manifest from "../deno.json" with { type: "json" };
import { ProtoWriter, varintSize, writeVarint } from "./_protobuf.ts";
import type { JsonValue } from "./protocol.ts";
import type {
  AsyncSlice,
  FlowArrow,
  Mark,
  ProcessInfo,
  Slice,
  SliceArgs,
  SliceSite,
  ThreadInfo,
  TraceSink,
  TraceSummary,
} from "./trace_model.ts";

/** Options of {@linkcode PerfettoWriter}. */
export interface PerfettoWriterOptions {
  /**
   * How many bytes to gather before writing them as one chunk; a chunk is
   * at least this long (but for the last) and at most one packet longer.
   *
   * @default {65536}
   */
  chunkSize?: number;
  /**
   * The Panopticon version recorded in the trace's metadata.
   *
   * @default {the version of this package}
   */
  version?: string;
  /**
   * The most packet sequences a thread's slices are spread over (see
   * {@linkcode PerfettoWriter}); past it, a slice that fits none is written
   * with absolute timestamps. A positive integer.
   *
   * @default {65536}
   */
  maxSequencesPerThread?: number;
}

// Field numbers of Perfetto's protos, by message.
/** `Trace`. */
const TRACE_PACKET = 1;
/** `TracePacket`. */
const PACKET = {
  timestamp: 8,
  sequenceId: 10,
  trackEvent: 11,
  internedData: 12,
  sequenceFlags: 13,
  clockSnapshot: 6,
  chromeEvents: 5,
  defaults: 59,
  timestampClockId: 58,
  trackDescriptor: 60,
  firstPacketOnSequence: 87,
} as const;
/** `TracePacket.sequence_flags`: the sequence's interned data and defaults start afresh. */
const SEQ_INCREMENTAL_STATE_CLEARED = 1;
/** `TracePacketDefaults`. */
const DEFAULTS = { timestampClockId: 58, trackEventDefaults: 11 } as const;
/** `TrackEventDefaults`. */
const TRACK_EVENT_DEFAULTS = { trackUuid: 11 } as const;
/** `ClockSnapshot` and its `Clock`. */
const CLOCK_SNAPSHOT = { clocks: 1 } as const;
const CLOCK = { id: 1, timestamp: 2, incremental: 3 } as const;
/** `TrackDescriptor`, `ProcessDescriptor`, `ThreadDescriptor`. */
const TRACK = { uuid: 1, name: 2, process: 3, thread: 4, parentUuid: 5, counter: 8 } as const;
const PROCESS = { pid: 1, cmdline: 2, name: 6 } as const;
const THREAD = { pid: 1, tid: 2, name: 5 } as const;
/** `InternedData` and its entries (`EventCategory`, `EventName`, `DebugAnnotationName`, `SourceLocation`). */
const INTERNED = { categories: 1, names: 2, annotationNames: 3, sourceLocations: 4 } as const;
const ENTRY = { iid: 1, name: 2 } as const;
const SOURCE_LOCATION = { iid: 1, file: 2, line: 4 } as const;
/** `TrackEvent`. */
const EVENT = {
  categoryIids: 3,
  debugAnnotations: 4,
  type: 9,
  nameIid: 10,
  trackUuid: 11,
  sourceLocationIid: 34,
  flowIds: 36,
  terminatingFlowIds: 42,
  doubleCounterValue: 44,
} as const;
/** `TrackEvent.Type`. */
const TYPE = { begin: 1, end: 2, instant: 3, counter: 4 } as const;
/** `TrackEvent`'s name and categories as plain strings, not interned (the async tracks'). */
const EVENT_TEXT = { categories: 22, name: 23 } as const;
/** `DebugAnnotation`. */
const ANNOTATION = {
  nameIid: 1,
  bool: 2,
  int: 4,
  double: 5,
  string: 6,
  name: 10,
  dictEntries: 11,
  arrayValues: 12,
} as const;
/** `ChromeEventBundle` and `ChromeMetadata`: the run's summary. */
const BUNDLE = { metadata: 2 } as const;
const METADATA = { name: 1, string: 2, bool: 3, int: 4 } as const;

/** `BUILTIN_CLOCK_BOOTTIME`: the trace's own clock, holding ns since the trace's time zero. */
const ABSOLUTE_CLOCK = 6;
/** A sequence-scoped clock (ids 64 to 127 are), incremental: every timestamp is a delta. */
const INCREMENTAL_CLOCK = 64;

// Tags, as their varint bytes, of the fields the hot path writes.
const TAG_PACKET = 0x0a; // Trace.packet, length-delimited
const TAG_TIMESTAMP = 0x40; // TracePacket.timestamp, varint
const TAG_SEQUENCE = 0x50; // TracePacket.trusted_packet_sequence_id, varint
const TAG_TRACK_EVENT = 0x5a; // TracePacket.track_event, length-delimited
const TAG_INTERNED = 0x62; // TracePacket.interned_data, length-delimited
// TracePacket.timestamp_clock_id (58), varint: two bytes, then the clock.
const ABSOLUTE_CLOCK_FIELD = [0xd0, 0x03, ABSOLUTE_CLOCK] as const;
// TrackEvent.flow_ids_old (36) and terminating_flow_ids_old (42), varints:
// the varint forms take 2 to 4 bytes a flow where the newer fixed64 ones
// take 10, and the trace processor reads both.
const FLOW_IDS = [0xa0, 0x02] as const;
const TERMINATING_FLOW_IDS = [0xd0, 0x02] as const;
/** A slice's END event, whole: `track_event { type: TYPE_SLICE_END }`. */
const END_EVENT = [TAG_TRACK_EVENT, 0x02, 0x48, TYPE.end] as const;
// TrackEvent.thread_time_absolute_us (17), varint: two bytes, then µs of the
// thread's CPU clock (`--cpu-time`). The trace processor reads it on BEGIN as
// `slice.thread_ts` and on END as the end of `slice.thread_dur`. Absolute, not
// `thread_time_delta_us`: deltas would need the thread's reference time in
// a ThreadDescriptor of each sequence, and slices spread over sequences.
const THREAD_TIME_FIELD = [0x88, 0x01] as const;
/** More than a slice's two packets need beyond their site's bytes. */
const SLICE_BYTES = 128;

const noop = () => {};
const encoder = new TextEncoder();
/** How many sequences past the best fit are searched for one that knows a site. */
const KNOWN_SITE_SEARCH = 64;

/** A category, with its number among the writer's and its name's UTF-8. */
interface CategoryEntry {
  readonly index: number;
  readonly name: Uint8Array;
}

/** What the writer knows of a site (or of a mark's name and category): rendered once. */
interface SiteEntry {
  /** Its number among the writer's sites: the index of its interning id in each sequence. */
  readonly index: number;
  /** The TrackEvent type its events have. */
  readonly type: number;
  readonly category: CategoryEntry;
  /** The name's UTF-8, and the file's. */
  readonly name: Uint8Array;
  readonly file: Uint8Array | undefined;
  readonly line: number | undefined;
  /** Whether its events carry a source location. */
  readonly located: boolean;
}

/**
 * One packet sequence of a thread: its own interned data, its default
 * track (the thread's) and its own incremental clock, whose timestamps
 * never go back.
 */
class Sequence {
  /** The last timestamp written on it, in ns since the trace's time zero. */
  watermark = 0;
  /**
   * The interning id of each site used on it, by the site's index (an
   * array, for a lookup on every slice); one id names the site's event name
   * and its source location, which are separate tables.
   */
  readonly iids: number[] = [];
  /** The interning id of each category used on it, by the category's index. */
  readonly categoryIids: number[] = [];
  readonly annotationNames = new Map<string, number>();
  /** The last interning ids given, for sites and for categories. */
  sites = 0;
  categories = 0;
  /** `trusted_packet_sequence_id` with its tag, as bytes. */
  readonly head: Uint8Array;
  /** Whether it is in its thread's pool, and its neighbours there: a later watermark, an earlier. */
  pooled = false;
  previous: Sequence | undefined;
  next: Sequence | undefined;

  constructor(readonly id: number, readonly track: number) {
    const head = new Uint8Array(6);
    head[0] = TAG_SEQUENCE;
    this.head = head.subarray(0, writeVarint(head, 1, id));
  }
}

/**
 * A thread's track and the sequences its slices are written on: one per
 * depth of the stack, and a pool for the slices that do not fit their
 * depth's (see {@linkcode PerfettoWriter}), a list linked through the
 * sequences, latest watermark first.
 */
class ThreadTrack {
  /** Each depth's sequence. */
  readonly byDepth: (Sequence | undefined)[] = [];
  /** The pool's sequence with the latest watermark, and the one with the earliest. */
  first: Sequence | undefined;
  last: Sequence | undefined;
  /** The thread's sequences, of depths and of the pool. */
  count = 0;
  /** Its first sequence, for absolute times when there is no room for another. */
  any: Sequence | undefined;

  constructor(readonly uuid: number) {}

  /** Adds `sequence` (not in the list) where its watermark goes. */
  insert(sequence: Sequence): void {
    const watermark = sequence.watermark;
    let after: Sequence | undefined;
    let before = this.first;
    while (before !== undefined && before.watermark > watermark) {
      after = before;
      before = before.next;
    }
    sequence.previous = after;
    sequence.next = before;
    if (after === undefined) this.first = sequence;
    else after.next = sequence;
    if (before === undefined) this.last = sequence;
    else before.previous = sequence;
  }

  /** Puts `sequence`, whose watermark moved forward, back in its place. */
  moved(sequence: Sequence): void {
    const previous = sequence.previous;
    if (previous === undefined || previous.watermark >= sequence.watermark) return;
    // Out, then in again before the first one it has not overtaken.
    const next = sequence.next;
    previous.next = next;
    if (next === undefined) this.last = previous;
    else next.previous = previous;
    this.insert(sequence);
  }
}

/**
 * Writes a Perfetto trace (protobuf), as bytes, to a stream, as a
 * {@linkcode TraceSink}: what the Catapult JSON trace shows, in about a
 * fifth to a sixth of the bytes.
 *
 * The trace is a `Trace` message, one `TracePacket` after another, written
 * as they come. Each process (by pid) and each thread get a
 * `TrackDescriptor` (one track per thread, under the process its
 * {@linkcode ThreadInfo.pid} names); a slice is a `TYPE_SLICE_BEGIN`
 * and a `TYPE_SLICE_END` `TrackEvent` on its thread's track, with its name
 * and category interned, its file and line as an interned source location
 * (`source.file_name`, `source.line_number` in the trace processor's
 * args), and extra args (`unfinished`, `unbalanced`, a span's own) as debug
 * annotations. The slices of a generator, coroutine or async generator
 * frame share a flow id (`flow_ids`, and `terminating_flow_ids` on the
 * last); so do the slice that started a child process (`flow_ids`) and the
 * child's first slice (`terminating_flow_ids`), across their processes. Instants are `TYPE_INSTANT` events on the thread's track; each
 * counter series gets a counter track under the process, named as the
 * trace processor names JSON counters (`queue depth n`). The run's summary
 * (the JSON trace's `otherData`) is metadata at the end (`cr-<key>` rows of
 * the trace processor's `metadata` table).
 *
 * Slices arrive as they close, children before their parents, yet a
 * packet sequence's incremental clock only counts forward. So each thread
 * has a sequence per depth of its stack, each with its own clock (a
 * timestamp is a delta of a byte or two from the sequence's last one) and
 * its own interned names, and a slice goes, as a BEGIN then an END, on its
 * depth's sequence ({@linkcode Slice.depth}): the slices of one depth of a
 * thread never overlap, and close in the order they began. The trace
 * processor sorts every event by time before it builds slices, so the
 * nesting comes out as it was. A slice that does not fit its depth's
 * sequence (the last slice of a generator, held until the frame resumes,
 * can come after later ones) or has no depth goes to a pool of further
 * sequences, kept in a list latest first: on the one whose last timestamp
 * is the latest not after the slice's start (or, if that one has not
 * interned the slice's name yet, on one that has, if its delta is at most
 * a byte longer), or on a new one. Memory thus grows with the stack's depth
 * and the number of sites, never with the number of slices. Past
 * `maxSequencesPerThread`, a slice that fits none is written with absolute
 * timestamps. Two slices of one thread that begin in the same nanosecond,
 * a parent and its first child, keep the order in which they were
 * written, child first: the trace processor then nests them the other way
 * round (with real clocks, no two events of a thread share a nanosecond).
 *
 * A C call costs 26 bytes (a BEGIN of 15: the packet's tag and length, a
 * two-byte delta, the sequence, the event's tag and length, its type, name
 * and category; an END of 11), a Python call 29 (its source location), a
 * slice of a frame's flow 3 to 4 more.
 *
 * @example Writing a trace by hand, and reading it back
 * ```ts
 * import { PerfettoWriter, readPerfetto } from "@panopticon/panopticon";
 * import assert from "node:assert/strict";
 *
 * const chunks: Uint8Array[] = [];
 * const writer = new PerfettoWriter(new WritableStream({ write: (chunk) => void chunks.push(chunk) }));
 * writer.process({ pid: 7, name: "python a.py", argv: ["a.py"], pythonVersion: "3.12.1", engine: "monitoring", protocol: 2 });
 * writer.thread({ tid: 1, name: "MainThread", ident: 140001, nativeId: 7 });
 * const site = { name: "main", category: "function", file: "a.py", line: 1 };
 * writer.slice({ tid: 1, start: 0, duration: 2.5, site, flow: 0, flowIn: false, flowOut: false, args: undefined });
 * writer.finish({
 *   complete: true, events: 2, recorded: 2, dropped: 0, reason: "exit", slices: 1, unfinished: 0, threads: 1,
 *   duration: 3, pid: 7, pythonVersion: "3.12.1", engine: "monitoring", protocol: 2,
 * });
 * await writer.close();
 * const trace = await readPerfetto(ReadableStream.from(chunks));
 * assert.deepEqual(trace.slices.map((s) => [s.name, s.category, s.ts, s.dur, s.file, s.line]), [
 *   ["main", "function", 0, 2500, "a.py", 1],
 * ]);
 * assert.equal(trace.metadata.complete, true);
 * ```
 */
export class PerfettoWriter implements TraceSink {
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  readonly #chunkSize: number;
  readonly #version: string;
  readonly #maxSequences: number;
  #buffer: Uint8Array;
  #at = 0;
  #pid = 0;
  #uuids = 1;
  #sequenceIds = 0;
  /** The track of the process announced last; the first one's is 1. */
  #processUuid = 1;
  /** Each process's track, by pid. */
  readonly #processUuids = new Map<number, number>();
  readonly #threads: (ThreadTrack | undefined)[] = [];
  readonly #sites = new Map<SliceSite, SiteEntry>();
  #siteCount = 0;
  readonly #categories = new Map<string, CategoryEntry>();
  /** Where interned data is put together before it goes into a packet. */
  #scratch = new Uint8Array(256);
  /** The last site looked up, and its entry: a loop's calls share one. */
  #lastSite: SliceSite | undefined;
  #lastEntry: SiteEntry | undefined;
  /** Marks' names and categories, keyed `type\0category\0name`. */
  readonly #markSites = new Map<string, SiteEntry>();
  /** Counter series' tracks, keyed `pid\0name\0series`. */
  readonly #counterTracks = new Map<string, number>();
  #counterSequence: Sequence | undefined;
  /** The async tracks (asyncio tasks), by their id; and their sequence. */
  /** The async tracks' uuids, by pid and track id (`pid:id`): each process numbers its own. */
  readonly #asyncTracks = new Map<string, number>();
  /** The debug annotations of an args object, encoded, by sequence (args never change). */
  readonly #annotations = new WeakMap<SliceArgs, Map<Sequence, Uint8Array>>();
  /** The BEGIN of each async track's steps, encoded, by track uuid; cleared past 4,096. */
  readonly #asyncBegins = new Map<number, { name: string; category: string; bytes: Uint8Array }>();
  /** The pid of each thread whose `thread()` named one, by dense id. */
  readonly #threadPids: number[] = [];
  #asyncSequence: Sequence | undefined;

  /**
   * Makes a writer that locks `output` and writes the trace to it.
   *
   * @throws {RangeError} if `maxSequencesPerThread` is not a positive integer.
   */
  constructor(output: WritableStream<Uint8Array>, options: PerfettoWriterOptions = {}) {
    const maxSequences = options.maxSequencesPerThread ?? 65536;
    if (!(Number.isInteger(maxSequences) && maxSequences >= 1)) {
      throw new RangeError(`maxSequencesPerThread must be a positive integer, got ${maxSequences}`);
    }
    this.#writer = output.getWriter();
    this.#chunkSize = Math.max(1, options.chunkSize ?? 65536);
    this.#version = options.version ?? manifest.version;
    this.#maxSequences = maxSequences;
    this.#buffer = this.#newBuffer();
  }

  /**
   * Writes the process's track descriptor: one track per pid, the first
   * announced with uuid 1; a process announced again (an exec) is renamed.
   */
  process(process: ProcessInfo): void {
    this.#pid = process.pid;
    let uuid = this.#processUuids.get(process.pid);
    if (uuid === undefined) {
      uuid = this.#processUuids.size === 0 ? 1 : ++this.#uuids;
      this.#processUuids.set(process.pid, uuid);
    }
    this.#processUuid = uuid;
    const descriptor = new ProtoWriter().varint(PROCESS.pid, process.pid);
    for (const arg of process.argv) descriptor.string(PROCESS.cmdline, arg);
    descriptor.string(PROCESS.name, process.name);
    this.#describeTrack(
      new ProtoWriter().varint(TRACK.uuid, this.#processUuid).message(TRACK.process, descriptor),
    );
  }

  /**
   * Writes a thread's track descriptor, again when it is renamed, under
   * the process its `pid` names (else the one announced last).
   */
  thread(thread: ThreadInfo): void {
    const track = this.#threadTrack(thread.tid);
    const pid = thread.pid ?? this.#pid;
    if (thread.pid !== undefined) this.#threadPids[thread.tid] = pid;
    this.#describeTrack(
      this.#trackUnder(track.uuid, pid).message(
        TRACK.thread,
        new ProtoWriter()
          .varint(THREAD.pid, pid)
          .varint(THREAD.tid, thread.tid)
          .string(THREAD.name, thread.name),
      ),
    );
  }

  /** Writes a slice's BEGIN and END events, with its flow if it has one. */
  slice(slice: Slice): void {
    let site: SiteEntry;
    if (slice.site === this.#lastSite) {
      site = this.#lastEntry!;
    } else {
      site = this.#sites.get(slice.site) ?? this.#addSite(slice.site);
      this.#lastSite = slice.site;
      this.#lastEntry = site;
    }
    const start = nanoseconds(slice.start);
    const end = start + nanoseconds(slice.duration);
    const flow = slice.flow;
    const flowField = flow === 0 ? undefined : slice.flowOut ? FLOW_IDS : TERMINATING_FLOW_IDS;
    const depth = slice.depth;
    if (slice.threadStart !== undefined) {
      // `--cpu-time`: the thread's times, in whole µs as the field has them.
      const threadStart = Math.round(slice.threadStart);
      const threadEnd = Math.round(slice.threadStart + (slice.threadDuration ?? 0));
      const arrows = slice.childFlows !== undefined || slice.parentFlow
        ? processArrows(slice)
        : undefined;
      this.#event(
        slice.tid,
        site,
        start,
        end,
        flowField,
        flow,
        slice.args,
        depth,
        arrows,
        threadStart,
        threadEnd,
      );
      return;
    }
    if (slice.childFlows !== undefined || slice.parentFlow) {
      const arrows = processArrows(slice);
      this.#event(slice.tid, site, start, end, flowField, flow, slice.args, depth, arrows);
      return;
    }
    if (
      depth !== undefined && slice.args === undefined &&
      this.#fast(slice.tid, site, start, end, flowField, flow, depth)
    ) {
      return;
    }
    this.#event(slice.tid, site, start, end, flowField, flow, slice.args, depth);
  }

  /**
   * The common case, written in one go, or false if it is not that: a slice
   * without args that fits the sequence its site was last written on, on
   * this thread (that sequence's watermark is not after the slice's start),
   * with small numbers (a delta to the start below 2^14 ns, a duration below
   * 2^21, ids below 128). That sequence need not be the best fit: it saves
   * looking for one, and the site's name is interned there.
   */
  #fast(
    tid: number,
    site: SiteEntry,
    start: number,
    end: number,
    flowField: readonly number[] | undefined,
    flow: number,
    depth: number,
  ): boolean {
    const sequence = this.#threads[tid]?.byDepth[depth];
    if (sequence === undefined) return false;
    const since = start - sequence.watermark;
    const duration = end - start;
    // A delta of at most two bytes: past that, the best fit may save one.
    if (!(since >= 0 && since < 0x4000 && duration < 0x200000 && flow < 0x200000)) return false;
    const iid = sequence.iids[site.index] ?? 0;
    if (iid === 0 || iid >= 0x80) return false;
    const category = sequence.categoryIids[site.category.index]!;
    if (category >= 0x80) return false;
    const head = sequence.head;
    const out = this.#reserve(SLICE_BYTES);
    let at = this.#at;
    // BEGIN: packet { timestamp, sequence, track_event { type, name,
    // category, location, flow } }
    const eventLength = (site.located ? 9 : 6) +
      (flowField === undefined ? 0 : 2 + varintLength(flow));
    out[at++] = TAG_PACKET;
    out[at++] = 1 + varintLength(since) + head.length + 2 + eventLength;
    out[at++] = TAG_TIMESTAMP;
    at = since < 0x80 ? (out[at] = since, at + 1) : writeVarint(out, at, since);
    for (let i = 0; i < head.length; i++) out[at++] = head[i]!;
    out[at++] = TAG_TRACK_EVENT;
    out[at++] = eventLength;
    out[at++] = 0x48; // type
    out[at++] = site.type;
    out[at++] = 0x50; // name_iid
    out[at++] = iid;
    out[at++] = 0x18; // category_iids
    out[at++] = category;
    if (site.located) {
      out[at++] = 0x90; // source_location_iid (34): a two-byte tag
      out[at++] = 0x02;
      out[at++] = iid;
    }
    if (flowField !== undefined) {
      out[at++] = flowField[0]!;
      out[at++] = flowField[1]!;
      at = flow < 0x80 ? (out[at] = flow, at + 1) : writeVarint(out, at, flow);
    }
    if (site.type === TYPE.begin) {
      // END: packet { timestamp, sequence, track_event { type } }
      out[at++] = TAG_PACKET;
      out[at++] = 1 + varintLength(duration) + head.length + END_EVENT.length;
      out[at++] = TAG_TIMESTAMP;
      at = duration < 0x80 ? (out[at] = duration, at + 1) : writeVarint(out, at, duration);
      for (let i = 0; i < head.length; i++) out[at++] = head[i]!;
      out[at++] = END_EVENT[0];
      out[at++] = END_EVENT[1];
      out[at++] = END_EVENT[2];
      out[at++] = END_EVENT[3];
    }
    sequence.watermark = end;
    this.#at = at;
    if (at >= this.#chunkSize) this.#flush();
    return true;
  }

  /**
   * Writes an instant (`TYPE_INSTANT` on its thread's track) or a
   * counter's values (`TYPE_COUNTER` on a track per series).
   */
  mark(mark: Mark): void {
    const ts = nanoseconds(mark.ts);
    if (mark.kind === "instant") {
      const site = this.#markSite(TYPE.instant, mark.name, mark.category);
      const args = Object.keys(mark.args).length === 0 ? undefined : mark.args;
      this.#event(mark.tid, site, ts, ts, undefined, 0, args, undefined);
      return;
    }
    const pid = mark.pid ?? this.#pid;
    for (const [series, value] of Object.entries(mark.args)) {
      if (typeof value !== "number") continue;
      const track = this.#counterTrack(pid, mark.name, series);
      const sequence = this.#counterSequence ??= this.#newSequence(undefined);
      const event = new ProtoWriter()
        .varint(EVENT.type, TYPE.counter)
        .varint(EVENT.trackUuid, track)
        .double(EVENT.doubleCounterValue, value);
      const delta = ts >= sequence.watermark ? ts - sequence.watermark : -1;
      const packet = new ProtoWriter();
      if (delta >= 0) {
        packet.varint(PACKET.timestamp, delta);
        sequence.watermark = ts;
      } else {
        packet.int64(PACKET.timestamp, ts).varint(PACKET.timestampClockId, ABSOLUTE_CLOCK);
      }
      this.#packet(
        packet.varint(PACKET.sequenceId, sequence.id).message(PACKET.trackEvent, event),
      );
    }
  }

  /**
   * Writes a slice of an async track (an asyncio task's life, or a step
   * of it): a BEGIN and an END on a track of its own under the process,
   * named after the task, with its name and category as plain strings and
   * its args as debug annotations.
   */
  asyncSlice(slice: AsyncSlice): void {
    const pid = this.#threadPids[slice.tid] ?? this.#pid;
    const key = `${pid}:${slice.id}`;
    let uuid = this.#asyncTracks.get(key);
    if (uuid === undefined) {
      uuid = ++this.#uuids;
      this.#asyncTracks.set(key, uuid);
      this.#describeTrack(this.#trackUnder(uuid, pid).string(TRACK.name, slice.track));
    }
    const sequence = this.#asyncSequence ??= this.#newSequence(undefined);
    const start = nanoseconds(slice.start);
    let begin: Uint8Array;
    if (slice.args === undefined) {
      // A task's steps: the same BEGIN every time, encoded once a track.
      const cached = this.#asyncBegins.get(uuid);
      if (
        cached !== undefined && cached.name === slice.name && cached.category === slice.category
      ) {
        begin = cached.bytes;
      } else {
        begin = this.#asyncBegin(uuid, slice).finish().slice();
        if (this.#asyncBegins.size >= 4096) this.#asyncBegins.clear();
        this.#asyncBegins.set(uuid, { name: slice.name, category: slice.category, bytes: begin });
      }
    } else {
      const event = this.#asyncBegin(uuid, slice);
      for (const [name, value] of Object.entries(slice.args)) {
        const annotation = new ProtoWriter().string(ANNOTATION.name, name);
        if (typeof value === "number") annotation.double(ANNOTATION.double, value);
        else annotation.string(ANNOTATION.string, String(value));
        event.message(EVENT.debugAnnotations, annotation);
      }
      begin = event.finish();
    }
    this.#timedPacket(sequence, start, begin);
    this.#timedPacket(
      sequence,
      start + nanoseconds(slice.duration),
      new ProtoWriter().varint(EVENT.type, TYPE.end).varint(EVENT.trackUuid, uuid).finish(),
    );
  }

  /** An async slice's BEGIN, without its args. */
  #asyncBegin(uuid: number, slice: AsyncSlice): ProtoWriter {
    return new ProtoWriter()
      .varint(EVENT.type, TYPE.begin)
      .varint(EVENT.trackUuid, uuid)
      .string(EVENT_TEXT.name, slice.name)
      .string(EVENT_TEXT.categories, slice.category);
  }

  /**
   * Writes an arrow: the slices it joins were written already, so it goes
   * from an instant at its start to one at its end, on their threads'
   * tracks (`flow_ids`, `terminating_flow_ids`), each nested in the slice
   * that encloses it.
   */
  flowArrow(arrow: FlowArrow): void {
    const site = this.#markSite(TYPE.instant, arrow.name, arrow.category);
    const from = nanoseconds(arrow.fromTs);
    const to = nanoseconds(arrow.toTs);
    this.#event(arrow.fromTid, site, from, from, FLOW_IDS, arrow.id, undefined, undefined);
    this.#event(arrow.toTid, site, to, to, TERMINATING_FLOW_IDS, arrow.id, undefined, undefined);
  }

  /** A packet of `event` at `ts` on `sequence`: incremental if its clock allows, else absolute. */
  #timedPacket(sequence: Sequence, ts: number, event: Uint8Array): void {
    if (ts >= sequence.watermark) {
      // The common case, written straight into the buffer: a task's steps
      // come by the hundred thousand.
      const delta = ts - sequence.watermark;
      sequence.watermark = ts;
      const body = 1 + varintSize(delta) + 1 + varintSize(sequence.id) + 1 +
        varintSize(event.length) + event.length;
      const out = this.#reserve(1 + varintSize(body) + body);
      let at = this.#at;
      out[at++] = (TRACE_PACKET << 3) | 2;
      at = writeVarint(out, at, body);
      out[at++] = PACKET.timestamp << 3;
      at = writeVarint(out, at, delta);
      out[at++] = PACKET.sequenceId << 3;
      at = writeVarint(out, at, sequence.id);
      out[at++] = (PACKET.trackEvent << 3) | 2;
      at = writeVarint(out, at, event.length);
      out.set(event, at);
      this.#at = at + event.length;
      if (this.#at >= this.#chunkSize) this.#flush();
      return;
    }
    // Before the sequence's clock: an absolute time.
    const packet = new ProtoWriter()
      .int64(PACKET.timestamp, ts)
      .varint(PACKET.timestampClockId, ABSOLUTE_CLOCK);
    this.#packet(packet.varint(PACKET.sequenceId, sequence.id).bytes(PACKET.trackEvent, event));
  }

  /** Writes the run's summary as metadata, last. */
  finish(summary: TraceSummary): void {
    const entries: [string, string | number | boolean | undefined][] = [
      ["panopticon", this.#version],
      ["python", summary.pythonVersion],
      ["engine", summary.engine],
      ["protocol", summary.protocol],
      ["collector", summary.collector],
      ["clock", summary.clock],
      ["pid", summary.pid],
      ["complete", summary.complete],
      ["reason", summary.reason],
      ["events", summary.events],
      ["recorded", summary.recorded],
      ["dropped", summary.dropped],
      ["slices", summary.slices],
      ["unfinished", summary.unfinished],
      // As in the JSON trace: present only when a depth limit left slices out.
      ["omitted_slices", summary.omittedSlices || undefined],
      // When recording stopped at --max-events: when (µs) and after how many events.
      ["limited_ts", summary.limited?.ts],
      ["limited_events", summary.limited?.events],
      ["python_max_rss", summary.pythonMaxRss],
      // Every traced process, when the trace follows processes, as JSON.
      ["processes", summary.processes && JSON.stringify(summary.processes)],
    ];
    const bundle = new ProtoWriter();
    for (const [name, value] of entries) {
      if (value === undefined) continue;
      const entry = new ProtoWriter().string(METADATA.name, name);
      if (typeof value === "string") entry.string(METADATA.string, value);
      else if (typeof value === "boolean") entry.varint(METADATA.bool, value);
      else entry.int64(METADATA.int, value);
      bundle.message(BUNDLE.metadata, entry);
    }
    this.#packet(new ProtoWriter().message(PACKET.chromeEvents, bundle));
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
      // As CatapultWriter: the stream's own error says what went wrong.
      await this.#writer.closed;
      throw error;
    }
  }

  /** Aborts the output, e.g. because the input was malformed. */
  async abort(reason?: unknown): Promise<void> {
    this.#at = 0;
    await this.#writer.abort(reason);
  }

  /**
   * Writes one slice (`end` > `start` or not) or instant (`end` = `start`)
   * of `site` on thread `tid`: the hot path.
   */
  #event(
    tid: number,
    site: SiteEntry,
    start: number,
    end: number,
    flowField: readonly number[] | undefined,
    flow: number,
    args: SliceArgs | undefined,
    depth: number | undefined,
    arrows?: Uint8Array,
    threadStart = -1,
    threadEnd = -1,
  ): void {
    const track = this.#threads[tid] ?? this.#threadTrack(tid);
    // The depth's sequence, if the slice fits it; else the pool's best.
    let sequence = depth === undefined ? undefined : this.#depthSequence(track, depth);
    if (sequence !== undefined && sequence.watermark > start) sequence = undefined;
    sequence ??= this.#fit(track, start, site);
    const absolute = sequence === undefined;
    // No room for another sequence: the pool's longest unused, with
    // absolute timestamps where its clock cannot go.
    sequence ??= track.last ?? track.any!;

    // The site's interning id on this sequence; interned data (in the
    // scratch buffer) when the sequence has not seen it.
    let interned = 0;
    let iid = sequence.iids[site.index] ?? 0;
    if (iid === 0) {
      interned = this.#intern(sequence, site);
      iid = sequence.iids[site.index]!;
    }
    const category = sequence.categoryIids[site.category.index]!;
    let annotations: Uint8Array | undefined;
    if (args !== undefined) {
      // One args object is often the args of many slices (an asyncio
      // task's name on its coroutines'): encoded once a sequence, whose
      // interned names never change.
      let bySequence = this.#annotations.get(args);
      annotations = bySequence?.get(sequence);
      if (annotations === undefined) {
        const names: string[] = [];
        annotations = debugAnnotations(sequence, args, names);
        if (names.length > 0) interned = this.#internNames(sequence, names, interned);
        if (bySequence === undefined) this.#annotations.set(args, bySequence = new Map());
        bySequence.set(sequence, annotations);
      }
    }

    const head = sequence.head;
    const iidLength = varintLength(iid);
    const bodyLength = 3 + iidLength + 1 + varintLength(category) +
      (site.located ? 2 + iidLength : 0);
    const flowBytes = (flowField === undefined ? 0 : 2 + varintLength(flow)) +
      (arrows?.length ?? 0);
    const threadBytes = threadStart < 0 ? 0 : 2 + varintLength(threadStart);
    const eventLength = bodyLength + flowBytes + (annotations?.length ?? 0) + threadBytes;
    const out = this.#reserve(eventLength + interned + SLICE_BYTES);
    let at = this.#at;

    // BEGIN (or INSTANT), at `start`.
    const beginTime = absolute ? start : start - sequence.watermark;
    const beginLength = 1 + timeLength(beginTime) + (absolute ? 3 : 0) + head.length +
      (interned === 0 ? 0 : 1 + varintLength(interned) + interned) +
      1 + varintLength(eventLength) + eventLength;
    // Small varints are written in place, here and below: a call per field
    // would cost more than the rest of the slice.
    out[at++] = TAG_PACKET;
    if (beginLength < 0x80) out[at++] = beginLength;
    else at = writeVarint(out, at, beginLength);
    out[at++] = TAG_TIMESTAMP;
    if (beginTime >= 0 && beginTime < 0x4000) {
      if (beginTime < 0x80) {
        out[at++] = beginTime;
      } else {
        out[at++] = (beginTime & 0x7f) | 0x80;
        out[at++] = beginTime >>> 7;
      }
    } else {
      at = writeTime(out, at, beginTime);
    }
    if (absolute) {
      out[at++] = ABSOLUTE_CLOCK_FIELD[0];
      out[at++] = ABSOLUTE_CLOCK_FIELD[1];
      out[at++] = ABSOLUTE_CLOCK_FIELD[2];
    } else {
      sequence.watermark = start;
    }
    for (let i = 0; i < head.length; i++) out[at++] = head[i]!;
    if (interned !== 0) {
      out[at++] = TAG_INTERNED;
      at = writeVarint(out, at, interned);
      out.set(this.#scratch.subarray(0, interned), at);
      at += interned;
    }
    out[at++] = TAG_TRACK_EVENT;
    if (eventLength < 0x80) out[at++] = eventLength;
    else at = writeVarint(out, at, eventLength);
    out[at++] = 0x48; // type
    out[at++] = site.type;
    out[at++] = 0x50; // name_iid
    if (iid < 0x80) out[at++] = iid;
    else at = writeVarint(out, at, iid);
    out[at++] = 0x18; // category_iids
    if (category < 0x80) out[at++] = category;
    else at = writeVarint(out, at, category);
    if (site.located) {
      out[at++] = 0x90; // source_location_iid (34): a two-byte tag
      out[at++] = 0x02;
      if (iid < 0x80) out[at++] = iid;
      else at = writeVarint(out, at, iid);
    }
    if (flowField !== undefined) {
      out[at++] = flowField[0]!;
      out[at++] = flowField[1]!;
      at = writeVarint(out, at, flow);
    }
    if (arrows !== undefined) {
      out.set(arrows, at);
      at += arrows.length;
    }
    if (annotations !== undefined) {
      out.set(annotations, at);
      at += annotations.length;
    }
    if (threadBytes !== 0) {
      out[at++] = THREAD_TIME_FIELD[0];
      out[at++] = THREAD_TIME_FIELD[1];
      at = writeVarint(out, at, threadStart);
    }

    if (site.type === TYPE.begin) {
      // END, at `end`: after `start`, so after the watermark unless BEGIN
      // could not be incremental either.
      const endAbsolute = end < sequence.watermark;
      const endTime = endAbsolute ? end : end - sequence.watermark;
      const endThreadBytes = threadBytes === 0 ? 0 : 2 + varintLength(threadEnd);
      out[at++] = TAG_PACKET;
      out[at++] = 1 + timeLength(endTime) + (endAbsolute ? 3 : 0) + head.length +
        END_EVENT.length + endThreadBytes;
      out[at++] = TAG_TIMESTAMP;
      if (endTime >= 0 && endTime < 0x4000) {
        if (endTime < 0x80) {
          out[at++] = endTime;
        } else {
          out[at++] = (endTime & 0x7f) | 0x80;
          out[at++] = endTime >>> 7;
        }
      } else {
        at = writeTime(out, at, endTime);
      }
      if (endAbsolute) {
        out[at++] = ABSOLUTE_CLOCK_FIELD[0];
        out[at++] = ABSOLUTE_CLOCK_FIELD[1];
        out[at++] = ABSOLUTE_CLOCK_FIELD[2];
      } else {
        sequence.watermark = end;
      }
      for (let i = 0; i < head.length; i++) out[at++] = head[i]!;
      out[at++] = END_EVENT[0];
      out[at++] = END_EVENT[1] + endThreadBytes;
      out[at++] = END_EVENT[2];
      out[at++] = END_EVENT[3];
      if (endThreadBytes !== 0) {
        out[at++] = THREAD_TIME_FIELD[0];
        out[at++] = THREAD_TIME_FIELD[1];
        at = writeVarint(out, at, threadEnd);
      }
    }
    this.#at = at;
    if (sequence.pooled) track.moved(sequence);
    if (at >= this.#chunkSize) this.#flush();
  }

  /** The sequence of `depth` on `track`, new if it has none and there is room. */
  #depthSequence(track: ThreadTrack, depth: number): Sequence | undefined {
    let sequence = track.byDepth[depth];
    if (sequence === undefined && track.count < this.#maxSequences) {
      sequence = this.#newSequence(track);
      track.byDepth[depth] = sequence;
    }
    return sequence;
  }

  /**
   * The thread's sequence for an event of `site` at `ts`: the one whose
   * watermark is the latest not after `ts` (a new one if none is, room
   * permitting), or, when that one has not interned the site, a later one
   * that has, if its delta takes at most one byte more: a byte saves the
   * interned data's tens. Undefined if nothing fits and there is no room
   * for another sequence.
   */
  #fit(track: ThreadTrack, ts: number, site: SiteEntry): Sequence | undefined {
    // Latest first: the first one not after `ts` fits best.
    let best = track.first;
    while (best !== undefined && best.watermark > ts) best = best.next;
    if (best === undefined) {
      if (track.count >= this.#maxSequences) return undefined;
      const sequence = this.#newSequence(track);
      sequence.pooled = true;
      track.insert(sequence);
      return sequence;
    }
    if (best.iids[site.index] !== undefined) return best;
    const bytes = varintLength(ts - best.watermark) + 1;
    let candidate = best.next;
    for (let step = 0; candidate !== undefined && step < KNOWN_SITE_SEARCH; step++) {
      if (varintLength(ts - candidate.watermark) > bytes) break;
      if (candidate.iids[site.index] !== undefined) return candidate;
      candidate = candidate.next;
    }
    return best;
  }

  /**
   * Interns `site` on `sequence` (and its category, if new there): writes
   * the `InternedData` fields into the scratch buffer, by hand, as this
   * happens for every site on every sequence it is used on; returns their
   * length.
   */
  #intern(sequence: Sequence, site: SiteEntry): number {
    const iid = ++sequence.sites;
    sequence.iids[site.index] = iid;
    const category = site.category;
    const known = sequence.categoryIids[category.index];
    const newCategory = known === undefined;
    const categoryIid = known ?? ++sequence.categories;
    sequence.categoryIids[category.index] = categoryIid;
    const name = site.name;
    const file = site.file;
    const line = site.line;
    const out = this.#scratchFor(
      40 + name.length + (file?.length ?? 0) + (newCategory ? 20 + category.name.length : 0),
    );
    let at = 0;
    if (newCategory) {
      at = writeEntry(out, at, INTERNED.categories, categoryIid, ENTRY.name, category.name);
    }
    at = writeEntry(out, at, INTERNED.names, iid, ENTRY.name, name);
    if (site.located) {
      // SourceLocation { iid, file_name, line_number }
      const fileBytes = file === undefined ? 0 : 1 + varintLength(file.length) + file.length;
      const lineBytes = line === undefined ? 0 : 1 + varintLength(line);
      out[at++] = (INTERNED.sourceLocations << 3) | 2;
      at = writeVarint(out, at, 1 + varintLength(iid) + fileBytes + lineBytes);
      out[at++] = (SOURCE_LOCATION.iid << 3) | 0;
      at = writeVarint(out, at, iid);
      if (file !== undefined) {
        out[at++] = (SOURCE_LOCATION.file << 3) | 2;
        at = writeVarint(out, at, file.length);
        out.set(file, at);
        at += file.length;
      }
      if (line !== undefined) {
        out[at++] = (SOURCE_LOCATION.line << 3) | 0;
        at = writeVarint(out, at, line);
      }
    }
    return at;
  }

  /**
   * Appends, after `length` bytes of interned data in the scratch buffer,
   * the debug annotation names just added to `sequence`; returns the new
   * length. Off the hot path: only slices with args get here.
   */
  #internNames(sequence: Sequence, names: string[], length: number): number {
    const bytes = internedNames(sequence, names);
    const out = this.#scratchFor(length + bytes.length);
    out.set(bytes, length);
    return length + bytes.length;
  }

  /** The scratch buffer, at least `bytes` long, keeping what it holds. */
  #scratchFor(bytes: number): Uint8Array {
    if (this.#scratch.length < bytes) {
      const bigger = new Uint8Array(Math.max(bytes, this.#scratch.length * 2));
      bigger.set(this.#scratch);
      this.#scratch = bigger;
    }
    return this.#scratch;
  }

  #addSite(site: SliceSite): SiteEntry {
    const entry = this.#newSite(TYPE.begin, site.name, site.category, site.file, site.line);
    this.#sites.set(site, entry);
    return entry;
  }

  #markSite(type: number, name: string, category: string): SiteEntry {
    const key = `${type}\0${category}\0${name}`;
    let entry = this.#markSites.get(key);
    if (entry === undefined) {
      entry = this.#newSite(type, name, category, undefined, undefined);
      this.#markSites.set(key, entry);
    }
    return entry;
  }

  #newSite(
    type: number,
    name: string,
    category: string,
    file: string | undefined,
    line: number | undefined,
  ): SiteEntry {
    let categoryEntry = this.#categories.get(category);
    if (categoryEntry === undefined) {
      categoryEntry = { index: this.#categories.size, name: encoder.encode(category) };
      this.#categories.set(category, categoryEntry);
    }
    return {
      index: this.#siteCount++,
      type,
      category: categoryEntry,
      name: encoder.encode(name),
      file: file === undefined ? undefined : encoder.encode(file),
      line,
      located: file !== undefined || line !== undefined,
    };
  }

  #threadTrack(tid: number): ThreadTrack {
    let track = this.#threads[tid];
    if (track === undefined) {
      track = new ThreadTrack(++this.#uuids);
      this.#threads[tid] = track;
    }
    return track;
  }

  /** A track descriptor's first fields: track `uuid`, under process `pid`'s track. */
  #trackUnder(uuid: number, pid: number): ProtoWriter {
    return new ProtoWriter()
      .varint(TRACK.uuid, uuid)
      .varint(TRACK.parentUuid, this.#processUuids.get(pid) ?? this.#processUuid);
  }

  /** Writes the packet of a track descriptor. */
  #describeTrack(descriptor: ProtoWriter): void {
    this.#packet(new ProtoWriter().message(PACKET.trackDescriptor, descriptor));
  }

  #counterTrack(pid: number, name: string, series: string): number {
    const key = `${pid}\0${name}\0${series}`;
    let uuid = this.#counterTracks.get(key);
    if (uuid === undefined) {
      uuid = ++this.#uuids;
      this.#counterTracks.set(key, uuid);
      this.#describeTrack(
        this.#trackUnder(uuid, pid)
          .string(TRACK.name, `${name} ${series}`)
          .message(TRACK.counter, new ProtoWriter()),
      );
    }
    return uuid;
  }

  /**
   * Starts a sequence whose events go to `track` by default (0: none): its
   * interned data and defaults start afresh, and its clock counts ns in
   * deltas from 0, the trace's time zero.
   */
  #newSequence(owner: ThreadTrack | undefined): Sequence {
    const track = owner?.uuid ?? 0;
    const sequence = new Sequence(++this.#sequenceIds, track);
    if (owner !== undefined) {
      owner.count++;
      owner.any ??= sequence;
    }
    const defaults = new ProtoWriter().varint(DEFAULTS.timestampClockId, INCREMENTAL_CLOCK);
    if (track !== 0) {
      defaults.message(
        DEFAULTS.trackEventDefaults,
        new ProtoWriter().varint(TRACK_EVENT_DEFAULTS.trackUuid, track),
      );
    }
    this.#packet(
      new ProtoWriter()
        .varint(PACKET.sequenceId, sequence.id)
        .varint(PACKET.sequenceFlags, SEQ_INCREMENTAL_STATE_CLEARED)
        .varint(PACKET.firstPacketOnSequence, true)
        .message(PACKET.defaults, defaults)
        .message(
          PACKET.clockSnapshot,
          new ProtoWriter()
            .message(
              CLOCK_SNAPSHOT.clocks,
              new ProtoWriter().varint(CLOCK.id, ABSOLUTE_CLOCK).varint(CLOCK.timestamp, 0),
            )
            .message(
              CLOCK_SNAPSHOT.clocks,
              new ProtoWriter()
                .varint(CLOCK.id, INCREMENTAL_CLOCK)
                .varint(CLOCK.timestamp, 0)
                .varint(CLOCK.incremental, true),
            ),
        ),
    );
    return sequence;
  }

  /** Writes one packet built off the hot path. */
  #packet(packet: ProtoWriter): void {
    const bytes = new ProtoWriter().message(TRACE_PACKET, packet).finish();
    this.#reserve(bytes.length).set(bytes, this.#at);
    this.#at += bytes.length;
    if (this.#at >= this.#chunkSize) this.#flush();
  }

  /** The buffer, with room for `bytes` more at `#at`. */
  #reserve(bytes: number): Uint8Array {
    if (this.#at + bytes > this.#buffer.length) {
      const bigger = new Uint8Array(this.#at + bytes + this.#chunkSize);
      bigger.set(this.#buffer.subarray(0, this.#at));
      this.#buffer = bigger;
    }
    return this.#buffer;
  }

  #newBuffer(): Uint8Array {
    return new Uint8Array(this.#chunkSize + 4096);
  }

  #flush(): void {
    if (this.#at === 0) return;
    const chunk = this.#buffer.subarray(0, this.#at);
    this.#buffer = this.#newBuffer();
    this.#at = 0;
    // Not awaited: a failure also rejects `ready()` and `close()`.
    this.#writer.write(chunk).catch(noop);
  }
}

/**
 * The flow fields of a slice's arrows to and from other processes: the
 * arrow to each child it started (`flow_ids`, which the child's first
 * slice continues), and the one from the slice that started its process
 * (`terminating_flow_ids`, which ends it there).
 */
function processArrows(slice: Slice): Uint8Array {
  const ids = slice.childFlows ?? [];
  const out = new Uint8Array((ids.length + 1) * 11);
  let at = 0;
  for (const id of ids) {
    out[at++] = FLOW_IDS[0];
    out[at++] = FLOW_IDS[1];
    at = writeVarint(out, at, id);
  }
  if (slice.parentFlow) {
    out[at++] = TERMINATING_FLOW_IDS[0];
    out[at++] = TERMINATING_FLOW_IDS[1];
    at = writeVarint(out, at, slice.parentFlow);
  }
  return out.subarray(0, at);
}

/**
 * Microseconds to whole nanoseconds, as the JSON trace's three decimals
 * hold them.
 *
 * @throws {RangeError} if `us` is NaN or infinite.
 */
function nanoseconds(us: number): number {
  const ns = Math.round(us * 1000);
  if (!Number.isFinite(ns)) throw new RangeError(`a slice's time is not finite: ${us} µs`);
  return ns;
}

/** The bytes of a varint, for the small values of the hot path. */
function varintLength(n: number): number {
  if (n < 0x80) return 1;
  if (n < 0x4000) return 2;
  if (n < 0x200000) return 3;
  if (n < 0x10000000) return 4;
  let size = 5;
  for (let limit = 0x800000000; n >= limit && size < 10; limit *= 128) size++;
  return size;
}

/**
 * The bytes of a timestamp field's value: a varint, or ten bytes for a
 * negative absolute time (a stream that began before its own `t0`).
 */
function timeLength(ns: number): number {
  return ns < 0 ? 10 : varintLength(ns);
}

function writeTime(out: Uint8Array, at: number, ns: number): number {
  if (ns >= 0) return writeVarint(out, at, ns);
  let big = BigInt.asUintN(64, BigInt(ns));
  for (let i = 0; i < 9; i++) {
    out[at++] = Number(big & 0x7fn) | 0x80;
    big >>= 7n;
  }
  out[at++] = Number(big);
  return at;
}

/**
 * A slice's or instant's args as `TrackEvent.debug_annotations` fields,
 * names interned on `sequence` (those new to it are added to `added`).
 * Nested objects and arrays become dict entries and array values; a `null`
 * is left out, as the trace processor leaves it out of a JSON trace.
 */
function debugAnnotations(
  sequence: Sequence,
  args: Readonly<Record<string, JsonValue>>,
  added: string[],
): Uint8Array {
  const out = new ProtoWriter();
  for (const [key, value] of Object.entries(args)) {
    if (value === null) continue;
    let iid = sequence.annotationNames.get(key);
    if (iid === undefined) {
      iid = sequence.annotationNames.size + 1;
      sequence.annotationNames.set(key, iid);
      added.push(key);
    }
    out.message(
      EVENT.debugAnnotations,
      annotationValue(new ProtoWriter().varint(ANNOTATION.nameIid, iid), value),
    );
  }
  return out.finish().slice();
}

function annotationValue(annotation: ProtoWriter, value: JsonValue): ProtoWriter {
  if (typeof value === "boolean") return annotation.varint(ANNOTATION.bool, value);
  if (typeof value === "string") return annotation.string(ANNOTATION.string, value);
  if (typeof value === "number") {
    return Number.isSafeInteger(value)
      ? annotation.int64(ANNOTATION.int, value)
      : annotation.double(ANNOTATION.double, value);
  }
  if (Array.isArray(value)) {
    for (const item of value) {
      if (item !== null) {
        annotation.message(ANNOTATION.arrayValues, annotationValue(new ProtoWriter(), item));
      }
    }
    return annotation;
  }
  if (value !== null) {
    for (const [key, item] of Object.entries(value)) {
      if (item === null) continue;
      annotation.message(
        ANNOTATION.dictEntries,
        annotationValue(new ProtoWriter().string(ANNOTATION.name, key), item),
      );
    }
  }
  return annotation;
}

/** The interned data entering `names` (just added to `sequence`) as debug annotation names. */
function internedNames(sequence: Sequence, names: string[]): Uint8Array {
  const data = new ProtoWriter();
  for (const name of names) {
    data.message(
      INTERNED.annotationNames,
      new ProtoWriter().varint(ENTRY.iid, sequence.annotationNames.get(name)!).string(
        ENTRY.name,
        name,
      ),
    );
  }
  return data.finish();
}

/**
 * Writes an interned entry (`EventName`, `EventCategory`: `{iid, name}`) as
 * field `field` of `InternedData` at `at`; returns the index after it.
 */
function writeEntry(
  out: Uint8Array,
  at: number,
  field: number,
  iid: number,
  nameField: number,
  name: Uint8Array,
): number {
  out[at++] = (field << 3) | 2;
  at = writeVarint(out, at, 1 + varintLength(iid) + 1 + varintLength(name.length) + name.length);
  out[at++] = (ENTRY.iid << 3) | 0;
  at = writeVarint(out, at, iid);
  out[at++] = (nameField << 3) | 2;
  at = writeVarint(out, at, name.length);
  out.set(name, at);
  return at + name.length;
}
