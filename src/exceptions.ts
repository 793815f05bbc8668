/**
 * Exceptions on the timeline: what the frame-state machine does with the
 * `raise` and `handled` events (`docs/protocol.md`, "Exceptions and
 * values"). Each exception raised in recorded code becomes an instant (a
 * slice of no duration, so that it can carry a flow arrow) nested in the
 * slice of the frame that raised it; where it was caught becomes another,
 * and an arrow joins the two. A handler that neither re-raised the
 * exception nor raised another in its place swallowed it: both instants
 * say so (`args.swallowed`), and the summary lists each kind.
 *
 * The collector reports a raise where the exception starts in recorded
 * code, and a `handled` wherever a handler starts (an `except`, but also a
 * `finally`, a `with` block's exit, a generator's own cleanup). The verdict
 * is the converter's, from what happens next on the thread:
 *
 * - the handling frame ends normally (returns or yields): swallowed;
 * - another exception is raised whose chain of `__context__` does not hold
 *   this one: the handler had finished, so it was swallowed;
 * - the handling frame unwinds with an exception raised in the handler
 *   (whose context is this one): caught and replaced;
 * - the handling frame unwinds and nothing new was raised: the exception
 *   goes on (a bare `raise`, a `finally`, a `with` that did not suppress
 *   it), and the next handler is where it may be caught.
 *
 * An exception that no recorded handler catches (the program's traceback,
 * or C code that swallows it, as `hasattr` does) keeps its raise instant,
 * without an arrow.
 *
 * State is per thread and bounded by the handlers in progress on its
 * stack, never by the length of the stream.
 *
 * @module
 */

import type { ExceptionRecord, JsonValue } from "./protocol.ts";
import type { SliceSite } from "./trace_model.ts";

/** The category of the instants of exceptions. */
export const EXCEPTION_CATEGORY = "exception";

/** One kind of swallowed exception, as the summary lists it. */
export interface SwallowedException {
  /** The exception's type. */
  type: string;
  /** Where it was raised, `file:line`. */
  raised: string;
  /** Where the handler that swallowed it starts, `file:line`. */
  swallowed: string;
  /** How many times. */
  count: number;
}

/** How many exceptions a stream showed. */
export interface ExceptionCounts {
  /** Raised in recorded code (each raise instant). */
  raised: number;
  /** Caught by a recorded handler, swallowed or not. */
  caught: number;
  /** Swallowed by a recorded handler. */
  swallowed: number;
}

/** A raise, held until its fate is known. */
interface Raised {
  key: number;
  context: number;
  record: ExceptionRecord;
  tid: number;
  ts: number;
  depth: number;
}

/** A handler in progress: where an exception was handled, waiting for the verdict. */
interface Pending {
  key: number;
  raised: Raised | undefined;
  /** The handling frame's index on its thread's stack. */
  index: number;
  tid: number;
  ts: number;
  depth: number;
  line: number;
  file: string;
}

/** What one thread holds: the exception propagating, and the handlers in progress. */
export class ThreadExceptions {
  flight: Raised | undefined = undefined;
  readonly pending: Pending[] = [];
}

/** How a frame with a handler in progress ended. */
export type FrameEnd = "return" | "unwind" | "closed";

/** Where the tracker sends its instants. */
export type InstantEmitter = (
  tid: number,
  depth: number,
  ts: number,
  site: SliceSite,
  flow: number,
  flowIn: boolean,
  flowOut: boolean,
  args: Record<string, JsonValue>,
) => void;

/**
 * The exceptions of one stream. The machine hands it the `exception`
 * records and the events, with where on the thread's stack they happen.
 */
export class ExceptionTracker {
  readonly #emit: InstantEmitter;
  readonly #newFlow: () => number;
  /** The `exception` records not used yet, by id: each is used by one event. */
  readonly #records = new Map<number, ExceptionRecord>();
  readonly #sites = new Map<string, SliceSite>();
  readonly #swallowed = new Map<string, SwallowedException>();
  readonly counts: ExceptionCounts = { raised: 0, caught: 0, swallowed: 0 };

  constructor(emit: InstantEmitter, newFlow: () => number) {
    this.#emit = emit;
    this.#newFlow = newFlow;
  }

  /** An `exception` record, before its event. */
  define(record: ExceptionRecord): void {
    this.#records.set(record.id, record);
  }

  /**
   * Op 16: exception `key` is raised in the frame at depth `depth - 1`
   * (the instant is at `depth`), described by record `ref`.
   */
  raise(state: ThreadExceptions, tid: number, ts: number, depth: number, key: number, ref: number) {
    const record = this.#records.get(ref) ?? placeholder(ref);
    this.#records.delete(ref);
    // An exception still in flight was never handled in recorded code.
    if (state.flight !== undefined) this.#uncaught(state.flight);
    const chain = this.#chain(state, record.context);
    const pending = state.pending;
    // A handler whose exception is not in the new one's chain has finished.
    while (pending.length > 0 && !chain.has(pending.at(-1)!.key)) {
      this.#verdict(pending.pop()!, "swallowed");
    }
    state.flight = { key, context: record.context, record, tid, ts, depth };
  }

