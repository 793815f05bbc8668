/**
 * The frame-state machine: turns protocol records into finished slices.
 *
 * @module
 */

import {
  type BatchRecord,
  type EndRecord,
  ExtOp,
  type HelloRecord,
  type LimitRecord,
  type MarkRecord,
  Op,
  PROTOCOL_VERSION,
  ProtocolError,
  type ProtocolRecord,
  type RuntimeRecord,
  type ThreadRecord,
} from "./protocol.ts";
import { BatchCursor } from "./batch.ts";
import { FrameTable } from "./_frame_table.ts";
import { ExceptionTracker, type FrameEnd, ThreadExceptions } from "./exceptions.ts";
import { EVENT_FIELDS, EventBatch } from "./packed.ts";
import { SourceLines } from "./source_lines.ts";
import { namedValues } from "./values.ts";
import { CpuCounters, GC_CATEGORY, gcArgs, gcSliceName } from "./runtime.ts";
import {
  isTaskMark,
  type Task,
  TASK_MARKS,
  type TaskCreator,
  taskEndings,
  TaskTracker,
} from "./tasks.ts";
import type {
  ProcessInfo,
  RecordingLimit,
  Slice,
  SliceArgs,
  SliceSite,
  ThreadInfo,
  TraceSink,
  TraceSummary,
} from "./trace_model.ts";

/** Options of {@linkcode FrameStateMachine}. */
export interface FrameStateMachineOptions {
  /**
   * Called with each warning: a stream cut short, events that refer to
   * undefined code, events the collector dropped.
   *
   * @default {undefined} (warnings are dropped)
   */
  onWarning?: (message: string) => void;
  /**
   * The deepest slices to write, counted on their thread's stack at the
   * time: the outermost recorded frame is depth 1, and a C call is a level
   * like any other. Deeper slices are tracked, so that everything above
   * them stays right, but not sent to the sink; a flow arrow is sent only
   * between two slices that both are. The collector's flushes are always
   * sent. Must be a positive integer or `Infinity`.
   *
   * @default {Infinity}
   */
  maxDepth?: number;
  /**
   * Trace time zero, in ns of the stream's clock: the machine subtracts it
   * from every time. Several streams drawn on one time axis (the processes
   * of a run) share one.
   *
   * @default {the hello's `t0`}
   */
  origin?: number;
  /**
   * Where thread and flow ids come from. Several machines that write into
   * one sink share one source, so that no two of their threads or flows
   * get the same id.
   *
   * @default {the machine's own: each counts from 1}
   */
  ids?: TraceIds;
  /**
   * Told of each `spawn` event (protocol 4): the process started a child,
   * whose `hello.parent` will name the event's `token`. Returns the flow id
   * of the arrow to the child's first slice, which then leaves the
   * spawner's slice (its {@linkcode Slice.childFlows}), or 0 for none.
   *
   * @default {undefined} (spawns are counted, and draw no arrow)
   */
  spawnFlow?: (token: number) => number;
  /**
   * The flow id of the arrow from the slice that started this process (see
   * `spawnFlow`): the stream's first slice gets it as its
   * {@linkcode Slice.parentFlow}. 0 for none.
   *
   * @default {0}
   */
  parentFlow?: number;
}

/**
 * The sources of thread and flow ids: each call returns an id no earlier
 * call returned, from 1 up.
 */
export interface TraceIds {
  /** A new thread id. */
  thread(): number;
  /** A new flow id. */
  flow(): number;
}

/**
 * Ids counted from 1, one count for threads and one for flows: share one
 * between machines that write into one sink.
 *
 * @example
 * ```ts
 * import { countingIds } from "@panopticon/panopticon";
 * import assert from "node:assert/strict";
 *
 * const ids = countingIds();
 * assert.deepEqual([ids.thread(), ids.thread(), ids.flow()], [1, 2, 1]);
 * ```
 */
export function countingIds(): TraceIds {
  let threads = 0;
  let flows = 0;
  return { thread: () => ++threads, flow: () => ++flows };
}

/** A slice site with what the machine needs to know about it. */
class Site implements SliceSite {
  constructor(
    readonly name: string,
    readonly category: string,
    /** Whether slices of this site are joined by flows (generator-like code). */
    readonly flows: boolean,
    readonly file?: string,
    readonly line?: number,
    /** The collector's own code: followed on the stack, never shown. */
    readonly hidden = false,
  ) {}
}

/**
 * Every machine has a flush site of its own, for a writer may render a site
 * once with its process: this one only fills new entries.
 */
const NO_SITE = new Site("", "", false);
/** The category of the instants of `--lines` (op 19). */
export const LINE_CATEGORY = "line";
const UNBALANCED: SliceArgs = Object.freeze({ unbalanced: true });
const UNFINISHED: SliceArgs = Object.freeze({ unfinished: true });
// Spans are entries of their own; their ids are kept apart from frame ids
// (never negative) by a minus sign.
const spanFrame = (span: number) => -span;

/**
 * A frame instance or a C call on a thread's stack. A suspended instance
 * leaves the stack for the process-wide registry and keeps its last slice
 * there ("held") until it is known whether another slice follows: only then
 * can the slice say whether a flow leaves it.
 *
 * Entries are recycled: a thread's stack keeps the entries of returned
 * frames and refills them for the next calls, so that a call, the most
 * common event, allocates nothing. A suspension takes its entry off the
 * stack; a spare one fills the slot (see `FrameStateMachine.#spare`).
 */
class Entry {
  /** Python events: the wire frame id; C calls: -1. */
  frame = 0;
  site: Site = NO_SITE;
  /** When the current slice began, in ns. */
  start = 0;
  /** Its thread's CPU time then, in ns (`--cpu-time`); -1 when unknown. */
  threadStart = -1;
  /** Whether this is a C call. */
  c = false;
  /**
   * Whether the slice is left out: the collector's own frames, and the C
   * calls they make directly.
   */
  hidden = false;
  /** A span's own arguments; `undefined` for frames and C calls. */
  args: SliceArgs | undefined = undefined;
  /**
   * The current slice's depth among the shown slices of its thread's stack,
   * 1 for the outermost; a hidden entry has its parent's.
   */
  depth = 0;
  /** The flow id of the instance's current chain of slices; 0 before its first flow. */
  flow = 0;
  /** Whether a flow arrives at the current slice from the previous one. */
  flowIn = false;
  heldTid = 0;
  heldStart = 0;
  heldEnd = 0;
  heldThreadStart = -1;
  heldThreadEnd = -1;
  heldDepth = 0;
  heldFlowIn = false;
  /**
   * The asyncio task this generator-like frame runs in (src/tasks.ts): its
   * slices carry the task's name. Inherited from the frame that calls it.
   */
  task: Task | undefined = undefined;
  /** Whether this is the task's own coroutine frame, whose slices are its steps. */
  taskTop = false;
  /** The held slice's values (`--args`, `--returns`), if any. */
  heldArgs: SliceArgs | undefined = undefined;
  /**
   * The flow ids of the arrows to the child processes started inside the
   * current slice (protocol 4), or undefined: nearly always.
   */
  childFlows: number[] | undefined = undefined;
  /** The flow id of the arrow from the parent process, on the stream's first slice; else 0. */
  parentFlow = 0;
  heldChildFlows: number[] | undefined = undefined;
  heldParentFlow = 0;
}

