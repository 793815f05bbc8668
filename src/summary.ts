/**
 * The summary of a trace: per function, its calls, total and self time,
 * and for generators, coroutines and async generators their frame
 * instances: how many slices each took, how long it ran and how long it
 * lived. {@linkcode SummarySink} computes it from the slices the
 * frame-state machine (or a reader of a finished trace) sends.
 *
 * @module
 */

import { RECORD_FIELDS, RecordSpill } from "./_spill.ts";
import { EXCEPTION_CATEGORY } from "./exceptions.ts";
import { TASK_CATEGORY } from "./tasks.ts";
import { type TaskSummary, TaskTally } from "./task_summary.ts";
import { type ValueSummary, ValueTally } from "./values.ts";
import type {
  AsyncSlice,
  Mark,
  ProcessInfo,
  RecordingLimit,
  Slice,
  SliceSite,
  ThreadInfo,
  TraceSink,
  TraceSummary,
} from "./trace_model.ts";

/** What a summary's rows can be sorted by (the most first). */
export type SummarySortKey = "calls" | "total" | "self" | "max";

/** Every sort key, in the order the help text lists them. */
export const SUMMARY_SORT_KEYS: readonly SummarySortKey[] = ["calls", "total", "self", "max"];

/**
 * One function (a Python code object, a C function, or a span of the
 * program's own) and what its slices add up to. Times are nanoseconds.
 */
export interface FunctionSummary {
  /** The slice name: `fetch`, `asyncio.runners.run`, `print`. */
  name: string;
  /**
   * The slice category: `function`, `generator`, `coroutine`,
   * `async_generator`, `c_function`, or a span's (`mark`).
   */
  kind: string;
  /** The source file, for Python code. */
  file?: string;
  /** The code's first line, for Python code. */
  line?: number;
  /**
   * How many times it was called: its frame instances. For a plain
   * function or a C function that is its slices; a generator, coroutine or
   * async generator frame takes a slice for each resumption, and counts
   * once here.
   */
  calls: number;
  /** Its slices: one per call, plus one per resumption of a generator-like frame. */
  slices: number;
  /**
   * The time it was on the stack (inclusive): the sum of its slices that
   * are not nested in another slice of the same function on the same
   * thread, so that recursion is not counted twice.
   */
  totalNs: number;
  /** The time it ran itself: its slices' durations minus those of the slices nested directly in them. */
  selfNs: number;
  /** The mean time a call ran (inclusive; for a generator-like frame, its slices together). */
  meanNs: number;
  /** The longest call (as for `meanNs`). */
  maxNs: number;
  /** Its slices still open when the trace ended (or recording stopped on its thread). */
  unfinished: number;
  /** Generator-like frames only: the most slices one frame instance took. */
  maxSlices?: number;
  /**
   * Generator-like frames only: the time its instances ran, all together:
   * the sum of their slices.
   */
  ranNs?: number;
  /**
   * Generator-like frames only: the time its instances lived, all
   * together, each from its first slice's start to its last slice's end;
   * what is not `ranNs` they spent suspended (an `await` waiting).
   */
  livedNs?: number;
  /** Generator-like frames only: the longest any instance lived. */
  maxLivedNs?: number;
}

/** A thread of the trace. */
export interface ThreadSummary {
  /** The dense thread id. */
  tid: number;
  /** Its last name. */
  name: string;
  /** Its slices. */
  slices: number;
}

/** The run's facts, from the trace. */
export interface RunFacts {
  /** The traced process as a command line, `python async_hello.py`. */
  program: string;
  /** The Python process ids. */
  pids: number[];
  /** The interpreter version. */
  python: string;
  /** The collector's hook. */
  engine: string;
  /** Which collector recorded, when the trace says. */
  collector?: string;
  /** From the first slice's start to the last slice's end (or mark), in ns since time zero. */
  durationNs: number;
  /** The events received. */
  events: number;
  /** Whether the stream was complete. */
  complete: boolean;
  /** Why recording stopped, when known. */
  reason?: string;
  /** The events the collector recorded but could not send. */
  dropped: number;
  /** The slices in the trace. */
  slices: number;
  /** The slices still open at the end, closed at the last timestamp. */
  unfinished: number;
  /** The slices `--max-depth` left out. */
  omittedSlices: number;
  /** When recording stopped at `--max-events`. */
  limited?: RecordingLimit;
  /** The threads, by dense id. */
  threads: ThreadSummary[];
  /** The Python process's peak resident memory in bytes, when reported. */
  pythonMaxRss?: number;
  /** The time the collector spent sending its events (`panopticon.flush` slices). */
  collectorNs: number;
  /** How many times it did. */
  flushes: number;
}

