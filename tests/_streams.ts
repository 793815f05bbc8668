/**
 * Random collector streams, for tests that check the summary against a
 * plain computation: a small simulated Python whose threads call plain
 * functions, generators and C functions, suspend generators and resume
 * them (on any thread), leave frames early and stop with frames open.
 */

import type { Op, ProtocolEvent, ProtocolRecord } from "../src/protocol.ts";

/** A deterministic generator of numbers in [0, 1) (mulberry32). */
export function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Codes 1 to 3 are plain functions, 4 and 5 generators, 6 a coroutine. */
const CODES = [
  { id: 1, qualname: "alpha", type: "function" },
  { id: 2, qualname: "beta", type: "function" },
  { id: 3, qualname: "gamma", type: "function" },
  { id: 4, qualname: "numbers", type: "generator" },
  { id: 5, qualname: "letters", type: "generator" },
  { id: 6, qualname: "fetch", type: "coroutine" },
] as const;

interface Frame {
  code: number;
  /** 0 for a plain function; the generator's id otherwise; -1 for a C call. */
  frame: number;
}

/**
 * The records of a random run of `events` events on `threads` threads.
 * Timestamps grow by 1 to 10 ns an event, so that no two events share one.
 */
export function randomStream(seed: number, events: number, threads = 3): ProtocolRecord[] {
  const next = random(seed);
  const pick = (n: number) => Math.floor(next() * n);
  const records: ProtocolRecord[] = [
    {
      kind: "hello",
      protocol: 2,
      pid: 77,
      python: "3.12.1",
      engine: "monitoring",
      t0: 1000,
      main_thread: 1,
      argv: ["random.py"],
    },
  ];
  for (let thread = 1; thread <= threads; thread++) {
    records.push({
      kind: "thread",
      thread,
      native_id: 100 + thread,
      name: thread === 1 ? "MainThread" : `worker-${thread}`,
    });
  }
  for (const code of CODES) {
    records.push({
      kind: "code",
      id: code.id,
      module: "__main__",
      qualname: code.qualname,
      file: "random.py",
      line: code.id * 10,
      type: code.type,
    });
  }
  records.push({ kind: "cfunc", id: 1, name: "len" }, { kind: "cfunc", id: 2, name: "time.sleep" });

  const stacks: Frame[][] = Array.from({ length: threads + 1 }, () => []);
  const suspended: Frame[] = [];
  let ids = 0x7000;
  let ts = 1000;
  let batch: ProtocolEvent[] = [];
  const emit = (op: Op, thread: number, frame: number, ref: number) => {
    ts += 1 + pick(10);
    batch.push([op, thread, ts, frame, ref]);
    if (batch.length >= 64) {
      records.push({ kind: "events", events: batch });
      batch = [];
    }
  };
  for (let n = 0; n < events; n++) {
    const thread = 1 + pick(threads);
    const stack = stacks[thread]!;
    const top = stack[stack.length - 1];
    const roll = next();
    if (top?.frame === -1) {
      // Inside a C call: it returns (or raises).
      emit(roll < 0.9 ? 6 : 7, thread, 0, 0);
      stack.pop();
    } else if (roll < 0.3 || stack.length === 0) {
      const code = CODES[pick(CODES.length)]!;
      const frame = code.type === "function" ? 0 : ++ids;
      emit(0, thread, frame, code.id);
      stack.push({ code: code.id, frame });
    } else if (roll < 0.4 && suspended.length > 0) {
      const frame = suspended.splice(pick(suspended.length), 1)[0]!;
      emit(1, thread, frame.frame, frame.code);
      stack.push(frame);
    } else if (roll < 0.5) {
      emit(5, thread, 0, 1 + pick(2));
      stack.push({ code: 0, frame: -1 });
    } else if (roll < 0.65 && top!.frame > 0) {
      emit(4, thread, top!.frame, top!.code);
      stack.pop();
      suspended.push(top!);
    } else if (roll < 0.67 && stack.slice(0, -1).some((frame) => frame.frame > 0)) {
      // A generator frame below the top ends: the ones above it close with
      // it. (A plain function's end names frame 0, which is the innermost.)
      let at = pick(stack.length - 1);
      while (stack[at]!.frame <= 0) at = (at + 1) % (stack.length - 1);
      const below = stack[at]!;
      emit(roll < 0.66 ? 2 : 3, thread, below.frame, below.code);
      stack.length = at;
    } else {
      emit(next() < 0.9 ? 2 : 3, thread, top!.frame, top!.code);
      stack.pop();
    }
  }
  if (batch.length > 0) records.push({ kind: "events", events: batch });
  // Some runs end with their end record, some are cut short.
  if (seed % 2 === 0) {
    records.push({ kind: "end", ts: ts + 5, events, dropped: 0, reason: "exit" });
  }
  return records;
}