/** A thread: its dense id, names, and its stack of open entries. */
class ThreadState {
  /** Whether a `thread` record has named it. */
  named = false;
  /** Whether the sink has heard of it under its current name. */
  announced = false;
  /**
   * The open entries are `stack[0]` to `stack[depth - 1]`; the slots above
   * hold recycled entries (or nothing) for the next calls.
   */
  readonly stack: (Entry | undefined)[] = [];
  depth = 0;
  /** Its exceptions in flight and handlers in progress, once it has had any. */
  exceptions: ThreadExceptions | undefined = undefined;
  /**
   * Its CPU time at its latest event that carried one (`--cpu-time`), in
   * ns; -1 before. Slices take their thread times from it: a slice closed
   * without an event of its own (unbalanced, unfinished) ends at it.
   */
  threadTime = -1;

  constructor(
    readonly tid: number,
    /** Its id on the wire: the Python ident, or the collector's serial number. */
    readonly id: number,
    public name: string,
    public nativeId: number | null,
    /** The Python ident, once known (with serial ids, from a `thread` record). */
    public ident: number | null,
  ) {}
}

/**
 * The frame-state machine. Feed it records in stream order with
 * {@linkcode FrameStateMachine.push}, then call
 * {@linkcode FrameStateMachine.end}; it sends threads and slices to a
 * {@linkcode TraceSink} as they become known.
 *
 * What it keeps: per-thread stacks keyed by the thread's id on the wire,
 * its ident or, with `hello.thread_ids` `"serial"` (protocol 4), the
 * collector's serial number (threads get dense ids in order of first
 * appearance, the hello's main thread first), and one
 * process-wide registry of suspended frame instances keyed by frame id,
 * because a generator suspended on one thread may resume on another. Memory
 * grows with stack depth, live threads and suspended frames, never with the
 * number of events: slices are emitted as they close.
 *
 * Semantics follow `docs/protocol.md`: `call` starts a new instance (an
 * instance still registered under its id is retired first); `resume`
 * continues a registered instance, or starts one whose beginning was not
 * recorded; `suspend` closes the slice and registers the instance;
 * `return` and `unwind` close it for good. An end for a frame not open on
 * its thread is ignored; one for a frame below the innermost closes the
 * frames above it first (`args.unbalanced`). At the end, whatever is still
 * open is closed at the last timestamp of the stream (`args.unfinished`).
 * A `limit` record (protocol 4) marks where recording stopped with an
 * instant on its thread, and leaves what is open as it is. A `spawn`
 * event (protocol 4) gives the innermost shown slice open on its thread the
 * flow id of the arrow to the child it started (see
 * {@linkcode FrameStateMachineOptions.spawnFlow}).
 *
 * Slices of generators, coroutines and async generators that continue one
 * another share the instance's flow id: a flow leaves every slice that is
 * followed by another and arrives at every slice that follows one.
 *
 * @example Converting records to slices
 * ```ts
 * import { FrameStateMachine, type Slice, type TraceSink } from "@panopticon/panopticon";
 * import assert from "node:assert/strict";
 *
 * const slices: string[] = [];
 * const sink: TraceSink = {
 *   process() {},
 *   thread() {},
 *   slice: (slice: Slice) => slices.push(`${slice.site.name} ${slice.start}+${slice.duration}`),
 *   finish() {},
 * };
 * const machine = new FrameStateMachine(sink);
 * machine.push({ kind: "hello", protocol: 2, pid: 7, python: "3.12.1", engine: "monitoring", t0: 1000, main_thread: 1, argv: ["a.py"] });
 * machine.push({ kind: "code", id: 1, module: "__main__", qualname: "main", file: "a.py", line: 1, type: "function" });
 * machine.push({ kind: "events", events: [[0, 1, 1000, 50, 1], [2, 1, 3500, 50, 1]] });
 * const summary = machine.end();
 * assert.deepEqual(slices, ["main 0+2.5"]);
 * assert.equal(summary.complete, false);
 * ```
 */
export class FrameStateMachine {
  readonly #sink: TraceSink;
  readonly #onWarning: ((message: string) => void) | undefined;
  readonly #maxDepth: number;
  /** The current batch, decoded; reused from batch to batch. */
  readonly #batch = new EventBatch();

  #hello: HelloRecord | undefined;
  #helloLine = 0;
  #endRecord: EndRecord | undefined;
  #ended = false;
  #warnedAfterEnd = false;
  /** Records pushed so far; the default line number. */
  #records = 0;
  /** The line of the record being handled, for warnings. */
  #line = 0;

