/**
 * The summary's figures computed the plain way, from every slice in
 * memory (sorted by start, the enclosing one first, and nested with a
 * stack), for tests to check `SummarySink` against.
 */

import type { FunctionSummary, SummaryReport } from "../src/summary.ts";
import type { Trace } from "./_trace.ts";

/** A slice as a test keeps it: times in whole nanoseconds. */
export interface Kept {
  tid: number;
  start: number;
  end: number;
  name: string;
  category: string;
  file?: string;
  line?: number;
  /** The slice's flow id, 0 for none. */
  flow: number;
  flowIn: boolean;
  unfinished: boolean;
}

/** The slices of a parsed Catapult trace. */
export function keptFromTrace(trace: Trace): Kept[] {
  return trace.traceEvents.filter((event) => event.ph === "X").map((event) => {
    const start = Math.round(event.ts * 1000);
    return {
      tid: event.tid,
      start,
      end: start + Math.round((event.dur ?? 0) * 1000),
      name: event.name,
      category: event.cat ?? "",
      file: typeof event.args?.file === "string" ? event.args.file : undefined,
      line: typeof event.args?.line === "number" ? event.args.line : undefined,
      flow: event.flow_in || event.flow_out ? parseInt(String(event.bind_id), 16) : 0,
      flowIn: event.flow_in === true,
      unfinished: event.args?.unfinished === true,
    };
  });
}

/** How a function is told apart: its name and where it is defined. */
function keyOf(f: { name: string; file?: string; line?: number }): string {
  return `${f.name} ${f.file ?? ""}:${f.line ?? ""}`;
}

/** The report's functions by {@linkcode keyOf}. */
export function byKey(report: SummaryReport): Map<string, Partial<FunctionSummary>> {
  return new Map(report.functions.map((f) => [keyOf(f), f]));
}

/** Every function's figures from `slices` (of the threads `onlyTids`, if given), by {@linkcode keyOf}. */
export function reference(
  slices: Kept[],
  onlyTids?: Set<number>,
): Map<string, Partial<FunctionSummary>> {
  const figures = new Map<
    string,
    Required<Omit<FunctionSummary, "file" | "line">> & Partial<FunctionSummary>
  >();
  const of = (slice: Kept) => {
    const key = keyOf(slice);
    let entry = figures.get(key);
    if (entry === undefined) {
      entry = {
        name: slice.name,
        kind: slice.category,
        calls: 0,
        slices: 0,
        totalNs: 0,
        selfNs: 0,
        meanNs: 0,
        maxNs: 0,
        unfinished: 0,
        maxSlices: 0,
        ranNs: 0,
        livedNs: 0,
        maxLivedNs: 0,
      };
      if (slice.file !== undefined) entry.file = slice.file;
      if (slice.line !== undefined) entry.line = slice.line;
      figures.set(key, entry);
    }
    return entry;
  };
  // The collector's own slices (its flushes) nest as any other, and are
  // not a function's time; they get no figures.
  const collector = (slice: Kept) => slice.category === "panopticon";
  // Exceptions are instants, not calls: the summary counts them apart; the
  // ends of the arrows from a task's creation (category "asyncio") are no
  // slices of their own.
  const kept = slices.filter((slice) =>
    (onlyTids === undefined || onlyTids.has(slice.tid)) && slice.category !== "exception" &&
    slice.category !== "asyncio"
  );
  for (const own of Map.groupBy(kept, (slice) => slice.tid).values()) {
    own.sort((a, b) => a.start - b.start || b.end - a.end);
    const stack: { slice: Kept; children: number }[] = [];
    const close = () => {
      const { slice, children } = stack.pop()!;
      if (!collector(slice)) of(slice).selfNs += slice.end - slice.start - children;
    };
    for (const slice of own) {
      while (stack.length > 0) {
        const top = stack.at(-1)!.slice;
        if (top.start <= slice.start && slice.end <= top.end) break;
        close();
      }
      const duration = slice.end - slice.start;
      if (stack.length > 0) stack.at(-1)!.children += duration;
      if (!collector(slice) && !stack.some((entry) => keyOf(entry.slice) === keyOf(slice))) {
        of(slice).totalNs += duration;
      }
      stack.push({ slice, children: 0 });
    }
    while (stack.length > 0) close();
  }
  const instances = new Map<number, Kept[]>();
  for (const slice of kept.filter((slice) => !collector(slice))) {
    const entry = of(slice);
    entry.slices++;
    entry.ranNs += slice.end - slice.start;
    if (slice.unfinished) entry.unfinished++;
    if (slice.flow === 0) instances.set(-instances.size - 1, [slice]);
    else instances.set(slice.flow, [...(instances.get(slice.flow) ?? []), slice]);
  }
  for (const chain of instances.values()) {
    const entry = of(chain[0]!);
    const ran = chain.reduce((sum, slice) => sum + slice.end - slice.start, 0);
    const lived = Math.max(...chain.map((s) => s.end)) - Math.min(...chain.map((s) => s.start));
    entry.calls++;
    entry.maxNs = Math.max(entry.maxNs, ran);
    entry.maxSlices = Math.max(entry.maxSlices, chain.length);
    entry.livedNs += lived;
    entry.maxLivedNs = Math.max(entry.maxLivedNs, lived);
  }
  const result = new Map<string, Partial<FunctionSummary>>();
  for (const [key, entry] of figures) {
    entry.meanNs = Math.round(entry.ranNs / entry.calls);
    const plain: Partial<FunctionSummary> = { ...entry };
    if (!["generator", "coroutine", "async_generator"].includes(entry.kind)) {
      for (const field of ["maxSlices", "ranNs", "livedNs", "maxLivedNs"] as const) {
        delete plain[field];
      }
    }
    result.set(key, plain);
  }
  return result;
}
