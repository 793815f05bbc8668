/** Reading a finished Catapult trace in tests: slices, nesting and flow chains. */

/** One event of a Catapult trace, as the tests look at it. */
export interface TraceEvent {
  ph: string;
  name: string;
  cat?: string;
  ts: number;
  dur?: number;
  pid: number;
  tid: number;
  args?: Record<string, unknown>;
  bind_id?: string | number;
  flow_in?: boolean;
  flow_out?: boolean;
}

/** A parsed trace file. */
export interface Trace {
  traceEvents: TraceEvent[];
  otherData?: Record<string, unknown>;
}

/** Reads and parses a trace file (it must be one valid JSON document). */
export async function readTrace(path: string): Promise<Trace> {
  return JSON.parse(await Deno.readTextFile(path)) as Trace;
}

/** The complete (`X`) slices, optionally only those with a name. */
export function slices(trace: Trace, name?: string): TraceEvent[] {
  return trace.traceEvents.filter((e) => e.ph === "X" && (name === undefined || e.name === name))
    .sort((a, b) => a.ts - b.ts);
}

/** True when `outer` encloses `inner` on the same thread. */
export function encloses(outer: TraceEvent, inner: TraceEvent): boolean {
  const end = outer.ts + (outer.dur ?? 0);
  const innerEnd = inner.ts + (inner.dur ?? 0);
  return outer !== inner && outer.pid === inner.pid && outer.tid === inner.tid &&
    outer.ts <= inner.ts && innerEnd <= end + 1e-6;
}

/** The innermost slice that encloses `slice`, if any. */
export function parentOf(trace: Trace, slice: TraceEvent): TraceEvent | undefined {
  let best: TraceEvent | undefined;
  for (const candidate of slices(trace)) {
    if (!encloses(candidate, slice)) continue;
    if (!best || (candidate.dur ?? 0) < (best.dur ?? 0)) best = candidate;
  }
  return best;
}

/** Flow chains: the slices sharing a `bind_id`, in time order. */
export function flowChains(trace: Trace): Map<string, TraceEvent[]> {
  const chains = new Map<string, TraceEvent[]>();
  for (const slice of slices(trace)) {
    if (slice.bind_id === undefined) continue;
    const key = String(slice.bind_id);
    const chain = chains.get(key) ?? [];
    chain.push(slice);
    chains.set(key, chain);
  }
  return chains;
}

/**
 * The outermost slices of one thread: those no other slice encloses.
 * Slices of category `exclude` are left out (the collector's flushes).
 */
export function rootSlices(trace: Trace, tid: number, exclude = "panopticon"): TraceEvent[] {
  const own = slices(trace).filter((s) => s.tid === tid && s.cat !== exclude)
    .sort((a, b) => a.ts - b.ts || (b.dur ?? 0) - (a.dur ?? 0));
  const roots: TraceEvent[] = [];
  let end = -Infinity;
  for (const slice of own) {
    if (slice.ts + (slice.dur ?? 0) <= end + 1e-6) continue;
    roots.push(slice);
    end = slice.ts + (slice.dur ?? 0);
  }
  return roots;
}

/** The names of the threads, by tid, from `thread_name` metadata. */
export function threadNames(trace: Trace): Map<number, string> {
  const names = new Map<number, string>();
  for (const event of trace.traceEvents) {
    if (event.ph === "M" && event.name === "thread_name") {
      names.set(event.tid, String(event.args?.name));
    }
  }
  return names;
}
