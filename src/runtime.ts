/**
 * The runtime's own work on the timeline (issue 14): garbage collections as
 * slices, and each thread's CPU time as a counter track. The frame-state
 * machine hands the `gc` and `cpu` records (docs/protocol.md, "The
 * runtime") to the helpers here.
 *
 * @module
 */

import type { RuntimeOptions } from "./cli.ts";
import type { GcRecord } from "./protocol.ts";
import type { Mark, SliceArgs } from "./trace_model.ts";

/** The category of garbage collection slices. */
export const GC_CATEGORY = "gc";

/** The category of the CPU counters. */
export const CPU_CATEGORY = "cpu";

/**
 * The name of a collection's slice: `gc generation 2`. One name a
 * generation, so that a reader can select the full collections at once.
 */
export function gcSliceName(generation: number): string {
  return `gc generation ${generation}`;
}

/** What a collection's slice carries: its generation and what it found. */
export function gcArgs(record: GcRecord): SliceArgs {
  return {
    generation: record.generation,
    collected: record.collected,
    uncollectable: record.uncollectable,
  };
}

/**
 * The name of a thread's CPU counter: `CPU 1: MainThread`, with the dense
 * thread id, so that two threads of one name keep two tracks. Perfetto
 * names the track after it and the series, `CPU 1: MainThread %`.
 */
export function cpuCounterName(tid: number, threadName: string): string {
  return `CPU ${tid}: ${threadName}`;
}

/** The last sample of one thread. */
interface Sample {
  ts: number;
  cpu: number;
  /** The counter's name, fixed at its first value. */
  name: string | undefined;
}

/**
 * Turns CPU time samples into counter values: for each interval between
 * two samples of a thread, the share of it that the thread ran, in percent
 * (0 while it slept or waited for I/O, a lock or the GIL; 100 while it
 * ran), placed at the interval's start, so that the track holds it until
 * the next sample. A thread's first sample only sets the baseline, and
 * {@linkcode CpuCounters.finish} ends each track at its last sample.
 *
 * @example Two samples of a thread that ran a quarter of the time
 * ```ts
 * import assert from "node:assert/strict";
 * import { CpuCounters } from "./runtime.ts";
 *
 * const counters = new CpuCounters(0);
 * assert.equal(counters.sample(1, "MainThread", 1_000_000, 500_000), undefined);
 * const mark = counters.sample(1, "MainThread", 5_000_000, 1_500_000);
 * assert.deepEqual(mark, {
 *   kind: "counter", tid: 0, ts: 1000, name: "CPU 1: MainThread", category: "cpu", args: { "%": 25 },
 * });
 * ```
 */
export class CpuCounters {
  readonly #t0: number;
  readonly #last = new Map<number, Sample>();

  /** `t0` is trace time zero, in ns. */
  constructor(t0: number) {
    this.#t0 = t0;
  }

  /**
   * A thread's sample: `tid` its dense id, `ts` and `cpu` in ns. Returns
   * the counter value of the interval since its previous sample, or
   * `undefined` for its first or for one no later than the previous.
   */
  sample(tid: number, threadName: string, ts: number, cpu: number): Mark | undefined {
    const last = this.#last.get(tid);
    if (last === undefined) {
      this.#last.set(tid, { ts, cpu, name: undefined });
      return undefined;
    }
    if (ts <= last.ts) return undefined;
    // Each clock is read a moment after the sample's time: a share can come
    // out a hair above 100%, or below 0 for a thread id that was reused.
    const share = Math.min(100, Math.max(0, (cpu - last.cpu) / (ts - last.ts) * 100));
    const mark: Mark = {
      kind: "counter",
      tid: 0,
      ts: (last.ts - this.#t0) / 1000,
      // Named once: a later renaming would split the track. Not at the
      // first sample, which may come before the thread's name does (the
      // collectors see a thread's first events before it is named).
      name: last.name ??= cpuCounterName(tid, threadName),
      category: CPU_CATEGORY,
      args: { "%": Math.round(share * 10) / 10 },
    };
    last.ts = ts;
    last.cpu = cpu;
    return mark;
  }

  /**
   * At the end of the stream: each counter ends at its thread's last
   * sample with a 0, for nothing is known after it (a thread that ended
   * runs no more), so that the last interval has an end.
   */
  finish(): Mark[] {
    const marks: Mark[] = [];
    for (const last of this.#last.values()) {
      if (last.name === undefined) continue;
      marks.push({
        kind: "counter",
        tid: 0,
        ts: (last.ts - this.#t0) / 1000,
        name: last.name,
        category: CPU_CATEGORY,
        args: { "%": 0 },
      });
    }
    this.#last.clear();
    return marks;
  }
}

/**
 * The value of `PANOPTICON_RUNTIME` for `runtime`: a word a line for each
 * record switched off (`no-gc`, `no-cpu-counters`, `no-tasks`), and
 * `thread-time` for `--cpu-time`, which is off by default; `undefined`
 * when nothing differs from the collector's defaults.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { runtimeVariable } from "./runtime.ts";
 *
 * assert.equal(runtimeVariable({ gc: false, cpuCounters: true, tasks: true }), "no-gc");
 * assert.equal(runtimeVariable({ gc: true, cpuCounters: true, tasks: true }), undefined);
 * assert.equal(runtimeVariable(undefined), undefined);
 * ```
 */
export function runtimeVariable(runtime: RuntimeOptions | undefined): string | undefined {
  if (runtime === undefined) return undefined;
  const words = [
    ...(runtime.gc ? [] : ["no-gc"]),
    ...(runtime.cpuCounters ? [] : ["no-cpu-counters"]),
    ...(runtime.tasks ? [] : ["no-tasks"]),
    ...(runtime.threadTime ? ["thread-time"] : []),
  ];
  return words.length > 0 ? words.join("\n") : undefined;
}
