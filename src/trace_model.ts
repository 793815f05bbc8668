/**
 * The trace model: what the frame-state machine produces and every trace
 * writer consumes. Times are microseconds since the hello's `t0`.
 *
 * @module
 */

import type { JsonValue, ParentRef } from "./protocol.ts";
import type { ExceptionCounts, SwallowedException } from "./exceptions.ts";

/**
 * What a slice shows. One site is shared by every slice of one code object,
 * one C function, or the collector's own flushes, so a writer can render it
 * once and reuse the result (compare sites by identity).
 */
export interface SliceSite {
  /** The slice name: `gen_text`, `asyncio.runners.run`, `print`. */
  readonly name: string;
  /**
   * The category: the code type (`function`, `generator`, `coroutine`,
   * `async_generator`), `c_function`, or `panopticon` for flushes.
   */
  readonly category: string;
  /** The Python source file; absent for C functions. */
  readonly file?: string;
  /** The code's first line; absent for C functions. */
  readonly line?: number;
}

/** Arguments a slice carries beyond its site's `file` and `line`: JSON values. */
export type SliceArgs = Readonly<Record<string, JsonValue>>;

/**
 * A marker on a thread's timeline (`panopticon.instant()`, or the
 * collector's own, such as a profiler that took over), or a counter's new
 * values (`panopticon.counter()`, `tid` 0: counters belong to the process).
 */
export interface Mark {
  /** `instant` or `counter`. */
  kind: "instant" | "counter";
  /** The dense thread id; 0 for a counter. */
  tid: number;
  /** When, in µs since trace time zero. */
  ts: number;
  /** The name on the timeline. */
  name: string;
  /** `mark` for the program's own, `panopticon` for the collector's. */
  category: string;
  /** Its arguments; for a counter, each series' value. */
  args: Readonly<Record<string, JsonValue>>;
  /**
   * The process it belongs to, when a sink hears of several (see
   * {@linkcode ThreadInfo.pid}).
   *
   * @default {the process announced last}
   */
  pid?: number;
}

/**
 * A finished slice.
 *
 * The frame-state machine reuses one object for every slice it emits, so a
 * sink must copy what it keeps: the fields are valid during the call only.
 */
export interface Slice {
  /** The dense thread id (1 is the main thread). */
  tid: number;
  /** When it began, in µs since trace time zero. */
  start: number;
  /** How long it lasted, in µs (never negative). */
  duration: number;
  /** What it shows. */
  site: SliceSite;
  /**
   * The flow id of the frame instance (unique per instance, never the raw
   * frame id), or 0 when the slice has no flow.
   */
  flow: number;
  /** Whether a flow arrow arrives from the instance's previous slice. */
  flowIn: boolean;
  /** Whether a flow arrow leaves for the instance's next slice. */
  flowOut: boolean;
  /**
   * Extra arguments: `{unbalanced: true}` (closed because an outer frame
   * ended), `{unfinished: true}` (still open when the stream ended, or when
   * recording stopped on its thread), `{events: n}` (a flush), a span's own
   * arguments, or `undefined`. Never changed once made: one object may be
   * the args of many slices (an asyncio task's name), and writers cache
   * what they render of it by identity.
   */
  args: SliceArgs | undefined;
  /**
   * Its depth among the shown slices of its thread's stack when it ran, 1
   * for the outermost (a writer that spreads slices over packet sequences
   * keys them by it); absent from slices not made by the frame-state
   * machine.
   */
  depth?: number;
  /**
   * The flow ids of the arrows to the child processes started while this
   * slice was the innermost one shown (protocol 4, `spawn` events), each
   * unique among the trace's flows; `undefined` for nearly every slice. An
   * arrow whose child never connected (a program that is not Python) has
   * no other end.
   */
  childFlows?: readonly number[] | undefined;
  /**
   * On the first slice of a process that another one started: the flow id
   * of the arrow from its parent's spawner slice (that slice's
   * `childFlows` holds it); 0 or absent otherwise.
   */
  parentFlow?: number;
  /**
   * With `--cpu-time`: its thread's CPU time when it began, in µs (the
   * thread's CPU clock, from the thread's start); `undefined` without.
   */
  threadStart?: number | undefined;
  /**
   * With `--cpu-time`: the CPU time its thread spent in it, in µs (at most
   * {@linkcode Slice.duration}, but for the clocks' resolutions).
   */
  threadDuration?: number | undefined;
}

