/**
 * The frame-state machine: turns protocol records into finished slices.
 *
 * @module
 */

import {
  type EndRecord,
  type HelloRecord,
  Op,
  PROTOCOL_VERSION,
  ProtocolError,
  type ProtocolEvent,
  type ProtocolRecord,
  type ThreadRecord,
} from "./protocol.ts";
import type { Slice, SliceArgs, SliceSite, TraceSink, TraceSummary } from "./trace_model.ts";

/** Options of {@linkcode FrameStateMachine}. */
export interface FrameStateMachineOptions {
  /**
   * Called with each warning: a stream cut short, events that refer to
   * undefined code, events the collector dropped.
   *
   * @default {undefined} (warnings are dropped)
   */
  onWarning?: (message: string) => void;
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
  ) {}
}

const FLUSH_SITE = new Site("panopticon.flush", "panopticon", false);
const UNBALANCED: SliceArgs = Object.freeze({ unbalanced: true });
const UNFINISHED: SliceArgs = Object.freeze({ unfinished: true });

/**
 * A frame instance or a C call on a thread's stack. A suspended instance
 * leaves the stack for the process-wide registry and keeps its last slice
 * there ("held") until it is known whether another slice follows: only then
 * can the slice say whether a flow leaves it.
 */
class Entry {
  /** Python events: the wire frame id; C calls: -1. */
  frame: number;
  site: Site;
  /** When the current slice began, in ns. */
  start: number;
  /** Whether this is a C call. */
  c: boolean;
  /** The instance's flow id, from a counter; 0 until its first resumption. */
  flow = 0;
  /** Whether the current slice continues an earlier slice of this instance. */
  continued = false;
  heldTid = 0;
  heldStart = 0;
  heldEnd = 0;
  heldContinued = false;

  constructor(frame: number, site: Site, start: number, c: boolean) {
    this.frame = frame;
    this.site = site;
    this.start = start;
    this.c = c;
  }
}

/** A thread: its dense id, names, and its stack of open entries. */
class ThreadState {
  /** Whether a `thread` record has named it. */
  named = false;
  /** Whether the sink has heard of it under its current name. */
  announced = false;
  readonly stack: Entry[] = [];

  constructor(
    readonly tid: number,
    readonly ident: number,
    public name: string,
    public nativeId: number | null,
  ) {}
}