/** What {@linkcode SummarySink.report} finds. */
export interface SummaryReport {
  /** The run's facts. */
  run: RunFacts;
  /** The thread the figures are for (the `thread` option), if one was chosen. */
  thread?: string;
  /** Every function that has a slice (on the chosen thread), by self time, the most first. */
  functions: FunctionSummary[];
  /**
   * The exceptions raised in recorded frames (on the chosen thread), by
   * type and where they were raised, the most raised first.
   */
  exceptions: ExceptionSummary[];
  /**
   * The asyncio tasks (issue 14; those that ran on the chosen thread, or
   * whose thread the trace does not say), by the time they ran, the most
   * first: from their async tracks, which the converter makes where the
   * collector tells of tasks (docs/protocol.md, "asyncio tasks").
   */
  tasks: TaskSummary[];
  /**
   * The values `--args` and `--returns` recorded (on the chosen thread):
   * for each function and name, how many slices carried one and the most
   * frequent. Empty when the trace has none.
   */
  values: ValueSummary[];
}

export type { TaskSummary, ValueSummary };

/** The exceptions of one type raised at one place, and what became of them. */
export interface ExceptionSummary {
  /** The exception's type, as `ValueError` or `json.JSONDecodeError`. */
  type: string;
  /** Where it was raised (`file:line`; empty when unknown). */
  raisedAt: string;
  /** How many times. */
  raised: number;
  /** How many a recorded handler caught and dealt with (replaced, re-raised as another). */
  caught: number;
  /** How many a recorded handler caught and let go of, the program going on as if nothing happened. */
  swallowed: number;
  /** The handlers that swallowed them (`file:line`), the most frequent first. */
  swallowedAt: string[];
}

/** Options of {@linkcode SummarySink}. */
export interface SummaryOptions {
  /**
   * Count only the slices of the threads with this name (a thread's last
   * name counts).
   *
   * @default {undefined} (every thread)
   */
  thread?: string;
  /**
   * How many slices the second pass keeps in memory (48 bytes each); past
   * it, they go to a temporary file, unlinked while open.
   *
   * @default {262144}
   */
  memoryRecords?: number;
  /**
   * Where that temporary file goes.
   *
   * @default {the system's temporary directory}
   */
  tempDir?: string;
}

// A record's flags (see `SummarySink`).
/** The slice arrived after a slice of its thread that ended later. */
const LATE = 1;
const FLOW_IN = 2;
const FLOW_OUT = 4;
const UNFINISHED = 8;

/** The category of the collector's own slices. */
const COLLECTOR_CATEGORY = "panopticon";

/** A function's running totals. */
class SiteTotals {
  calls = 0;
  slices = 0;
  totalNs = 0;
  selfNs = 0;
  /** The sum of its slices' durations: what its instances ran. */
  ranNs = 0;
  maxNs = 0;
  unfinished = 0;
  maxSlices = 0;
  livedNs = 0;
  maxLivedNs = 0;

  constructor(readonly site: SliceSite) {}

  /** One frame instance, complete: `slices` slices that ran `ran` ns and lived `lived`. */
  instance(slices: number, ran: number, lived: number): void {
    this.calls++;
    if (ran > this.maxNs) this.maxNs = ran;
    if (slices > this.maxSlices) this.maxSlices = slices;
    this.livedNs += lived;
    if (lived > this.maxLivedNs) this.maxLivedNs = lived;
  }
}

/** A frame instance met in the second pass, until its first slice is read. */
interface Instance {
  site: number;
  slices: number;
  ran: number;
  first: number;
  last: number;
}

/** A slice waiting in a thread's heap (see {@linkcode ThreadPass}). */
interface Pending {
  start: number;
  end: number;
  site: number;
}

