/**
 * asyncio tasks on the timeline (issue 14): the frame-state machine hands
 * this module the collector's task marks (docs/protocol.md, "asyncio
 * tasks") and the slices of each task's coroutine frame; it makes the
 * task's async track (its life, and a slice for each step it ran), the
 * arrow from where the task was created to its first slice, and (monitoring
 * engine) an arrow from where a future a task awaited completed to the
 * task's resumption.
 *
 * @module
 */

import type { JsonValue, MarkRecord } from "./protocol.ts";
import type { AsyncSlice, FlowArrow, SliceArgs, TraceSink } from "./trace_model.ts";

/** The mark categories of the collector's task instants. */
export const TASK_MARKS = {
  /** A task is created here; `args.task` is its number. */
  created: "asyncio.created",
  /** The innermost frame is the task's coroutine, starting its first step; the mark's name is the task's. */
  task: "asyncio.task",
  /** The innermost frame, a task's coroutine, is unwinding with `CancelledError`. */
  cancelled: "asyncio.cancelled",
} as const;

/** The category of the task tracks and of the creation arrows. */
export const TASK_CATEGORY = "asyncio";

/**
 * The task arrows of a trace read back (creation, await), from their two
 * ends, each a slice of no length: where one leaves is kept until it
 * arrives, and then it goes to the sink as a {@linkcode FlowArrow}.
 */
export class ArrowEnds {
  readonly #leaving = new Map<number, { tid: number; ts: number; name: string }>();

  /** Arrow `flow`, named `name`, leaves thread `tid` at `ts` (µs). */
  leaves(flow: number, tid: number, ts: number, name: string): void {
    this.#leaving.set(flow, { tid, ts, name });
  }

  /** Arrow `flow` arrives on thread `tid` at `ts`: `sink` gets it, if where it left was seen. */
  arrives(flow: number, tid: number, ts: number, sink: TraceSink): void {
    const from = this.#leaving.get(flow);
    if (from === undefined) return;
    this.#leaving.delete(flow);
    sink.flowArrow?.({
      id: flow,
      name: from.name,
      category: TASK_CATEGORY,
      fromTid: from.tid,
      fromTs: from.ts,
      toTid: tid,
      toTs: ts,
    });
  }
}

/** Whether `mark` is one of the collector's task marks, not an instant to show. */
export function isTaskMark(mark: MarkRecord): boolean {
  return mark.category.startsWith("asyncio.");
}

/**
 * How a task's coroutine ended, as its track says: it returned (`result`),
 * raised (`exception`), was cancelled (`cancelled`), or is still running or
 * waiting at the end of the stream (`pending`). Where the engine cannot
 * tell all of them apart (see {@linkcode TaskTracker}): `raised` (an
 * exception or a cancellation), `ended` (any of the three).
 */
export type TaskEnd = "result" | "exception" | "cancelled" | "raised" | "ended" | "pending";

/**
 * What a stream can tell of how tasks end: `monitoring` all of it (PY_UNWIND
 * passes the exception); the native collector's profile function a return
 * from an unwind, not a cancellation from an error (a profile function runs
 * with the exception put aside); the Python collector's profile function
 * neither (Python passes it None for both), but for the unwinds it sends
 * when it records exceptions (`--exceptions`): those are `raised`.
 */
export type TaskEndings = "all" | "raised" | "none";

/** What a stream of `engine` and `collector` can tell of how tasks end. */
export function taskEndings(engine: string, collector: string | undefined): TaskEndings {
  if (engine === "monitoring") return "all";
  return collector === "native" ? "raised" : "none";
}

/**
 * Who created a task (see `creatorOf` in src/frames.ts): the function, and
 * where its code starts (`file:line`) when it is Python code.
 */
export interface TaskCreator {
  name: string;
  at?: string;
}

/** One asyncio task, from its marks. */
export class Task {
  /** When it was created, in µs, and on which thread; with the creation's flow id. */
  created: { tid: number; ts: number; flow: number; by: TaskCreator | undefined } | undefined;
  /** Its name (`Task-1`, or the program's); known from its first step. */
  name = "";
  /** The name of its coroutine (the frame's code). */
  coroutine = "";
  /** The first step's start, in µs. */
  start = Number.NaN;
  /** The thread of its first step. */
  tid = 0;
  /** Whether its coroutine is unwinding with CancelledError. */
  cancelled = false;
  /** Its track's name, once it has one: its name and its coroutine's. */
  track = "";
  /** The arguments every slice of its coroutine frames carries. */
  args: SliceArgs = {};
  /** Whether its track has ended. */
  ended = false;
  /** The keys of the futures it awaits, while it is suspended. */
  awaiting: number[] = [];
  /** The completions of what it awaits seen since it suspended: the arrows to its resumption. */
  arrivals: { tid: number; ts: number; flow: number }[] = [];

  constructor(readonly number: number) {}
}

/**
 * The tasks of one stream. The machine calls {@linkcode TaskTracker.mark}
 * for each task instant, {@linkcode TaskTracker.step} for each slice of a
 * task's own coroutine frame, and {@linkcode TaskTracker.end} when that
 * frame ends for good (or the stream does).
 */
export class TaskTracker {
  readonly #sink: TraceSink;
  readonly #tasks = new Map<number, Task>();
  /** The key of each future some task awaits -> the tasks awaiting it. */
  readonly #waiters = new Map<number, Task[]>();
  /** What the stream can tell of how tasks end (from its hello). */
  endings: TaskEndings = "all";

  constructor(sink: TraceSink) {
    this.#sink = sink;
  }