  /** Op 17: the frame at stack `index` (its instants at `depth`) handles exception `key`. */
  handled(
    state: ThreadExceptions,
    tid: number,
    ts: number,
    index: number,
    depth: number,
    key: number,
    file: string,
    line: number,
  ): void {
    let raised: Raised | undefined;
    if (state.flight !== undefined && state.flight.key === key) {
      raised = state.flight;
      state.flight = undefined;
    } else {
      if (state.flight !== undefined) this.#uncaught(state.flight);
      state.flight = undefined;
      const pending = state.pending;
      const again = pending.findLastIndex((p) => p.key === key && p.index === index);
      if (again >= 0) {
        // Handled again in the same frame (a `finally` after an `except`,
        // a bare `raise` caught further out): the latest handler counts.
        raised = pending[again]!.raised;
        pending.splice(again, 1);
      }
    }
    // A handler of an exception never seen raised (before recording
    // started, or in code left out) has no instant to draw from.
    if (raised === undefined) return;
    state.pending.push({ key, raised, index, tid, ts, depth, line, file });
  }

  /** The frame at stack `index` ends (and every frame above it, closed). */
  frameEnd(state: ThreadExceptions, index: number, how: FrameEnd): void {
    const pending = state.pending;
    while (pending.length > 0 && pending.at(-1)!.index >= index) {
      const p = pending.pop()!;
      if (p.index > index || how === "closed") {
        this.#verdict(p, "unknown");
      } else if (how === "return") {
        this.#verdict(p, "swallowed");
      } else if (state.flight !== undefined && state.flight.key !== p.key) {
        this.#verdict(p, "replaced", state.flight.record.type);
      } else if (p.raised !== undefined) {
        // The exception goes on: the next handler decides.
        state.flight = p.raised;
      }
    }
  }

  /** Recording of the thread stops, or the stream ends: what is held is written as it stands. */
  finishThread(state: ThreadExceptions): void {
    this.frameEnd(state, 0, "closed");
    if (state.flight !== undefined) this.#uncaught(state.flight);
    state.flight = undefined;
  }

  /** The kinds of swallowed exceptions, most frequent first. */
  swallowed(): SwallowedException[] {
    return [...this.#swallowed.values()].sort((a, b) => b.count - a.count);
  }

  /** The keys of `context` and its own contexts, as far as this thread knows them. */
  #chain(state: ThreadExceptions, context: number): Set<number> {
    const chain = new Set<number>();
    let key = context;
    while (key !== 0 && !chain.has(key)) {
      chain.add(key);
      const known = state.pending.find((p) => p.key === key)?.raised;
      key = known?.context ?? 0;
    }
    return chain;
  }

  #uncaught(raised: Raised): void {
    this.counts.raised++;
    this.#emit(
      raised.tid,
      raised.depth,
      raised.ts,
      this.#site("raise", raised.record.type),
      0,
      false,
      false,
      raiseArgs(raised.record),
    );
  }

  #verdict(p: Pending, verdict: "swallowed" | "replaced" | "unknown", by?: string): void {
    const raised = p.raised;
    if (raised === undefined) return;
    const record = raised.record;
    const flow = this.#newFlow();
    const at = `${p.file}:${p.line}`;
    const swallowed = verdict === "swallowed";
    const args = raiseArgs(record);
    args.caught = at;
    if (verdict !== "unknown") args.swallowed = swallowed;
    this.counts.raised++;
    this.counts.caught++;
    this.#emit(
      raised.tid,
      raised.depth,
      raised.ts,
      this.#site("raise", record.type),
      flow,
      false,
      true,
      args,
    );
    const handler: Record<string, JsonValue> = {
      type: record.type,
      file: p.file,
      line: p.line,
      raised: `${record.file}:${record.line}`,
    };
    if (verdict !== "unknown") handler.swallowed = swallowed;
    if (by !== undefined) handler.replaced_by = by;
    this.#emit(
      p.tid,
      p.depth,
      p.ts,
      this.#site(swallowed ? "swallowed" : "caught", record.type),
      flow,
      true,
      false,
      handler,
    );
    if (swallowed) {
      this.counts.swallowed++;
      const raisedAt = `${record.file}:${record.line}`;
      const id = `${record.type}\0${raisedAt}\0${at}`;
      const known = this.#swallowed.get(id);
      if (known !== undefined) known.count++;
      else {this.#swallowed.set(id, {
          type: record.type,
          raised: raisedAt,
          swallowed: at,
          count: 1,
        });}
    }
  }

  #site(what: "raise" | "caught" | "swallowed", type: string): SliceSite {
    const name = `${what} ${type}`;
    let site = this.#sites.get(name);
    if (site === undefined) {
      site = { name, category: EXCEPTION_CATEGORY };
      this.#sites.set(name, site);
    }
    return site;
  }
}

function raiseArgs(record: ExceptionRecord): Record<string, JsonValue> {
  return { type: record.type, message: record.message, file: record.file, line: record.line };
}

function placeholder(ref: number): ExceptionRecord {
  return {
    kind: "exception",
    id: ref,
    type: `<exception ${ref}>`,
    message: "",
    file: "",
    line: 0,
    context: 0,
  };
}