/**
 * One thread in the second pass: the slices that enclose the one being
 * read (a stack), those read early (a heap), and how many slices of each
 * function are on the stack.
 */
class ThreadPass {
  starts: number[] = [];
  ends: number[] = [];
  sites: number[] = [];
  children: number[] = [];
  depth = 0;
  readonly open = new Map<number, number>();
  readonly heap: Pending[] = [];

  constructor(readonly totals: SiteTotals[]) {}

  /**
   * Places a slice read in its turn: the heap's slices that come before
   * it (in reverse order: later end first, then the enclosing one) go
   * first.
   */
  take(start: number, end: number, site: number): void {
    const heap = this.heap;
    while (heap.length > 0) {
      const top = heap[0]!;
      if (!(top.end > end || (top.end === end && top.start <= start))) break;
      popHeap(heap);
      this.place(top.start, top.end, top.site);
    }
    this.place(start, end, site);
  }

  /** Every slice left, at the end. */
  finish(): void {
    const heap = this.heap;
    while (heap.length > 0) {
      const top = popHeap(heap);
      this.place(top.start, top.end, top.site);
    }
    while (this.depth > 0) this.#pop();
  }

  place(start: number, end: number, site: number): void {
    const starts = this.starts;
    const ends = this.ends;
    // Slices come parents first, and a parent's children last first: what
    // does not enclose this slice has no more children to come.
    while (this.depth > 0) {
      const top = this.depth - 1;
      if (starts[top]! <= start && end <= ends[top]!) break;
      this.#pop();
    }
    const duration = end - start;
    if (this.depth > 0) this.children[this.depth - 1]! += duration;
    const open = this.open.get(site) ?? 0;
    if (open === 0) this.totals[site]!.totalNs += duration;
    this.open.set(site, open + 1);
    const at = this.depth++;
    starts[at] = start;
    ends[at] = end;
    this.sites[at] = site;
    this.children[at] = 0;
  }

  #pop(): void {
    const at = --this.depth;
    const site = this.sites[at]!;
    this.totals[site]!.selfNs += this.ends[at]! - this.starts[at]! - this.children[at]!;
    const open = this.open.get(site)! - 1;
    if (open === 0) this.open.delete(site);
    else this.open.set(site, open);
  }
}

/** Whether `a` comes before `b` in reverse order: a later end, or the same and an earlier start. */
function before(a: Pending, b: Pending): boolean {
  return a.end > b.end || (a.end === b.end && a.start < b.start);
}

function pushHeap(heap: Pending[], item: Pending): void {
  let at = heap.length;
  heap.push(item);
  while (at > 0) {
    const parent = (at - 1) >> 1;
    if (!before(item, heap[parent]!)) break;
    heap[at] = heap[parent]!;
    at = parent;
  }
  heap[at] = item;
}

function popHeap(heap: Pending[]): Pending {
  const top = heap[0]!;
  const last = heap.pop()!;
  if (heap.length === 0) return top;
  let at = 0;
  for (;;) {
    const left = 2 * at + 1;
    if (left >= heap.length) break;
    const right = left + 1;
    const child = right < heap.length && before(heap[right]!, heap[left]!) ? right : left;
    if (!before(heap[child]!, last)) break;
    heap[at] = heap[child]!;
    at = child;
  }
  heap[at] = last;
  return top;
}