  /** The task that mark `mark` is about, made at first sight. */
  task(mark: MarkRecord): Task | undefined {
    const number = mark.args.task;
    if (typeof number !== "number") return undefined;
    let task = this.#tasks.get(number);
    if (task === undefined) {
      task = new Task(number);
      this.#tasks.set(number, task);
    }
    return task;
  }

  /**
   * A task is created at `ts` (µs) on thread `tid`, by `by`; `flow` is the
   * id its arrow gets.
   */
  created(task: Task, tid: number, ts: number, flow: number, by?: TaskCreator): void {
    task.created ??= { tid, ts, flow, by };
  }

  /**
   * A task's first step starts at `start` (µs) on thread `tid`, in a frame
   * of `coroutine`; the arrow from its creation, if it was seen, arrives at
   * `ts`, a moment inside that first slice.
   */
  started(
    task: Task,
    name: string,
    coroutine: string,
    tid: number,
    start: number,
    ts: number,
  ): void {
    task.name = name;
    task.coroutine = coroutine;
    task.start = start;
    task.tid = tid;
    const args: Record<string, JsonValue> = { task: name };
    task.args = args;
    const created = task.created;
    if (created !== undefined) {
      const arrow: FlowArrow = {
        id: created.flow,
        name: "create_task",
        category: TASK_CATEGORY,
        fromTid: created.tid,
        fromTs: created.ts,
        toTid: tid,
        toTs: ts,
      };
      this.#sink.flowArrow?.(arrow);
    }
  }

  /**
   * The task, suspending, awaits the future whose key is `key` (each child
   * of a `gather` is one): its next resumption after that future completes
   * gets an arrow from the completion.
   */
  awaits(task: Task, key: number): void {
    if (task.ended) return;
    task.awaiting.push(key);
    const waiters = this.#waiters.get(key);
    if (waiters === undefined) this.#waiters.set(key, [task]);
    else if (!waiters.includes(task)) waiters.push(task);
  }

  /**
   * The future whose key is `key` completes at `ts` (µs) on thread `tid`,
   * while task `running` runs there (undefined: in none, e.g. in a callback
   * of the loop's, which draws no arrow). `flow` gives each arrow its id.
   */
  done(key: number, tid: number, ts: number, running: Task | undefined, flow: () => number): void {
    const waiters = this.#waiters.get(key);
    if (waiters === undefined) return;
    this.#waiters.delete(key);
    if (running === undefined) return;
    for (const waiter of waiters) {
      if (waiter !== running) waiter.arrivals.push({ tid, ts, flow: flow() });
    }
  }

  /**
   * The task's coroutine frame resumes: the arrows from the completions of
   * what it awaited arrive at `ts` (µs) on thread `tid`, and it awaits
   * nothing now.
   */
  resumed(task: Task, tid: number, ts: number): void {
    this.#forget(task);
    for (const arrival of task.arrivals) {
      this.#sink.flowArrow?.({
        id: arrival.flow,
        name: "await",
        category: TASK_CATEGORY,
        fromTid: arrival.tid,
        fromTs: arrival.ts,
        toTid: tid,
        toTs: ts,
      });
    }
    task.arrivals = [];
  }

  /** The task awaits nothing any more. */
  #forget(task: Task): void {
    for (const key of task.awaiting) {
      const waiters = this.#waiters.get(key);
      if (waiters === undefined) continue;
      const at = waiters.indexOf(task);
      if (at >= 0) waiters.splice(at, 1);
      if (waiters.length === 0) this.#waiters.delete(key);
    }
    task.awaiting = [];
  }

  /** A slice of the task's coroutine frame: a step it ran, on its track. */
  step(task: Task, tid: number, start: number, duration: number): void {
    this.#async(task, "running", tid, start, duration, undefined);
  }

  /** The task's coroutine frame ended at `ts` (µs): its track ends, saying how. */
  end(task: Task, ts: number, how: TaskEnd): void {
    if (task.ended) return;
    task.ended = true;
    this.#tasks.delete(task.number);
    this.#forget(task);
    task.arrivals = [];
    // Without a creation, the life starts a nanosecond before its first step:
    // a parent and a child that begin together would nest either way round.
    const start = task.created?.ts ?? task.start - 0.001;
    let ended = how;
    if (how === "exception") {
      ended = task.cancelled ? "cancelled" : this.endings === "all" ? "exception" : "raised";
    }
    // Told no unwind, a return may be one: it only ended.
    if (this.endings === "none" && how === "result") ended = "ended";
    const args: Record<string, JsonValue> = { ended, coroutine: task.coroutine };
    const by = task.created?.by;
    if (task.created === undefined) args.created = "unseen";
    else if (by !== undefined) {
      // The summary's task view says who created it.
      args.created_by = by.name;
      if (by.at !== undefined) args.created_at = by.at;
    }
    this.#async(
      task,
      `${task.name} ${task.coroutine}`,
      task.tid,
      start,
      Math.max(0, ts - start),
      args,
    );
  }

  /** At the end of the stream: the tasks still running or waiting end there, `pending`. */
  finish(ts: number): void {
    for (const task of [...this.#tasks.values()]) {
      if (task.name !== "") this.end(task, ts, "pending");
    }
    this.#tasks.clear();
    this.#waiters.clear();
  }

  #async(
    task: Task,
    name: string,
    tid: number,
    start: number,
    duration: number,
    args: SliceArgs | undefined,
  ): void {
    const slice: AsyncSlice = {
      id: task.number,
      track: task.track ||= `${task.name} ${task.coroutine}`,
      name,
      category: TASK_CATEGORY,
      tid,
      start,
      duration,
      args,
    };
    this.#sink.asyncSlice?.(slice);
  }
}