  #t0 = 0;
  #lastTs = 0;
  #codes: (Site | undefined)[] = [];
  #cfuncs: (Site | undefined)[] = [];
  #marks: (MarkRecord | undefined)[] = [];
  /** The site of each span's mark, made when the span first opens. */
  #spanSites: (Site | undefined)[] = [];
  /** The threads by their id on the wire, of the current thread when an ident was reused. */
  #threads = new Map<number, ThreadState>();
  /** Whether thread ids are the collector's serial numbers (`hello.thread_ids`, protocol 4). */
  #serial = false;
  /** Whether events carry their thread's CPU time (`hello.thread_time`, `--cpu-time`). */
  #threadTime = false;
  #limited: RecordingLimit | undefined;
  /** When recording stopped at `--max-events`, in the stream's nanoseconds. */
  #limitNs = Infinity;
  /** The threads of this stream. */
  #threadCount = 0;
  readonly #ids: TraceIds;
  readonly #origin: number | undefined;
  readonly #spawnFlow: ((token: number) => number) | undefined;
  /** The flow from the parent process, until the first shown slice takes it. */
  #parentFlow: number;
  readonly #flushSite = new Site("panopticon.flush", "panopticon", false);
  #cacheIdent = NaN;
  #cacheThread: ThreadState | undefined;
  /** The suspended frame instances, by frame id, in the order they were suspended. */
  #suspended = new FrameTable<Entry>();
  /**
   * Entries that nothing uses, for the next calls: a suspended frame takes
   * its entry off the stack, and one that resumes brings its own back, so
   * without them every suspension would allocate an entry, which lives
   * long enough to be promoted to the old generation (measured: the heap
   * peak of a conversion then grew with the stream, 13 MB at 5 million
   * events and 21 MB at 10 million).
   */
  #spare: Entry[] = [];
  /** The slice sites of garbage collections, by generation. */
  #gcSites: (Site | undefined)[] = [];
  #cpu: CpuCounters | undefined;
  readonly #tasks: TaskTracker;
  /** Exceptions (ops 16 and 17): their records, and the instants they become. */
  readonly #exceptions = new ExceptionTracker(
    (tid, depth, ts, site, flow, flowIn, flowOut, args) => {
      if (depth > this.#maxDepth) {
        this.#omitted++;
        return;
      }
      this.#emit(tid, site as Site, ts, ts, flow, flowIn, flowOut, args, depth, undefined, 0);
    },
    () => this.#ids.flow(),
  );
  /** The `values` records not used yet, by id (op 18): each is used by one event. */
  readonly #values = new Map<number, SliceArgs>();
  /** The source text of recorded lines (op 19), made at the `hello`. */
  #source: SourceLines | undefined;
  /**
   * The site and args of each recorded line, by file and line: one object
   * each, which the writers render once.
   */
  readonly #lineSites = new Map<string, { site: Site; args: SliceArgs }>();

  #events = 0;
  #slices = 0;
  #omitted = 0;
  #unfinished = 0;
  /** The one slice object handed to the sink, refilled for every slice. */
  #slice: Slice = {
    tid: 0,
    start: 0,
    duration: 0,
    site: NO_SITE,
    flow: 0,
    flowIn: false,
    flowOut: false,
    args: undefined,
    depth: 0,
    childFlows: undefined,
    parentFlow: 0,
    threadStart: undefined,
    threadDuration: undefined,
  };

  /**
   * Makes a machine that reports to `sink`.
   *
   * @throws {RangeError} if `maxDepth` is not a positive integer or `Infinity`.
   */
  constructor(sink: TraceSink, options: FrameStateMachineOptions = {}) {
    this.#sink = sink;
    this.#onWarning = options.onWarning;
    this.#maxDepth = checkMaxDepth(options.maxDepth);
    this.#ids = options.ids ?? countingIds();
    this.#origin = options.origin;
    this.#spawnFlow = options.spawnFlow;
    this.#parentFlow = options.parentFlow ?? 0;
    this.#tasks = new TaskTracker(sink);
  }

  /**
   * Handles one record. `line` is where it came from, for messages; it
   * defaults to the count of records pushed so far (right for a stream of
   * records without blank lines).
   *
   * @throws {ProtocolError} if the first record is not a `hello`, if the
   * stream's protocol is newer than {@linkcode PROTOCOL_VERSION}, on a
   * second `hello`, on `packed` or `marshal` events that do not unpack,
   * or on a `batch` frame that breaks the format, or on a `batch` or
   * `marshal` record without its frame (`payload`). A batch frame is
   * decoded as its events are handled, so it throws after the events
   * before the fault have been handled: the stream is broken, and the
   * conversion stops there.
   */
  push(record: ProtocolRecord, line?: number): void {
    if (this.#ended) throw new Error("FrameStateMachine.push() was called after end()");
    this.#records++;
    const at = line ?? this.#records;
    this.#line = at;
    if (this.#hello === undefined) {
      this.#start(record, at);
      return;
    }
    if (this.#endRecord !== undefined && !this.#warnedAfterEnd) {
      this.#warnedAfterEnd = true;
      this.#warn(`line ${at}: records follow the "end" record: they were converted anyway`);
    }
    switch (record.kind) {
      case "batch":
        if (this.#threadTime) this.#onTimedBatch(this.#payload(record, at), record, at);
        else this.#onBatch(this.#payload(record, at), record, at);
        break;
      case "events": {
        const batch = this.#batch;
        if (record.packed !== undefined) batch.setPacked(record.packed, at);
        else if (record.marshal !== undefined) batch.setMarshal(this.#payload(record, at), at);
        else batch.setEvents(record.events ?? []);
        if (this.#threadTime) this.#onTimedEvents(batch.values, batch.threadTimes, batch.length);
        else this.#onEvents(batch.values, batch.length);
        break;
      }
      case "limit":
        this.#onLimit(record);
        break;
      case "code": {
        const name = record.module === "__main__" || record.module === ""
          ? record.qualname
          : `${record.module}.${record.qualname}`;
        this.#codes[record.id] = new Site(
          name,
          record.type,
          record.type !== "function",
          record.file,
          record.line,
          record.hidden === true,
        );
        break;
      }
      case "mark":
        this.#marks[record.id] = record;
        this.#spanSites[record.id] = undefined;
        break;
      case "cfunc":
        this.#cfuncs[record.id] = new Site(record.name, "c_function", false);
        break;
      case "exception":
        this.#exceptions.define(record);
        break;
      case "values":
        // A parameter named as the slice's own args are is renamed (src/values.ts).
        this.#values.set(record.id, namedValues(record.values));
        break;
      case "thread":
        this.#onThread(record);
        break;
      case "flush": {
        const thread = this.#threadOf(record.thread);
        if (record.end > this.#lastTs) this.#lastTs = record.end;
        // Nested in the frame that was running when the collector flushed.
        const top = thread.depth > 0 ? thread.stack[thread.depth - 1]!.depth : 0;
        this.#emit(
          thread.tid,
          this.#flushSite,
          record.start,
          record.end,
          0,
          false,
          false,
          {
            events: record.events,
          },
          top + 1,
          undefined,
          0,
        );
        break;
      }
      case "gc":
      case "cpu":
        this.#onRuntime(record);
        break;
      case "end":
        this.#endRecord = record;
        if (record.ts > this.#lastTs) this.#lastTs = record.ts;
        break;
      case "hello":
        throw new ProtocolError(
          at,
          `expected one "hello" record, got a second one (the first was on line ${this.#helloLine})`,
        );
    }
  }

  /** The binary frame of a record: there must be one, whose length the record gives. */
  #payload(record: { kind: string; payload?: Uint8Array }, line: number): Uint8Array {
    if (record.payload === undefined) {
      throw new ProtocolError(
        line,
        `${
          record.kind === "batch" ? 'a "batch"' : 'an "events"'
        } record came without its binary frame ("payload")`,
      );
    }
    return record.payload;
  }

  /**
   * Ends the stream, complete or cut short: closes every slice still open
   * at the last timestamp seen (`args.unfinished`), emits the last slice
   * of every suspended frame, and finishes the sink.
   *
   * @throws {ProtocolError} if no `hello` record ever came.
   */
  end(): TraceSummary {
    if (this.#ended) throw new Error("FrameStateMachine.end() was called twice");
    const hello = this.#hello;
    if (hello === undefined) {
      throw new ProtocolError(
        this.#records + 1,
        'expected a "hello" record, got the end of the stream (the collector sent nothing)',
      );
    }
    this.#ended = true;
    const last = this.#lastTs;
    for (const thread of this.#threads.values()) {
      if (!thread.announced) this.#announce(thread);
      if (thread.exceptions !== undefined) this.#exceptions.finishThread(thread.exceptions);
      while (thread.depth > 0) {
        const entry = thread.stack[--thread.depth]!;
        // Counted as `slices` are: those written.
        if (!entry.hidden && entry.depth <= this.#maxDepth) this.#unfinished++;
        this.#close(thread, entry, last, UNFINISHED);
      }
    }
    for (const entry of this.#suspended.values()) this.#emitHeld(entry, false);
    this.#suspended.clear();
    for (const mark of this.#cpu?.finish() ?? []) this.#sink.mark?.(mark);
    this.#tasks.finish((last - this.#t0) / 1000);

    const end = this.#endRecord;
    if (end === undefined) {
      this.#warn(
        'the event stream ended without an "end" record (the program exited abruptly): ' +
          "open slices were closed at the last timestamp",
      );
    } else {
      if (end.dropped > 0) {
        this.#warn(
          `the collector dropped ${end.dropped} of the ${end.events} events it recorded ` +
            `(reason: ${end.reason}): the trace lacks them`,
        );
      }
      if (end.events - end.dropped !== this.#events) {
        this.#warn(
          `the collector sent ${end.events - end.dropped} events but ${this.#events} arrived`,
        );
      }
    }
    const summary: TraceSummary = {
      complete: end !== undefined,
      events: this.#events,
      recorded: end?.events,
      dropped: end?.dropped ?? 0,
      reason: end?.reason,
      slices: this.#slices,
      omittedSlices: this.#omitted,
      unfinished: this.#unfinished,
      threads: this.#threadCount,
      duration: (last - this.#t0) / 1000,
      pid: hello.pid,
      pythonVersion: hello.python,
      engine: hello.engine,
      protocol: hello.protocol,
      pythonMaxRss: end?.max_rss,
    };
    // Present only when the stream says: older streams summarise as they did.
    if (hello.collector !== undefined) summary.collector = hello.collector;
    if (hello.clock !== undefined) summary.clock = hello.clock;
    if (this.#limited !== undefined) summary.limited = this.#limited;
    const exceptions = this.#exceptions.counts;
    if (exceptions.raised > 0) {
      summary.exceptions = { ...exceptions };
      const swallowed = this.#exceptions.swallowed();
      if (swallowed.length > 0) summary.swallowedExceptions = swallowed;
    }
    this.#sink.finish(summary);
    return summary;
  }

  #start(record: ProtocolRecord, line: number): void {
    if (record.kind !== "hello") {
      throw new ProtocolError(line, `expected a "hello" record first, got "${record.kind}"`);
    }
    if (record.protocol > PROTOCOL_VERSION) {
      throw new ProtocolError(
        line,
        `the stream speaks protocol ${record.protocol} but this converter understands up to ` +
          `${PROTOCOL_VERSION}: upgrade panopticon`,
      );
    }
    if (record.protocol < 1) {
      throw new ProtocolError(
        line,
        `the stream claims protocol ${record.protocol}, which does not exist: expected 1 to ${PROTOCOL_VERSION}`,
      );
    }
    this.#hello = record;
    this.#helloLine = line;
    this.#source = new SourceLines(record.cwd);
    this.#t0 = this.#origin ?? record.t0;
    this.#lastTs = record.t0;
    this.#serial = record.thread_ids === "serial";
    this.#threadTime = record.thread_time === true;
    this.#tasks.endings = taskEndings(record.engine, record.collector);
    const process: ProcessInfo = {
      pid: record.pid,
      name: ["python", ...record.argv.map(quote)].join(" "),
      argv: record.argv,
      pythonVersion: record.python,
      engine: record.engine,
      protocol: record.protocol,
    };
    if (record.collector !== undefined) process.collector = record.collector;
    if (record.clock !== undefined) process.clock = record.clock;
    this.#sink.process(process);
    // The main thread is thread 1 from the start, but it is announced only
    // when first used or named, so that its usual `thread` record (which
    // follows the hello) names it rather than renaming it.
    this.#newThread(
      record.main_thread,
      "MainThread",
      null,
      this.#serial ? null : record.main_thread,
    );
  }

  /**
   * Recording stopped at `--max-events` (protocol 4): the moment is marked
   * on the thread that reached the limit, and the frames still open stay
   * open, as for a program that is still running, to close at the end.
   */
  #onLimit(record: LimitRecord): void {
    if (record.ts > this.#lastTs) this.#lastTs = record.ts;
    const thread = this.#threadOf(record.thread);
    const ts = (record.ts - this.#t0) / 1000;
    this.#limited ??= { ts, events: record.events };
    if (record.ts < this.#limitNs) this.#limitNs = record.ts;
    this.#sink.mark?.({
      kind: "instant",
      tid: thread.tid,
      ts,
      name: "recording stopped: --max-events reached",
      category: "panopticon",
      args: { events: record.events },
    });
    this.#warn(
      `recording stopped at ${(ts / 1e6).toFixed(3)} s after ${
        record.events.toLocaleString("en-US")
      } events (--max-events): the rest of the run is not in the trace`,
    );
  }

  /**
   * The hot loop of JSON, packed and marshal events: one pass over the
   * batch, five numbers per event. It allocates nothing but for frames
   * that suspend (see {@linkcode Entry}).
   *
   * Nothing follows the loop (see {@linkcode FrameStateMachine.#onBatch}).
   */
  #onEvents(values: Float64Array, count: number): void {
    this.#events += count;
    let thread = this.#cacheThread;
    const end = count * EVENT_FIELDS;
    for (let at = 0; at < end; at += EVENT_FIELDS) {
      const ts = values[at + 2]!;
      if (ts > this.#lastTs) this.#lastTs = ts;
      if (values[at + 1] !== this.#cacheIdent || thread === undefined) {
        thread = this.#cacheThread = this.#threadOf(this.#cacheIdent = values[at + 1]!);
      }
      this.#event(thread, values[at]!, ts, values[at + 3]!, values[at + 4]!);
    }
  }

  /**
   * The hot loop of native batches (protocol 4): the frame's events are
   * decoded and acted on in one pass, with no table of numbers between
   * (measured, decoding and this machine into a discarding sink: 28
   * million events a second, against 19 when the frame is decoded into an
   * {@linkcode EventBatch} first). A frame that breaks the format throws
   * where it breaks, after the events before it have been handled: the
   * conversion fails then anyway.
   *
   * Nothing follows the loop: V8 compiles a long loop while it runs (on-
   * stack replacement), before the code after it has ever run, and then
   * reuses that code for every frame, bailing out at the first field the
   * code after the loop touches (measured: about 500 deoptimisations in
   * the 750 frames of 10 million events, with marshal events too).
   */
  #onBatch(frame: Uint8Array, record: BatchRecord, line: number): void {
    const cursor = new BatchCursor(frame, record, line);
    // The count is checked by the cursor at the end of the frame.
    this.#events += record.events;
    let id = NaN;
    let thread: ThreadState | undefined;
    while (cursor.next()) {
      const ts = cursor.ts;
      if (ts > this.#lastTs) this.#lastTs = ts;
      if (cursor.thread !== id || thread === undefined) {
        id = cursor.thread;
        thread = this.#threadOf(id);
      }
      this.#event(thread, cursor.op, ts, cursor.id, cursor.ref);
    }
  }

  /**
   * {@linkcode FrameStateMachine.#onEvents} for a stream whose events carry
   * their thread's CPU time (`hello.thread_time`): a loop of its own, so
   * that the default one is not slowed by it.
   */
  #onTimedEvents(values: Float64Array, threadTimes: Float64Array, count: number): void {
    this.#events += count;
    let thread = this.#cacheThread;
    for (let i = 0, at = 0; i < count; i++, at += EVENT_FIELDS) {
      const ts = values[at + 2]!;
      if (ts > this.#lastTs) this.#lastTs = ts;
      if (values[at + 1] !== this.#cacheIdent || thread === undefined) {
        thread = this.#cacheThread = this.#threadOf(this.#cacheIdent = values[at + 1]!);
      }
      const threadTime = threadTimes[i]!;
      if (threadTime >= 0) thread.threadTime = threadTime;
      this.#event(thread, values[at]!, ts, values[at + 3]!, values[at + 4]!);
    }
  }

  /** {@linkcode FrameStateMachine.#onBatch} for events that carry their thread time. */
  #onTimedBatch(frame: Uint8Array, record: BatchRecord, line: number): void {
    const cursor = new BatchCursor(frame, record, line);
    this.#events += record.events;
    let id = NaN;
    let thread: ThreadState | undefined;
    while (cursor.next()) {
      const ts = cursor.ts;
      if (ts > this.#lastTs) this.#lastTs = ts;
      if (cursor.thread !== id || thread === undefined) {
        id = cursor.thread;
        thread = this.#threadOf(id);
      }
      if (cursor.threadTime >= 0) thread.threadTime = cursor.threadTime;
      this.#event(thread, cursor.op, ts, cursor.id, cursor.ref);
    }
  }

  /** One event on `thread`: `frame` is its frame or span id, `ref` its code, cfunc or mark id. */
  #event(thread: ThreadState, op: number, ts: number, frame: number, ref: number): void {
    switch (op) {
      case Op.Call: {
        if (this.#suspended.size !== 0) {
          const stale = this.#suspended.get(frame);
          if (stale !== undefined) {
            // The old instance was closed or collected without an event.
            this.#suspended.delete(frame);
            this.#emitHeld(stale, false);
            this.#spare.push(stale);
          }
        }
        this.#push(thread, frame, this.#code(ref), ts, false);
        break;
      }
      case Op.Resume:
        this.#resume(thread, ts, frame, ref);
        break;
      case Op.Return:
      case Op.Unwind:
        this.#leave(thread, ts, frame, op === Op.Unwind);
        break;
      case Op.Suspend:
        this.#suspend(thread, ts, frame);
        break;
      case Op.CCall:
        this.#push(thread, -1, this.#cfunc(ref), ts, true);
        break;
      case Op.CReturn:
      case Op.CRaise: {
        const top = thread.depth > 0 ? thread.stack[thread.depth - 1]! : undefined;
        if (top !== undefined && top.c) {
          thread.depth--;
          this.#close(thread, top, ts, undefined);
        }
        break;
      }
      default:
        if (op >= ExtOp.Raise) this.#onExtended(thread, op, ts, frame, ref);
        else this.#onMarkEvent(thread, op, ts, frame, ref);
    }
  }

  /**
   * Exceptions, values and lines (ops 16 to 21), about the innermost open Python
   * frame of `thread`: see {@linkcode ExceptionTracker}.
   */
  #onExtended(thread: ThreadState, op: number, ts: number, frame: number, ref: number): void {
    let at = thread.depth - 1;
    while (at >= 0 && thread.stack[at]!.c) at--;
    const entry = at >= 0 ? thread.stack[at]! : undefined;
    const depth = (entry === undefined ? 0 : entry.depth) + 1;
    switch (op) {
      case ExtOp.Raise:
        this.#exceptions.raise(
          thread.exceptions ??= new ThreadExceptions(),
          thread.tid,
          ts,
          depth,
          frame,
          ref,
        );
        break;
      case ExtOp.Handled:
        if (entry === undefined) break;
        this.#exceptions.handled(
          thread.exceptions ??= new ThreadExceptions(),
          thread.tid,
          ts,
          at,
          depth,
          frame,
          entry.site.file ?? "",
          ref,
        );
        break;
      case ExtOp.Values: {
        const values = this.#values.get(ref);
        this.#values.delete(ref);
        if (entry === undefined || values === undefined) break;
        entry.args = entry.args === undefined ? values : { ...entry.args, ...values };
        break;
      }
      case ExtOp.Line: {
        if (entry === undefined) break;
        if (depth > this.#maxDepth) {
          this.#omitted++;
          break;
        }
        const line = this.#lineSite(entry.site.file ?? "", ref);
        this.#emit(thread.tid, line.site, ts, ts, 0, false, false, line.args, depth, undefined, 0);
        break;
      }
      case ExtOp.Await:
        if (entry?.taskTop) this.#tasks.awaits(entry.task!, frame);
        break;
      case ExtOp.Done: {
        // The task running here, if any: the innermost frame that runs in one.
        let running: Task | undefined;
        for (let i = thread.depth - 1; i >= 0 && running === undefined; i--) {
          running = thread.stack[i]!.task;
        }
        this.#tasks.done(frame, thread.tid, (ts - this.#t0) / 1000, running, this.#flowId);
        break;
      }
    }
  }

  /**
   * What a line instant shows (op 19): `line 12`, category `line`, with the
   * line's number and source text in its args. Looked up once per line.
   */
  #lineSite(file: string, line: number): { site: Site; args: SliceArgs } {
    const key = `${line}:${file}`;
    let made = this.#lineSites.get(key);
    if (made === undefined) {
      const text = this.#source?.text(file, line) ?? "";
      made = {
        site: new Site(`line ${line}`, LINE_CATEGORY, false, file, line),
        args: Object.freeze({ line, text }),
      };
      this.#lineSites.set(key, made);
    }
    return made;
  }

  /** The frame at `index` on `thread` (and those above it) ends: its handlers' verdicts. */
  #frameEnd(thread: ThreadState, index: number, how: FrameEnd): void {
    const state = thread.exceptions;
    if (state !== undefined && (state.pending.length > 0 || how === "closed")) {
      this.#exceptions.frameEnd(state, index, how);
    }
  }

  /** Opens a new frame instance or C call on top of `thread`'s stack, in a recycled entry. */
  #push(thread: ThreadState, frame: number, site: Site, ts: number, c: boolean): Entry {
    const depth = thread.depth++;
    const parent = depth > 0 ? thread.stack[depth - 1] : undefined;
    let entry = thread.stack[depth];
    if (entry === undefined) {
      entry = this.#spare.pop() ?? new Entry();
      thread.stack[depth] = entry;
    }
    // The collector's own frames are hidden, and so are the C calls they
    // make themselves (taking a time, appending a mark): not the Python
    // frames they call, such as a `traced` function's.
    const hidden = site.hidden || (c && parent !== undefined && parent.hidden && !parent.c);
    entry.frame = frame;
    entry.site = site;
    entry.start = ts;
    entry.threadStart = thread.threadTime;
    entry.c = c;
    entry.hidden = hidden;
    entry.args = undefined;
    entry.depth = (parent === undefined ? 0 : parent.depth) + (hidden ? 0 : 1);
    entry.flow = 0;
    entry.flowIn = false;
    entry.childFlows = undefined;
    entry.parentFlow = 0;
    // The stream's first shown slice: the arrow from the parent process arrives there.
    if (this.#parentFlow !== 0 && !hidden && entry.depth <= this.#maxDepth) {
      entry.parentFlow = this.#parentFlow;
      this.#parentFlow = 0;
    }
    // A coroutine (or generator) that a task's frame calls runs in that task.
    entry.task = site.flows && parent !== undefined ? parent.task : undefined;
    entry.taskTop = false;
    return entry;
  }

  /** Instants, counters, spans, and the end of recording on a thread (protocol 3). */
  #onMarkEvent(thread: ThreadState, op: number, ts: number, frame: number, ref: number): void {
    switch (op) {
      case Op.Instant:
      case Op.Counter: {
        const mark = this.#mark(ref);
        if (op === Op.Instant && isTaskMark(mark)) {
          this.#onTaskMark(thread, ts, mark);
          break;
        }
        const args = op === Op.Instant ? mark.args : numbersOf(mark.args);
        // A counter with no number to show has no track to set.
        if (args === undefined) break;
        this.#sink.mark?.({
          kind: op === Op.Instant ? "instant" : "counter",
          tid: op === Op.Instant ? thread.tid : 0,
          ts: (ts - this.#t0) / 1000,
          name: mark.name,
          category: mark.category,
          args,
        });
        break;
      }
      case Op.SpanBegin: {
        let site = this.#spanSites[ref];
        if (site === undefined) {
          site = new Site(this.#mark(ref).name, this.#mark(ref).category, false);
          this.#spanSites[ref] = site;
        }
        const args = this.#mark(ref).args;
        this.#openSpan(
          thread,
          spanFrame(frame),
          site,
          ts,
          Object.keys(args).length ? args : undefined,
        );
        break;
      }
      case Op.SpanEnd:
        this.#closeSpan(thread, ts, spanFrame(frame));
        break;
      case Op.Spawn:
        this.#onSpawn(thread, ref);
        break;
      case Op.Stop:
        // Recording stops on this thread (a `trace()` block ends, or the
        // program took the profiler over): what is open on it is closed now,
        // for no more of it will be seen.
        if (thread.exceptions !== undefined) this.#exceptions.finishThread(thread.exceptions);
        while (thread.depth > 0) {
          this.#close(thread, thread.stack[--thread.depth]!, ts, UNFINISHED);
        }
        break;
    }
  }

  /**
   * A `spawn` (protocol 4): the arrow to the child leaves the innermost
   * shown slice open on the thread, the spawner (the `posix.fork` or
   * `fork_exec` call, or what called it when that is hidden or too deep).
   * With nothing shown open, no arrow leaves.
   */
  #onSpawn(thread: ThreadState, token: number): void {
    const flow = this.#spawnFlow?.(token) ?? 0;
    if (flow === 0) return;
    for (let at = thread.depth - 1; at >= 0; at--) {
      const entry = thread.stack[at]!;
      if (entry.hidden || entry.depth > this.#maxDepth) continue;
      (entry.childFlows ??= []).push(flow);
      return;
    }
  }

  /**
   * Opens a span. It begins inside the collector's `__enter__`, whose hidden
   * frame (with the C calls it makes) is on top of the stack: the span goes
   * beneath them, where the program's `with` statement is, so that their
   * ends do not close it.
   */
  #openSpan(thread: ThreadState, frame: number, site: Site, ts: number, args?: SliceArgs): void {
    const stack = thread.stack;
    let at = thread.depth;
    while (at > 0 && stack[at - 1]!.hidden) at--;
    const entry = this.#push(thread, frame, site, ts, false);
    entry.args = args;
    if (at === thread.depth - 1) return;
    stack.splice(thread.depth - 1, 1);
    stack.splice(at, 0, entry);
    entry.depth = at > 0 ? stack[at - 1]!.depth + 1 : 1;
    for (let i = at + 1; i < thread.depth; i++) stack[i]!.depth = entry.depth;
  }

  /**
   * Closes a span, from inside the collector's `__exit__`: the hidden
   * entries above it stay open, for their ends are still to come. Anything
   * else above it was left open inside the span and closes with it.
   */
  #closeSpan(thread: ThreadState, ts: number, frame: number): void {
    const at = find(thread, frame);
    if (at < 0) return;
    const stack = thread.stack;
    let run = thread.depth;
    while (run > at + 1 && stack[run - 1]!.hidden) run--;
    if (run !== at + 1) {
      this.#leave(thread, ts, frame);
      return;
    }
    const entry = stack[at]!;
    stack.splice(at, 1);
    thread.depth--;
    // The slot freed above the open entries gets the span's entry, for reuse.
    stack.splice(thread.depth, 0, entry);
    for (let i = at; i < thread.depth; i++) stack[i]!.depth = at > 0 ? stack[at - 1]!.depth : 0;
    this.#close(thread, entry, ts, undefined);
  }

  #mark(ref: number): MarkRecord {
    let mark = this.#marks[ref];
    if (mark === undefined) {
      mark = { kind: "mark", id: ref, name: `<mark ${ref}>`, category: "mark", args: {} };
      this.#marks[ref] = mark;
      this.#warn(
        `line ${this.#line}: an event refers to mark ${ref}, which no "mark" record defined: ` +
          `it is named "${mark.name}"`,
      );
    }
    return mark;
  }

  #resume(thread: ThreadState, ts: number, frame: number, ref: number): void {
    const entry = this.#suspended.get(frame);
    if (entry === undefined) {
      // Its start was not recorded: a new instance with no flow arriving.
      this.#push(thread, frame, this.#code(ref), ts, false);
      return;
    }
    this.#suspended.delete(frame);
    const parent = thread.depth > 0 ? thread.stack[thread.depth - 1]! : undefined;
    const depth = (parent === undefined ? 0 : parent.depth) + (entry.hidden ? 0 : 1);
    // A flow joins two slices only if both are written.
    const link = entry.site.flows && entry.heldDepth <= this.#maxDepth &&
      depth <= this.#maxDepth;
    if (link && entry.flow === 0) entry.flow = this.#ids.flow();
    this.#emitHeld(entry, link);
    // A chain broken by an omitted slice starts afresh under a new flow id.
    if (!link) entry.flow = 0;
    entry.start = ts;
    entry.threadStart = thread.threadTime;
    entry.depth = depth;
    entry.flowIn = link;
    const spare = thread.stack[thread.depth];
    if (spare !== undefined) this.#spare.push(spare);
    thread.stack[thread.depth++] = entry;
    // What it awaited completed: the arrows arrive a nanosecond into this slice.
    if (entry.taskTop) this.#tasks.resumed(entry.task!, thread.tid, (ts - this.#t0) / 1000 + 0.001);
  }

  /** `return` or `unwind`: the instance ends and its id is retired. */
  #leave(thread: ThreadState, ts: number, frame: number, unwind = false): void {
    const at = find(thread, frame);
    if (at < 0) return;
    if (thread.exceptions !== undefined) this.#frameEnd(thread, at, unwind ? "unwind" : "return");
    this.#closeAbove(thread, at, ts);
    thread.depth = at;
    const entry = thread.stack[at]!;
    this.#close(thread, entry, ts, undefined);
    if (entry.taskTop) {
      entry.taskTop = false;
      this.#tasks.end(entry.task!, (ts - this.#t0) / 1000, unwind ? "exception" : "result");
    }
  }

  #suspend(thread: ThreadState, ts: number, frame: number): void {
    const at = find(thread, frame);
    if (at < 0) return;
    if (thread.exceptions !== undefined) this.#frameEnd(thread, at, "return");
    this.#closeAbove(thread, at, ts);
    const entry = thread.stack[at]!;
    entry.heldArgs = entry.args;
    entry.args = undefined;
    // The entry now belongs to the registry: the slot gets a new one.
    thread.stack[at] = undefined;
    thread.depth = at;
    entry.heldTid = thread.tid;
    entry.heldStart = entry.start;
    entry.heldEnd = ts;
    entry.heldThreadStart = entry.threadStart;
    entry.heldThreadEnd = thread.threadTime;
    entry.heldDepth = entry.depth;
    entry.heldFlowIn = entry.flowIn;
    entry.heldChildFlows = entry.childFlows;
    entry.heldParentFlow = entry.parentFlow;
    entry.childFlows = undefined;
    entry.parentFlow = 0;
    const stale = this.#suspended.get(frame);
    if (stale !== undefined) {
      this.#emitHeld(stale, false);
      this.#spare.push(stale);
    }
    this.#suspended.set(frame, entry);
  }

  /** Closes the entries above index `at`: their ends were not recorded. */
  #closeAbove(thread: ThreadState, at: number, ts: number): void {
    while (thread.depth > at + 1) {
      this.#close(thread, thread.stack[--thread.depth]!, ts, UNBALANCED);
    }
  }

  /** Emits the current slice of an entry that has just left the stack, unless it is too deep. */
  #close(thread: ThreadState, entry: Entry, ts: number, args: SliceArgs | undefined): void {
    const tid = thread.tid;
    if (entry.hidden) return;
    if (entry.depth > this.#maxDepth) {
      this.#omitted++;
      return;
    }
    const task = entry.task?.args;
    const own = task === undefined
      ? entry.args
      : entry.args === undefined
      ? task
      : { ...task, ...entry.args };
    const all = own === undefined ? args : args === undefined ? own : { ...own, ...args };
    this.#emit(
      tid,
      entry.site,
      entry.start,
      ts,
      entry.flow,
      entry.flowIn,
      false,
      all,
      entry.depth,
      entry.childFlows,
      entry.parentFlow,
      entry.threadStart,
      thread.threadTime,
    );
    if (entry.taskTop) this.#taskStep(tid, entry, entry.start, ts);
  }

  /** Emits the slice a suspended instance holds; a flow leaves it if it is resumed. */
  #emitHeld(entry: Entry, flowOut: boolean): void {
    if (entry.hidden) return;
    if (entry.taskTop) this.#taskStep(entry.heldTid, entry, entry.heldStart, entry.heldEnd);
    if (entry.heldDepth > this.#maxDepth) {
      this.#omitted++;
      return;
    }
    this.#emit(
      entry.heldTid,
      entry.site,
      entry.heldStart,
      entry.heldEnd,
      entry.flow,
      entry.heldFlowIn,
      flowOut,
      entry.task === undefined
        ? entry.heldArgs
        : entry.heldArgs === undefined
        ? entry.task.args
        : { ...entry.task.args, ...entry.heldArgs },
      entry.heldDepth,
      entry.heldChildFlows,
      entry.heldParentFlow,
      entry.heldThreadStart,
      entry.heldThreadEnd,
    );
  }

  #emit(
    tid: number,
    site: Site,
    start: number,
    end: number,
    flow: number,
    flowIn: boolean,
    flowOut: boolean,
    args: SliceArgs | undefined,
    depth: number,
    childFlows: readonly number[] | undefined,
    parentFlow: number,
    threadStart = -1,
    threadEnd = -1,
  ): void {
    const slice = this.#slice;
    // A slice's thread time needs both ends: a slice of frames that began
    // before recording, or a gc or flush slice, has none.
    if (threadStart >= 0 && threadEnd >= 0) {
      slice.threadStart = threadStart / 1000;
      // At most the wall time: the collector reads the two clocks one after
      // the other, and a stall between the reads at the end (in a VM, time
      // stolen by the host counts as the thread's) adds to the thread time
      // alone (measured here: up to 100 µs on slices of 1 µs).
      const spent = Math.min(threadEnd - threadStart, end - start);
      slice.threadDuration = spent > 0 ? spent / 1000 : 0;
    } else {
      slice.threadStart = undefined;
      slice.threadDuration = undefined;
    }
    slice.tid = tid;
    slice.start = (start - this.#t0) / 1000;
    slice.duration = end > start ? (end - start) / 1000 : 0;
    slice.site = site;
    slice.flow = flowIn || flowOut ? flow : 0;
    slice.flowIn = flowIn;
    slice.flowOut = flowOut;
    slice.args = args;
    slice.depth = depth;
    slice.childFlows = childFlows;
    slice.parentFlow = parentFlow;
    this.#slices++;
    this.#sink.slice(slice);
  }

  /**
   * A `thread` record names the ident's current thread if that thread is
   * inside a frame (the monitoring engine sees a thread's first frames
   * before it can name it) or has not been named yet (the hello's main
   * thread, or one first seen through its events). Otherwise an earlier
   * thread with this ident has ended, and a new thread starts.
   */
  #onThread(record: ThreadRecord): void {
    const current = this.#threads.get(record.thread);
    // With serial ids (protocol 4) an id is never reused: a record for a
    // known one renames its thread.
    if (current !== undefined && (this.#serial || current.depth > 0 || !current.named)) {
      const ident = this.#serial ? record.ident ?? current.ident : current.ident;
      const changed = current.name !== record.name || current.nativeId !== record.native_id ||
        current.ident !== ident;
      current.name = record.name;
      current.nativeId = record.native_id;
      current.ident = ident;
      current.named = true;
      if (changed || !current.announced) this.#announce(current);
      return;
    }
    const ident = this.#serial ? record.ident ?? null : record.thread;
    const thread = this.#newThread(record.thread, record.name, record.native_id, ident);
    thread.named = true;
    this.#announce(thread);
    if (this.#cacheIdent === record.thread) this.#cacheThread = undefined;
  }

  #threadOf(id: number): ThreadState {
    const thread = this.#threads.get(id) ??
      this.#newThread(id, `Thread ${id}`, null, this.#serial ? null : id);
    if (!thread.announced) this.#announce(thread);
    return thread;
  }

  #newThread(
    id: number,
    name: string,
    nativeId: number | null,
    ident: number | null,
  ): ThreadState {
    this.#threadCount++;
    const thread = new ThreadState(this.#ids.thread(), id, name, nativeId, ident);
    this.#threads.set(id, thread);
    return thread;
  }

  #announce(thread: ThreadState): void {
    thread.announced = true;
    const info: ThreadInfo = {
      tid: thread.tid,
      name: thread.name,
      ident: thread.ident,
      nativeId: thread.nativeId,
    };
    if (this.#serial) info.serial = thread.id;
    this.#sink.thread(info);
  }

  #code(ref: number): Site {
    return this.#codes[ref] ?? this.#placeholder(ref, this.#codes, "code", "function");
  }

  #cfunc(ref: number): Site {
    return this.#cfuncs[ref] ?? this.#placeholder(ref, this.#cfuncs, "cfunc", "c_function");
  }

  /** A placeholder for an id no record defined: a collector bug, but not fatal. */
  #placeholder(
    ref: number,
    table: (Site | undefined)[],
    kind: string,
    category: string,
  ): Site {
    const site = new Site(`<${kind} ${ref}>`, category, false);
    table[ref] = site;
    this.#warn(
      `line ${this.#line}: an event refers to ${kind} ${ref}, which no "${kind}" record defined: ` +
        `its slices are named "${site.name}"`,
    );
    return site;
  }

  #warn(message: string): void {
    this.#onWarning?.(message);
  }

  // --- asyncio tasks (src/tasks.ts) ------------------------------------------

  /**
   * A task instant of the collector's: a task is created here (the arrow to
   * its first slice leaves the slice open now), or the innermost frame is a
   * task's coroutine starting its first step, or is unwinding because the
   * task was cancelled.
   */
  #onTaskMark(thread: ThreadState, ts: number, mark: MarkRecord): void {
    const task = this.#tasks.task(mark);
    const at = (ts - this.#t0) / 1000;
    const top = thread.depth > 0 ? thread.stack[thread.depth - 1]! : undefined;
    switch (mark.category) {
      case TASK_MARKS.created:
        if (task !== undefined) {
          this.#tasks.created(task, thread.tid, at, this.#ids.flow(), creatorOf(thread));
        }
        break;
      case TASK_MARKS.task:
        if (task === undefined || top === undefined || top.c) break;
        this.#tasks.started(
          task,
          mark.name,
          top.site.name,
          thread.tid,
          (top.start - this.#t0) / 1000,
          at,
        );
        top.task = task;
        top.taskTop = true;
        break;
      case TASK_MARKS.cancelled:
        if (top?.task !== undefined) top.task.cancelled = true;
        break;
    }
  }

  /** A new flow id, for the task tracker's arrows. */
  readonly #flowId = (): number => this.#ids.flow();

  /** A slice of a task's own coroutine frame: a step on the task's track. */
  #taskStep(tid: number, entry: Entry, start: number, end: number): void {
    this.#tasks.step(
      entry.task!,
      tid,
      (start - this.#t0) / 1000,
      end > start ? (end - start) / 1000 : 0,
    );
  }

  // --- The runtime's own records (src/runtime.ts) ---------------------------

  /**
   * A garbage collection is a slice of its own on the thread that ran it,
   * like a flush; a CPU sample sets each known thread's counter (a thread
   * not seen yet, whose `thread` record is still to come, is skipped).
   */
  #onRuntime(record: RuntimeRecord): void {
    // Past --max-events the runtime's work is not recorded either (a
    // collector may sample its CPU counters on).
    if ((record.kind === "gc" ? record.start : record.ts) > this.#limitNs) return;
    if (record.kind === "gc") {
      const thread = this.#threadOf(record.thread);
      if (record.end > this.#lastTs) this.#lastTs = record.end;
      const generation = record.generation;
      const site = this.#gcSites[generation] ??= new Site(
        gcSliceName(generation),
        GC_CATEGORY,
        false,
      );
      // Nested, as a flush is, in the frame open now: with the native
      // collector the record comes before the batch it happened in, so this
      // is the depth of the stack then, a hint for the writers.
      const top = thread.depth > 0 ? thread.stack[thread.depth - 1]!.depth : 0;
      this.#emit(
        thread.tid,
        site,
        record.start,
        record.end,
        0,
        false,
        false,
        gcArgs(record),
        top + 1,
        undefined,
        0,
      );
      return;
    }
    const counters = this.#cpu ??= new CpuCounters(this.#t0);
    if (record.ts > this.#lastTs) this.#lastTs = record.ts;
    for (const [id, cpu] of record.threads) {
      const thread = this.#threads.get(id);
      if (thread === undefined) continue;
      if (!thread.announced) this.#announce(thread);
      const mark = counters.sample(thread.tid, thread.name, record.ts, cpu);
      if (mark !== undefined) this.#sink.mark?.(mark);
    }
  }
}