/** The traced process, announced once, before anything else. */
export interface ProcessInfo {
  /** The Python process id. */
  pid: number;
  /** A display name, e.g. `python async_hello.py`. */
  name: string;
  /** The program's `sys.argv`. */
  argv: readonly string[];
  /** The interpreter version, e.g. `3.12.1`. */
  pythonVersion: string;
  /** The collector's hook: `setprofile` or `monitoring`. */
  engine: string;
  /** The protocol version of the stream. */
  protocol: number;
  /** Which collector wrote the stream (`hello.collector`, protocol 4), when it says. */
  collector?: string;
  /** How the collector read the time (`hello.clock`, protocol 4), when it says. */
  clock?: string;
  /**
   * Where the process goes among the trace's processes, from 1 up, when
   * the trace has several (the run's first is 1). A process announced again
   * (the same pid after an `exec`) keeps its place.
   *
   * @default {undefined} (no order is given)
   */
  sortIndex?: number;
}

/**
 * A thread, announced before its first slice. It may be announced again
 * with the same `tid` when it is renamed.
 */
export interface ThreadInfo {
  /** The dense thread id, in order of first appearance; the main thread is 1. */
  tid: number;
  /** The Python thread name, or `Thread <id>` (its id on the wire) until one is known. */
  name: string;
  /**
   * The Python thread ident (`threading.get_ident()`); with serial thread
   * ids (protocol 4), the one the `thread` record gives, null until then.
   */
  ident: number | null;
  /** The operating system's thread id, when known. */
  nativeId: number | null;
  /**
   * The collector's serial number of the thread, when the stream numbers
   * threads so (`hello.thread_ids` is `"serial"`, protocol 4).
   */
  serial?: number;
  /**
   * The process the thread belongs to, when a sink hears of several
   * processes: thread ids are unique across them, and the thread's slices
   * and instants belong to this process.
   *
   * @default {the process announced last}
   */
  pid?: number;
}

/**
 * When recording stopped because the run reached its `--max-events`
 * (the `limit` record, protocol 4).
 */
export interface RecordingLimit {
  /** When, in µs since trace time zero. */
  ts: number;
  /** The events recorded until then: the limit. */
  events: number;
}

/** What the stream held, reported once it has ended. */
export interface TraceSummary {
  /** Whether the stream ended with an `end` record. */
  complete: boolean;
  /** The events received and converted. */
  events: number;
  /** The events the collector says it recorded (`end.events`); unknown if incomplete. */
  recorded: number | undefined;
  /** The events the collector says it recorded but could not send. */
  dropped: number;
  /** Why recording stopped (`end.reason`); unknown if incomplete. */
  reason: string | undefined;
  /** The slices emitted. */
  slices: number;
  /**
   * The slices not emitted because they were deeper than the converter's
   * `maxDepth`; 0 or absent when there was no limit.
   */
  omittedSlices?: number;
  /** The slices still open at the end, closed at the last timestamp (of those emitted). */
  unfinished: number;
  /** The threads seen (by a machine of its own, dense ids 1..threads). */
  threads: number;
  /** The last timestamp of the stream, in µs since trace time zero. */
  duration: number;
  /** The Python process id. */
  pid: number;
  /** The interpreter version. */
  pythonVersion: string;
  /** The collector's hook. */
  engine: string;
  /** The protocol version of the stream. */
  protocol: number;
  /** Which collector wrote the stream (`hello.collector`, protocol 4), when it says. */
  collector?: string;
  /** How the collector read the time (`hello.clock`, protocol 4), when it says. */
  clock?: string;
  /**
   * Set when recording stopped early because the run reached its
   * `--max-events`: the trace holds nothing of the run after `ts`.
   */
  limited?: RecordingLimit;
  /**
   * The Python process's peak resident memory in bytes (`end.max_rss`), when
   * the collector reported it (protocol 2, a complete stream).
   */
  pythonMaxRss?: number;
  /**
   * The exceptions the stream showed (ops 16 and 17), when it showed any:
   * raised in recorded code, caught by a recorded handler, swallowed.
   */
  exceptions?: ExceptionCounts;
  /**
   * Each kind of swallowed exception (type, where raised, where swallowed,
   * how many times), most frequent first, when there were any.
   */
  swallowedExceptions?: SwallowedException[];
  /**
   * Every traced process of the run, the first one first, then in the
   * order they appeared, when the trace follows processes. The fields
   * above are the first process's, but for `complete`, which holds only
   * if every process's stream is complete.
   */
  processes?: ProcessSummary[];
}