/**
 * A {@linkcode TraceSink} that sums up a trace per function: feed it from
 * a {@linkcode FrameStateMachine} (a recording) or a reader of a finished
 * trace, then call {@linkcode SummarySink.report}.
 *
 * Self time needs to know which slices nest in which, and the slices of a
 * trace arrive as they close: children before their parents, and the last
 * slice of a suspended generator frame only when the frame goes on. Going
 * forwards, a slice's parent is known only when the parent closes, so
 * every closed slice would have to wait for it, and a loop's million
 * calls would wait together. Read backwards, the same stream gives each
 * parent before its children, and a stack (as deep as the thread's
 * stack) places each slice. So the sink makes two passes: the first, as
 * the slices arrive, stores each one as a record of 48 bytes (in memory
 * up to `memoryRecords`, then in a temporary file) and notes those that
 * arrived late (after a slice of their thread that ended later, or at the
 * same time and encloses it: a suspended frame's); the second, in `report()`, reads the records last
 * first, holds the late ones in a heap until their turn (they are among
 * the suspended frames, which is what the heap holds), and sums up. Its
 * memory grows with the functions, the threads, the stack depth and the
 * frame instances alive at a time, never with the number of slices.
 *
 * A frame instance is a chain of slices joined by flows (one flow id per
 * instance), or a slice without one. The instance's slices come in their
 * order in the stream, so the second pass meets its last slice first and
 * knows it complete at the slice no flow arrives at.
 *
 * @example Summing up a recording
 * ```ts
 * import { FrameStateMachine, SummarySink } from "@panopticon/panopticon";
 * import assert from "node:assert/strict";
 *
 * const sink = new SummarySink();
 * const machine = new FrameStateMachine(sink);
 * machine.push({ kind: "hello", protocol: 2, pid: 7, python: "3.12.1", engine: "monitoring", t0: 0, main_thread: 1, argv: ["a.py"] });
 * machine.push({ kind: "code", id: 1, module: "__main__", qualname: "main", file: "a.py", line: 1, type: "function" });
 * machine.push({ kind: "code", id: 2, module: "__main__", qualname: "tick", file: "a.py", line: 4, type: "generator" });
 * // main calls the generator twice: it suspends, then returns; 1 µs = 1000 ns.
 * machine.push({
 *   kind: "events",
 *   events: [[0, 1, 0, 0, 1], [0, 1, 1000, 50, 2], [4, 1, 3000, 50, 2], [1, 1, 5000, 50, 2], [2, 1, 6000, 50, 2], [2, 1, 9000, 0, 1]],
 * });
 * machine.end();
 * const report = sink.report();
 * const tick = report.functions.find((f) => f.name === "tick")!;
 * assert.deepEqual([tick.calls, tick.slices, tick.ranNs, tick.livedNs], [1, 2, 3000, 5000]);
 * const main = report.functions.find((f) => f.name === "main")!;
 * assert.deepEqual([main.calls, main.totalNs, main.selfNs], [1, 9000, 6000]);
 * ```
 */
export class SummarySink implements TraceSink {
  readonly #options: SummaryOptions;
  readonly #spill: RecordSpill;
  readonly #siteIndex = new Map<SliceSite, number>();
  readonly #sites: SliceSite[] = [];
  /** The latest end of a slice so far, by thread, and the earliest start of those that end then. */
  readonly #maxEnds: number[] = [];
  readonly #maxEndStarts: number[] = [];
  readonly #threadNames = new Map<number, string>();
  /** The exceptions raised, by thread, type and place (`tid\0type\0file:line`). */
  readonly #exceptions = new Map<string, ExceptionTally>();
  readonly #pids: number[] = [];
  /** The process of each thread, when the sink hears of several. */
  readonly #threadPids = new Map<number, number>();
  readonly #tasks = new TaskTally();
  readonly #values = new ValueTally();
  #process: ProcessInfo | undefined;
  /** The process announced last. */
  #pid = 0;
  #summary: TraceSummary | undefined;
  #end = 0;
  #report: SummaryReport | undefined;

  constructor(options: SummaryOptions = {}) {
    this.#options = options;
    this.#spill = new RecordSpill(options);
  }