/**
 * The frame-state machine. Feed it records in stream order with
 * {@linkcode FrameStateMachine.push}, then call
 * {@linkcode FrameStateMachine.end}; it sends threads and slices to a
 * {@linkcode TraceSink} as they become known.
 *
 * What it keeps: per-thread stacks keyed by thread ident (threads get dense
 * ids in order of first appearance, the hello's main thread first), and one
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
 * machine.push({ kind: "hello", protocol: 1, pid: 7, python: "3.12.1", engine: "monitoring", t0: 1000, main_thread: 1, argv: ["a.py"] });
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
  #threads = new Map<number, ThreadState>();
  #tids = 0;
  #cacheIdent = NaN;
  #cacheThread: ThreadState | undefined;
  #suspended = new Map<number, Entry>();
  #flows = 0;

  #events = 0;
  #slices = 0;
  #unfinished = 0;
  /** The one slice object handed to the sink, refilled for every slice. */
  #slice: Slice = {
    tid: 0,
    start: 0,
    duration: 0,
    site: FLUSH_SITE,
    flow: 0,
    flowIn: false,
    flowOut: false,
    args: undefined,
  };

  /** Makes a machine that reports to `sink`. */
  constructor(sink: TraceSink, options: FrameStateMachineOptions = {}) {
    this.#sink = sink;
    this.#onWarning = options.onWarning;
  }

  /**
   * Handles one record. `line` is where it came from, for messages; it
   * defaults to the count of records pushed so far (right for a stream of
   * records without blank lines).
   *
   * @throws {ProtocolError} if the first record is not a `hello`, if the
   * stream's protocol is newer than {@linkcode PROTOCOL_VERSION}, or on a
   * second `hello`.
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
      case "events":
        this.#onEvents(record.events);
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
        );
        break;
      }
      case "cfunc":
        this.#cfuncs[record.id] = new Site(record.name, "c_function", false);
        break;
      case "thread":
        this.#onThread(record);
        break;
      case "flush": {
        const thread = this.#threadOf(record.thread);
        if (record.end > this.#lastTs) this.#lastTs = record.end;
        this.#emit(thread.tid, FLUSH_SITE, record.start, record.end, 0, false, false, {
          events: record.events,
        });
        break;
      }
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
      const stack = thread.stack;
      for (let entry = stack.pop(); entry !== undefined; entry = stack.pop()) {
        this.#unfinished++;
        this.#close(thread.tid, entry, last, UNFINISHED);
      }
    }
    for (const entry of this.#suspended.values()) this.#emitHeld(entry, false);
    this.#suspended.clear();

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
      unfinished: this.#unfinished,
      threads: this.#tids,
      duration: (last - this.#t0) / 1000,
      pid: hello.pid,
      pythonVersion: hello.python,
      engine: hello.engine,
      protocol: hello.protocol,
    };
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
    this.#t0 = record.t0;
    this.#lastTs = record.t0;
    this.#sink.process({
      pid: record.pid,
      name: ["python", ...record.argv.map(quote)].join(" "),
      argv: record.argv,
      pythonVersion: record.python,
      engine: record.engine,
      protocol: record.protocol,
    });
    // The main thread is thread 1 from the start, but it is announced only
    // when first used or named, so that its usual `thread` record (which
    // follows the hello) names it rather than renaming it.
    this.#newThread(record.main_thread, "MainThread", null);
  }

  /** The hot loop: one pass over the batch, no allocation but for new frames. */
  #onEvents(events: readonly ProtocolEvent[]): void {
    this.#events += events.length;
    let ident = this.#cacheIdent;
    let thread = this.#cacheThread;
    let last = this.#lastTs;
    for (let i = 0; i < events.length; i++) {
      const event = events[i]!;
      const ts = event[2];
      if (ts > last) last = ts;
      if (event[1] !== ident || thread === undefined) {
        ident = event[1];
        thread = this.#threadOf(ident);
      }
      switch (event[0]) {
        case Op.Call: {
          const frame = event[3];
          if (this.#suspended.size !== 0) {
            const stale = this.#suspended.get(frame);
            if (stale !== undefined) {
              // The old instance was closed or collected without an event.
              this.#suspended.delete(frame);
              this.#emitHeld(stale, false);
            }
          }
          thread.stack.push(new Entry(frame, this.#code(event[4]), ts, false));
          break;
        }
        case Op.Resume:
          this.#resume(thread, ts, event[3], event[4]);
          break;
        case Op.Return:
        case Op.Unwind:
          this.#leave(thread, ts, event[3]);
          break;
        case Op.Suspend:
          this.#suspend(thread, ts, event[3]);
          break;
        case Op.CCall:
          thread.stack.push(new Entry(-1, this.#cfunc(event[4]), ts, true));
          break;
        case Op.CReturn:
        case Op.CRaise: {
          const stack = thread.stack;
          const top = stack[stack.length - 1];
          if (top !== undefined && top.c) {
            stack.pop();
            this.#close(thread.tid, top, ts, undefined);
          }
          break;
        }
      }
    }
    this.#cacheIdent = ident;
    this.#cacheThread = thread;
    this.#lastTs = last;
  }

  #resume(thread: ThreadState, ts: number, frame: number, ref: number): void {
    let entry = this.#suspended.get(frame);
    if (entry === undefined) {
      // Its start was not recorded: a new instance with no flow arriving.
      entry = new Entry(frame, this.#code(ref), ts, false);
    } else {
      this.#suspended.delete(frame);
      const flows = entry.site.flows;
      if (flows && entry.flow === 0) entry.flow = ++this.#flows;
      this.#emitHeld(entry, flows);
      entry.start = ts;
      entry.continued = true;
    }
    thread.stack.push(entry);
  }

  /** `return` or `unwind`: the instance ends and its id is retired. */
  #leave(thread: ThreadState, ts: number, frame: number): void {
    const at = find(thread.stack, frame);
    if (at < 0) return;
    this.#closeAbove(thread, at, ts);
    this.#close(thread.tid, thread.stack.pop()!, ts, undefined);
  }

  #suspend(thread: ThreadState, ts: number, frame: number): void {
    const at = find(thread.stack, frame);
    if (at < 0) return;
    this.#closeAbove(thread, at, ts);
    const entry = thread.stack.pop()!;
    entry.heldTid = thread.tid;
    entry.heldStart = entry.start;
    entry.heldEnd = ts;
    entry.heldContinued = entry.continued;
    const stale = this.#suspended.get(frame);
    if (stale !== undefined) this.#emitHeld(stale, false);
    this.#suspended.set(frame, entry);
  }

  /** Closes the entries above index `at`: their ends were not recorded. */
  #closeAbove(thread: ThreadState, at: number, ts: number): void {
    const stack = thread.stack;
    while (stack.length > at + 1) this.#close(thread.tid, stack.pop()!, ts, UNBALANCED);
  }

  #close(tid: number, entry: Entry, ts: number, args: SliceArgs | undefined): void {
    const site = entry.site;
    this.#emit(tid, site, entry.start, ts, entry.flow, site.flows && entry.continued, false, args);
  }

  /** Emits the slice a suspended instance holds; a flow leaves it if it is resumed. */
  #emitHeld(entry: Entry, flowOut: boolean): void {
    const site = entry.site;
    this.#emit(
      entry.heldTid,
      site,
      entry.heldStart,
      entry.heldEnd,
      entry.flow,
      site.flows && entry.heldContinued,
      flowOut,
      undefined,
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
  ): void {
    const slice = this.#slice;
    slice.tid = tid;
    slice.start = (start - this.#t0) / 1000;
    slice.duration = end > start ? (end - start) / 1000 : 0;
    slice.site = site;
    slice.flow = flowIn || flowOut ? flow : 0;
    slice.flowIn = flowIn;
    slice.flowOut = flowOut;
    slice.args = args;
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
    if (current !== undefined && (current.stack.length > 0 || !current.named)) {
      const changed = current.name !== record.name || current.nativeId !== record.native_id;
      current.name = record.name;
      current.nativeId = record.native_id;
      current.named = true;
      if (changed || !current.announced) this.#announce(current);
      return;
    }
    const thread = this.#newThread(record.thread, record.name, record.native_id);
    thread.named = true;
    this.#announce(thread);
    if (this.#cacheIdent === record.thread) this.#cacheThread = undefined;
  }

  #threadOf(ident: number): ThreadState {
    const thread = this.#threads.get(ident) ?? this.#newThread(ident, `Thread ${ident}`, null);
    if (!thread.announced) this.#announce(thread);
    return thread;
  }

  #newThread(ident: number, name: string, nativeId: number | null): ThreadState {
    const thread = new ThreadState(++this.#tids, ident, name, nativeId);
    this.#threads.set(ident, thread);
    return thread;
  }

  #announce(thread: ThreadState): void {
    thread.announced = true;
    this.#sink.thread({
      tid: thread.tid,
      name: thread.name,
      ident: thread.ident,
      nativeId: thread.nativeId,
    });
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
}

/** The index of the open Python frame `frame` on `stack`, searched from the top; -1 if absent. */
function find(stack: Entry[], frame: number): number {
  for (let i = stack.length - 1; i >= 0; i--) {
    const entry = stack[i]!;
    if (entry.frame === frame && !entry.c) return i;
  }
  return -1;
}

/** Quotes a command-line argument the way a POSIX shell would need it. */
function quote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", `'\\''`)}'`;
}