/** What one process's stream held, in a trace of several processes. */
export interface ProcessSummary {
  /** The process id. */
  pid: number;
  /** The program's `sys.argv`. */
  argv: readonly string[];
  /** Who started it (`hello.parent`), or null for the run's first process. */
  parent: ParentRef | null;
  /** Whether its stream ended with an `end` record. */
  complete: boolean;
  /** Why recording stopped (`end.reason`, `"exec"` when it replaced itself); unknown if incomplete. */
  reason: string | undefined;
  /** The events received and converted. */
  events: number;
  /** The slices emitted. */
  slices: number;
  /** The events the collector says it recorded but could not send. */
  dropped: number;
  /** Its threads. */
  threads: number;
  /** Set when its recording stopped at `--max-events`. */
  limited?: RecordingLimit;
}

/**
 * A slice of an async track (issue 14): an asyncio task's life, or one step
 * of it nested in it. The slices of one track share `id`; a writer draws
 * them on a track of their own, not on a thread's.
 */
export interface AsyncSlice {
  /** The track: the task's number. */
  id: number;
  /** The track's name: the task's, `Task-1 main`. */
  track: string;
  /** `Task-1 main` for the task's life, `running` for a step. */
  name: string;
  /** `asyncio`. */
  category: string;
  /** The thread it began on; 0 when the trace does not say (a Perfetto trace read back). */
  tid: number;
  /**
   * The process whose track it is, set by the readers of a finished trace
   * (whose async tracks belong to a process, not a thread).
   *
   * @default {the process of `tid`, or the one announced last}
   */
  pid?: number;
  /** When it began, in µs since trace time zero. */
  start: number;
  /** How long it lasted, in µs. */
  duration: number;
  /**
   * For the task's life: how it ended (`ended`), its `coroutine`, and who
   * created it (`created_by`, `created_at`), or `created: "unseen"`.
   */
  args: SliceArgs | undefined;
}

/**
 * An arrow between two moments of the timeline (issue 14: from the call
 * that created a task to its first slice), joining the slices that
 * enclose them on their threads.
 */
export interface FlowArrow {
  /** Unique among the trace's flows. */
  id: number;
  /** What it shows, e.g. `create_task`. */
  name: string;
  /** `asyncio`. */
  category: string;
  /** Where it leaves: the thread, and a moment inside the slice it leaves (µs). */
  fromTid: number;
  fromTs: number;
  /** Where it arrives: the thread, and a moment inside the slice it arrives at (µs). */
  toTid: number;
  toTs: number;
}

/**
 * Where the frame-state machine sends what it finds, as it finds it:
 * process, then threads and slices interleaved, then the summary. Slices
 * arrive as they close (children before their parents), not in start order.
 * A sink that several machines share (the processes of a run, see
 * `convertProcesses`) hears of each process before its threads, of
 * threads with their `pid`, and of the summary of them all once, last.
 */
export interface TraceSink {
  /** The traced process; called first (once per process, when there are several). */
  process(process: ProcessInfo): void;
  /** A thread is announced or renamed. */
  thread(thread: ThreadInfo): void;
  /** A slice has closed. The object is reused: copy what you keep. */
  slice(slice: Slice): void;
  /** An instant or counter value (protocol 3); a sink without it drops them. */
  mark?(mark: Mark): void;
  /** A slice of an asyncio task's track (issue 14); a sink without it drops them. */
  asyncSlice?(slice: AsyncSlice): void;
  /** An arrow from a task's creation to its first slice (issue 14); dropped without it. */
  flowArrow?(arrow: FlowArrow): void;
  /** The stream has ended; nothing follows. */
  finish(summary: TraceSummary): void;
}