  /** Notes the process. */
  process(process: ProcessInfo): void {
    this.#process ??= process;
    this.#pid = process.pid;
    if (!this.#pids.includes(process.pid)) this.#pids.push(process.pid);
  }

  /** Notes the thread's name. */
  thread(thread: ThreadInfo): void {
    this.#threadNames.set(thread.tid, thread.name);
    if (thread.pid !== undefined) this.#threadPids.set(thread.tid, thread.pid);
  }

  /** Counts a slice of an asyncio task's track into the task's row. */
  asyncSlice(slice: AsyncSlice): void {
    if (slice.category !== TASK_CATEGORY) return;
    // Each process numbers its own tasks.
    this.#tasks.add(slice, slice.pid ?? this.#threadPids.get(slice.tid) ?? this.#pid);
  }

  /** Stores the slice for the second pass. */
  slice(slice: Slice): void {
    if (slice.site.category === EXCEPTION_CATEGORY) {
      // An instant, not a call; its arrow joins a raise to its handler.
      this.#exception(slice);
      return;
    }
    // Whole nanoseconds, so that nesting compares exactly.
    const start = Math.round(slice.start * 1000);
    const end = start + Math.round(slice.duration * 1000);
    let site = this.#siteIndex.get(slice.site);
    if (site === undefined) {
      site = this.#sites.length;
      this.#sites.push(slice.site);
      this.#siteIndex.set(slice.site, site);
    }
    const tid = slice.tid;
    let flags = 0;
    const maxEnd = this.#maxEnds[tid];
    if (maxEnd === undefined || end > maxEnd) {
      this.#maxEnds[tid] = end;
      this.#maxEndStarts[tid] = start;
    } else if (end < maxEnd || start > this.#maxEndStarts[tid]!) {
      // It ended before a slice that came earlier, or with one that
      // encloses it (frames left open close together at the end, a
      // suspended frame's slice after them).
      flags = LATE;
    } else {
      this.#maxEndStarts[tid] = start;
    }
    if (end > this.#end) this.#end = end;
    if (slice.flowIn) flags |= FLOW_IN;
    if (slice.flowOut) flags |= FLOW_OUT;
    const args = slice.args;
    if (args !== undefined) {
      if (args["unfinished"] === true) flags |= UNFINISHED;
      if (isPythonCode(slice.site.category)) this.#values.add(slice.site, tid, args);
    }
    this.#spill.append(start, end, tid, site, slice.flow, flags);
  }

  /** Counts a raise instant (its `args` say what became of it); the handlers' are its echo. */
  #exception(slice: Slice): void {
    const args = slice.args;
    if (!slice.site.name.startsWith("raise ") || args === undefined) return;
    const type = typeof args["type"] === "string" ? args["type"] : slice.site.name.slice(6);
    // A trace read back has the place on the site; the converter's own slices, in args.
    const file = typeof args["file"] === "string" ? args["file"] : slice.site.file;
    const line = typeof args["line"] === "number" ? args["line"] : slice.site.line;
    const raisedAt = file === undefined || file === "" ? "" : `${file}:${line ?? 0}`;
    const key = `${slice.tid}\0${type}\0${raisedAt}`;
    let tally = this.#exceptions.get(key);
    if (tally === undefined) {
      tally = { tid: slice.tid, type, raisedAt, raised: 0, caught: 0, swallowed: new Map() };
      this.#exceptions.set(key, tally);
    }
    tally.raised++;
    const caughtAt = typeof args["caught"] === "string" ? args["caught"] : undefined;
    if (args["swallowed"] === true) {
      const at = caughtAt ?? "";
      tally.swallowed.set(at, (tally.swallowed.get(at) ?? 0) + 1);
    } else if (caughtAt !== undefined) {
      tally.caught++;
    }
  }

  /** Counts a mark's time into the trace's duration. */
  mark(mark: Mark): void {
    const ts = Math.round(mark.ts * 1000);
    if (ts > this.#end) this.#end = ts;
  }

  /** Notes the stream's summary. */
  finish(summary: TraceSummary): void {
    this.#summary = summary;
  }

  /**
   * Sums up what the sink received: the second pass, run once. Call it
   * after `finish`; the stored slices are freed.
   *
   * @throws {Error} if the `thread` option names no thread of the trace.
   */
  report(): SummaryReport {
    if (this.#report !== undefined) return this.#report;
    const wanted = this.#options.thread;
    let only: Set<number> | undefined;
    if (wanted !== undefined) {
      only = new Set([...this.#threadNames].filter(([, name]) => name === wanted).map(([t]) => t));
      if (only.size === 0) {
        this.#spill.close();
        const names = [...new Set(this.#threadNames.values())].map((name) => `"${name}"`);
        throw new Error(
          `the trace has no thread named "${wanted}": its threads are ${names.join(", ")}`,
        );
      }
    }
    const totals = this.#sites.map((site) => new SiteTotals(site));
    const threadSlices: number[] = [];
    const passes: (ThreadPass | undefined)[] = [];
    const live = new Map<number, Instance>();
    let unfinished = 0;
    try {
      for (const { values, records } of this.#spill.chunksBackwards()) {
        for (let r = records - 1; r >= 0; r--) {
          const at = r * RECORD_FIELDS;
          const start = values[at]!;
          const end = values[at + 1]!;
          const tid = values[at + 2]!;
          const site = values[at + 3]!;
          const flow = values[at + 4]!;
          const flags = values[at + 5]!;
          threadSlices[tid] = (threadSlices[tid] ?? 0) + 1;
          if (flags & UNFINISHED) unfinished++;
          if (only !== undefined && !only.has(tid)) {
            // Not counted, but its instance may end here.
            if (flow !== 0 && !(flags & FLOW_IN)) this.#endInstance(live, flow, totals);
            continue;
          }
          const duration = end - start;
          const own = totals[site]!;
          own.slices++;
          own.ranNs += duration;
          if (flags & UNFINISHED) own.unfinished++;
          if (flow === 0) {
            own.instance(1, duration, duration);
          } else {
            let instance = live.get(flow);
            if (instance === undefined) {
              instance = { site, slices: 0, ran: 0, first: start, last: end };
              live.set(flow, instance);
            }
            instance.slices++;
            instance.ran += duration;
            if (start < instance.first) instance.first = start;
            if (end > instance.last) instance.last = end;
            // The instance's first slice: no flow arrives at it.
            if (!(flags & FLOW_IN)) this.#endInstance(live, flow, totals);
          }
          const pass = passes[tid] ??= new ThreadPass(totals);
          if (flags & LATE) pushHeap(pass.heap, { start, end, site });
          else pass.take(start, end, site);
        }
      }
      for (const pass of passes) pass?.finish();
      // Instances whose first slice never came (a trace from elsewhere).
      for (const flow of [...live.keys()]) this.#endInstance(live, flow, totals);
    } finally {
      this.#spill.close();
    }

    let collectorNs = 0;
    let flushes = 0;
    const functions: FunctionSummary[] = [];
    for (const total of totals) {
      if (total.slices === 0) continue;
      const site = total.site;
      if (site.category === COLLECTOR_CATEGORY) {
        collectorNs += total.ranNs;
        flushes += total.slices;
        continue;
      }
      functions.push(functionSummary(total));
    }
    sortFunctions(functions, "self");
    const summary = this.#summary;
    const process = this.#process;
    const run: RunFacts = {
      program: process?.name ?? "",
      pids: [...this.#pids],
      python: summary?.pythonVersion || process?.pythonVersion || "",
      engine: summary?.engine || process?.engine || "",
      durationNs: this.#end,
      events: summary?.events ?? 0,
      complete: summary?.complete ?? false,
      dropped: summary?.dropped ?? 0,
      slices: this.#spill.count,
      unfinished,
      omittedSlices: summary?.omittedSlices ?? 0,
      threads: [...this.#threadNames].sort(([a], [b]) => a - b).map(([tid, name]) => ({
        tid,
        name,
        slices: threadSlices[tid] ?? 0,
      })),
      collectorNs,
      flushes,
    };
    const collector = summary?.collector ?? process?.collector;
    if (collector !== undefined) run.collector = collector;
    if (summary?.reason !== undefined) run.reason = summary.reason;
    if (summary?.limited !== undefined) run.limited = summary.limited;
    if (summary?.pythonMaxRss !== undefined) run.pythonMaxRss = summary.pythonMaxRss;
    const report: SummaryReport = {
      run,
      functions,
      exceptions: exceptionSummaries(this.#exceptions.values(), only),
      tasks: this.#tasks.tasks(only),
      values: this.#values.summaries(only),
    };
    if (wanted !== undefined) report.thread = wanted;
    this.#report = report;
    return report;
  }

  /** Frees the stored slices without a report (e.g. when reading failed). */
  close(): void {
    this.#spill.close();
  }

  #endInstance(live: Map<number, Instance>, flow: number, totals: SiteTotals[]): void {
    const instance = live.get(flow);
    if (instance === undefined) return;
    live.delete(flow);
    totals[instance.site]!.instance(instance.slices, instance.ran, instance.last - instance.first);
  }
}

/** Whether a slice's category is Python code's: a function or a generator-like frame. */
function isPythonCode(category: string): boolean {
  return category === "function" || isGeneratorLike(category);
}

/** Whether a kind of code is a generator, a coroutine or an async generator. */
export function isGeneratorLike(kind: string): boolean {
  return kind === "generator" || kind === "coroutine" || kind === "async_generator";
}

function functionSummary(total: SiteTotals): FunctionSummary {
  const site = total.site;
  const summary: FunctionSummary = {
    name: site.name,
    kind: site.category,
    calls: total.calls,
    slices: total.slices,
    totalNs: total.totalNs,
    selfNs: total.selfNs,
    meanNs: total.calls > 0 ? Math.round(total.ranNs / total.calls) : 0,
    maxNs: total.maxNs,
    unfinished: total.unfinished,
  };
  if (site.file !== undefined) summary.file = site.file;
  if (site.line !== undefined) summary.line = site.line;
  if (isGeneratorLike(site.category)) {
    summary.maxSlices = total.maxSlices;
    summary.ranNs = total.ranNs;
    summary.livedNs = total.livedNs;
    summary.maxLivedNs = total.maxLivedNs;
  }
  return summary;
}

const SORT_FIELDS: Record<SummarySortKey, keyof FunctionSummary> = {
  calls: "calls",
  total: "totalNs",
  self: "selfNs",
  max: "maxNs",
};

/**
 * Sorts `functions` in place by `key`, the most first; ties by name, then
 * by place.
 *
 * @example
 * ```ts
 * import { type FunctionSummary, sortFunctions } from "@panopticon/panopticon";
 * import assert from "node:assert/strict";
 *
 * const f = (name: string, calls: number, selfNs: number): FunctionSummary => ({
 *   name, kind: "function", calls, slices: calls, totalNs: selfNs, selfNs, meanNs: 0, maxNs: 0, unfinished: 0,
 * });
 * const functions = [f("a", 1, 30), f("b", 5, 10)];
 * sortFunctions(functions, "calls");
 * assert.deepEqual(functions.map((x) => x.name), ["b", "a"]);
 * ```
 */
export function sortFunctions(functions: FunctionSummary[], key: SummarySortKey): void {
  const field = SORT_FIELDS[key];
  functions.sort((a, b) =>
    (b[field] as number) - (a[field] as number) || compare(a.name, b.name) ||
    compare(a.file ?? "", b.file ?? "") || (a.line ?? 0) - (b.line ?? 0)
  );
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The exceptions of one type raised at one place on one thread. */
interface ExceptionTally {
  tid: number;
  type: string;
  raisedAt: string;
  raised: number;
  caught: number;
  /** How many, by the place of the handler that swallowed them. */
  swallowed: Map<string, number>;
}

/** The tallies of the chosen threads (all without `only`), merged across threads. */
function exceptionSummaries(
  tallies: Iterable<ExceptionTally>,
  only: Set<number> | undefined,
): ExceptionSummary[] {
  const merged = new Map<string, { summary: ExceptionSummary; at: Map<string, number> }>();
  for (const tally of tallies) {
    if (only !== undefined && !only.has(tally.tid)) continue;
    const key = `${tally.type}\0${tally.raisedAt}`;
    let entry = merged.get(key);
    if (entry === undefined) {
      entry = {
        summary: {
          type: tally.type,
          raisedAt: tally.raisedAt,
          raised: 0,
          caught: 0,
          swallowed: 0,
          swallowedAt: [],
        },
        at: new Map(),
      };
      merged.set(key, entry);
    }
    entry.summary.raised += tally.raised;
    entry.summary.caught += tally.caught;
    for (const [at, n] of tally.swallowed) {
      entry.summary.swallowed += n;
      entry.at.set(at, (entry.at.get(at) ?? 0) + n);
    }
  }
  const summaries = [...merged.values()].map(({ summary, at }) => {
    summary.swallowedAt = [...at].sort((a, b) => b[1] - a[1]).map(([place]) => place);
    return summary;
  });
  return summaries.sort((a, b) =>
    b.raised - a.raised || a.type.localeCompare(b.type) || a.raisedAt.localeCompare(b.raisedAt)
  );
}
