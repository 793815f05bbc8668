/**
 * The summary's task view (issue 14): per asyncio task, what its async
 * track (src/tasks.ts) adds up to. {@linkcode TaskTally} reads the track's
 * slices as the converter or a reader of a finished trace sends them: a
 * task's steps (`running`) come as they close, its life last, with how it
 * ended, its coroutine and who created it in its args.
 *
 * @module
 */

import type { AsyncSlice } from "./trace_model.ts";

/** One asyncio task, as its track tells it. Times are nanoseconds. */
export interface TaskSummary {
  /** The task's name: `Task-3`, or the one the program gave it. */
  name: string;
  /** The coroutine it runs (the function's name, as in the function table). */
  coroutine: string;
  /**
   * The function that created it: the innermost one outside asyncio's own
   * modules open when it was created. Absent when the creation was not
   * seen (3.8–3.11, the `setprofile` engine, `--no-c-calls`).
   */
  createdBy?: string;
  /** Where that function's code starts (`file:line`), when it is Python code. */
  createdAt?: string;
  /** From its creation (or, unseen, its first step) to its coroutine's end. */
  lifetimeNs: number;
  /** The time it ran: its steps together. What is not, it waited (or was not yet started). */
  ranNs: number;
  /** Its steps: its first start and every resumption. */
  steps: number;
  /**
   * How it ended: `result`, `exception`, `cancelled`; where the engine
   * cannot tell those apart `raised` (an exception or a cancellation) or
   * `ended` (any); `pending` when still running or waiting at the end.
   */
  ended: string;
}

/** A task whose life has not been read yet: its steps so far. */
interface OpenTask {
  steps: number;
  ranNs: number;
}

/**
 * Sums up the tasks of a trace from their async slices. Memory holds a
 * total per task (its steps so far until its life comes, then its row),
 * never the slices.
 *
 * @example
 * ```ts
 * import { TaskTally } from "./task_summary.ts";
 * import assert from "node:assert/strict";
 *
 * const tally = new TaskTally();
 * const track = { id: 1, track: "fetch-1 fetch", category: "asyncio", tid: 1, args: undefined };
 * tally.add({ ...track, name: "running", start: 1, duration: 0.5 }, 7);
 * tally.add({ ...track, name: "running", start: 3, duration: 0.25 }, 7);
 * tally.add({
 *   ...track, name: "fetch-1 fetch", start: 0.5, duration: 3,
 *   args: { ended: "result", coroutine: "fetch", created_by: "main", created_at: "a.py:9" },
 * }, 7);
 * assert.deepEqual(tally.tasks(), [{
 *   name: "fetch-1", coroutine: "fetch", createdBy: "main", createdAt: "a.py:9",
 *   lifetimeNs: 3000, ranNs: 750, steps: 2, ended: "result",
 * }]);
 * ```
 */
export class TaskTally {
  /** The tasks whose life is still to come, by process and track id. */
  readonly #open = new Map<string, OpenTask>();
  /** The tasks read, each with the thread it ran on (0: the trace does not say). */
  readonly #done: { task: TaskSummary; tid: number }[] = [];

  /** A slice of a task's track, in process `pid`. */
  add(slice: AsyncSlice, pid: number): void {
    const key = `${pid}:${slice.id}`;
    const ended = slice.args?.["ended"];
    let open = this.#open.get(key);
    if (typeof ended !== "string") {
      // A step: its life, which encloses it, closes after it.
      if (open === undefined) this.#open.set(key, open = { steps: 0, ranNs: 0 });
      open.steps++;
      open.ranNs += nanoseconds(slice.duration);
      return;
    }
    this.#open.delete(key);
    const args = slice.args!;
    const coroutine = typeof args["coroutine"] === "string" ? args["coroutine"] : "";
    // The life is named `<task name> <coroutine>`.
    const suffix = ` ${coroutine}`;
    const name = coroutine !== "" && slice.name.endsWith(suffix)
      ? slice.name.slice(0, -suffix.length)
      : slice.name;
    const by = args["created_by"];
    const at = args["created_at"];
    const task: TaskSummary = {
      name,
      coroutine,
      ...(typeof by === "string" ? { createdBy: by } : {}),
      ...(typeof by === "string" && typeof at === "string" ? { createdAt: at } : {}),
      lifetimeNs: nanoseconds(slice.duration),
      ranNs: open?.ranNs ?? 0,
      steps: open?.steps ?? 0,
      ended,
    };
    this.#done.push({ task, tid: slice.tid });
  }

  /**
   * The tasks (of the threads in `only`, if given: a task whose thread is
   * not known is kept), by the time they ran, the most first; ties by
   * name. Steps whose life never came (a trace cut inside one) are left
   * out.
   */
  tasks(only?: ReadonlySet<number>): TaskSummary[] {
    const tasks = this.#done
      .filter(({ tid }) => only === undefined || tid === 0 || only.has(tid))
      .map(({ task }) => task);
    return tasks.sort((a, b) =>
      b.ranNs - a.ranNs || compare(a.name, b.name) || b.lifetimeNs - a.lifetimeNs
    );
  }
}

/** Whole nanoseconds of µs, as the rest of the summary counts them. */
function nanoseconds(us: number): number {
  return Math.round(us * 1000);
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