/**
 * Returns a `maxDepth` option's value, `Infinity` if it is undefined.
 *
 * @throws {RangeError} if it is not a positive integer or `Infinity`.
 */
export function checkMaxDepth(maxDepth: number | undefined): number {
  const value = maxDepth ?? Infinity;
  if (!(value >= 1 && (Number.isInteger(value) || value === Infinity))) {
    throw new RangeError(`maxDepth must be a positive integer or Infinity, got ${String(value)}`);
  }
  return value;
}

/** The index of the open Python frame `frame` on `thread`'s stack, searched from the top; -1 if absent. */
function find(thread: ThreadState, frame: number): number {
  const stack = thread.stack;
  for (let i = thread.depth - 1; i >= 0; i--) {
    const entry = stack[i]!;
    if (entry.frame === frame && !entry.c) return i;
  }
  return -1;
}

/**
 * A counter's series: the arguments that are finite numbers, the only
 * values a counter track can show; `undefined` if there is none.
 */
function numbersOf(args: MarkRecord["args"]): Record<string, number> | undefined {
  let numbers: Record<string, number> | undefined;
  for (const [key, value] of Object.entries(args)) {
    if (typeof value === "number" && Number.isFinite(value)) (numbers ??= {})[key] = value;
  }
  return numbers;
}

/** Quotes a command-line argument the way a POSIX shell would need it. */
function quote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", `'\\''`)}'`;
}

/**
 * Who created a task: the innermost open Python frame of the creating
 * thread outside asyncio's own modules (`loop.create_task`, `gather`,
 * `TaskGroup.create_task` are asyncio's, and always the innermost), else
 * the innermost Python frame. A function's name and where its code starts:
 * the stream has no line numbers of calls.
 */
function creatorOf(thread: ThreadState): TaskCreator | undefined {
  let innermost: Site | undefined;
  for (let at = thread.depth - 1; at >= 0; at--) {
    const entry = thread.stack[at]!;
    if (entry.c || entry.hidden || entry.frame < 0) continue;
    innermost ??= entry.site;
    if (!entry.site.name.startsWith("asyncio.")) return creator(entry.site);
  }
  return innermost === undefined ? undefined : creator(innermost);
}

function creator(site: Site): TaskCreator {
  return site.file === undefined
    ? { name: site.name }
    : { name: site.name, at: `${site.file}:${site.line ?? 0}` };
}
