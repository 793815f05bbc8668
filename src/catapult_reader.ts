/**
 * A streaming reader of Catapult JSON traces (the JSON object form that
 * {@linkcode CatapultWriter} writes, or the bare array form): it sends the
 * trace's process, threads, slices and marks to a {@linkcode TraceSink},
 * as the frame-state machine sent them to the writer.
 *
 * @module
 */

import type { JsonValue } from "./protocol.ts";
import { ArrowEnds, TASK_CATEGORY } from "./tasks.ts";
import type {
  AsyncSlice,
  ProcessInfo,
  Slice,
  SliceArgs,
  SliceSite,
  TraceSink,
  TraceSummary,
} from "./trace_model.ts";

/** A trace that cannot be read: the message says where and why. */
export class TraceReadError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "TraceReadError";
  }
}

/** Options of {@linkcode CatapultReader}. */
export interface CatapultReaderOptions {
  /**
   * Called with each warning: a trace cut short.
   *
   * @default {undefined}
   */
  onWarning?: (message: string) => void;
}

// Character codes the scanner looks for.
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const COLON = 0x3a;
const COMMA = 0x2c;
const NEWLINE = 0x0a;

// The fixed parts of a slice as the writer writes it.
const WRITER_HEAD = '{"ph":"X","name":"';
const PID_KEY = ',"pid":';
const TID_KEY = ',"tid":';
const TS_KEY = ',"ts":';
const DUR_KEY = ',"dur":';
const BIND_KEY = ',"bind_id":"0x';
const FLOW_IN_KEY = ',"flow_in":true';
const FLOW_OUT_KEY = ',"flow_out":true';
/** The most slice heads remembered (sites times their extra arguments). */
const MAX_HEADS = 100_000;

/** What the scanner is reading at the top of the document. */
const enum At {
  /** Before the first `{` or `[`. */
  Start,
  /** In the top object, before a key (or its end). */
  Key,
  /** After a key, before its `:`. */
  Colon,
  /** After the `:`, before the value. */
  Value,
  /** Inside a value of the top object (other than `traceEvents`), captured whole. */
  InValue,
  /** In the events array (`traceEvents`, or the top array), between events. */
  Events,
  /** Inside an event, captured whole. */
  InEvent,
  /** After the top value. */
  Done,
}

/** A JSON event as the reader looks at it. */
interface JsonEvent {
  ph?: unknown;
  name?: unknown;
  cat?: unknown;
  pid?: unknown;
  tid?: unknown;
  ts?: unknown;
  dur?: unknown;
  args?: unknown;
  s?: unknown;
  bind_id?: unknown;
  id2?: unknown;
  flow_in?: unknown;
  flow_out?: unknown;
  id?: unknown;
}

/** An async slice's `ph:"b"`, until its `ph:"e"`. */
interface AsyncBegin {
  name: string;
  tid: number;
  ts: number;
  args: SliceArgs | undefined;
}

/**
 * Reads a Catapult JSON trace pushed to it in pieces of text, and sends
 * what it holds to a sink: {@linkcode CatapultReader.push} the text in
 * order, then {@linkcode CatapultReader.finish}.
 *
 * Memory holds one event at a time (and the sites seen): the document is
 * scanned for the extent of each element of `traceEvents`, which is then
 * parsed alone. `process` comes once per process id, before its threads;
 * a thread is announced by its `thread_name` metadata or, without one, by
 * its first slice. Dense thread ids are the trace's own for the first
 * process. Sites are interned, so that the slices of one function share
 * one site. `finish` gets the trace's `otherData` as the summary
 * Panopticon wrote (for a trace from elsewhere, what can be counted).
 *
 * The asyncio tasks' tracks come back as async slices: each `ph:"b"` is
 * paired with the next `ph:"e"` of its process, category and `id` (the
 * writer writes them one after the other), and the creation arrows' ends,
 * the `asyncio` slices of no length with a flow, as arrows, not slices.
 *
 * @example
 * ```ts
 * import { CatapultReader, SummarySink } from "@panopticon/panopticon";
 * import assert from "node:assert/strict";
 *
 * const sink = new SummarySink();
 * const reader = new CatapultReader(sink);
 * reader.push('{"traceEvents":[\n{"ph":"M","pid":7,"name":"process_name","args":{"name":"python a.py"}},\n');
 * reader.push('{"ph":"X","name":"f","cat":"function","args":{"file":"a.py","line":3},"pid":7,"tid":1,"ts":1,"dur":2},\n');
 * reader.push('{"ph":"X","name":"main","cat":"function","args":{"file":"a.py","line":1},"pid":7,"tid":1,"ts":0,"dur":4}\n');
 * reader.push('],"otherData":{"python":"3.12.1","engine":"monitoring","complete":true,"events":4,"dropped":0}}\n');
 * reader.finish();
 * const report = sink.report();
 * assert.equal(report.run.program, "python a.py");
 * assert.deepEqual(report.functions.map((f) => [f.name, f.selfNs]), [["f", 2000], ["main", 2000]]);
 * ```
 */
export class CatapultReader {
  readonly #sink: TraceSink;
  readonly #onWarning: ((message: string) => void) | undefined;
  #text = "";
  /** Where the scan goes on in `#text`. */
  #at = 0;
  /** Where the element being captured starts in `#text`. */
  #from = 0;
  #state = At.Start;
  /** Whether the events are the top array rather than `traceEvents`. */
  #topArray = false;
  #key = "";
  /** Open containers inside the captured value. */
  #depth = 0;
  #inString = false;
  #escaped = false;
  /** The line `#text` starts on. */
  #line = 1;

  #otherData: Record<string, JsonValue> | undefined;
  readonly #pids = new Map<string, number>();
  readonly #tids = new Map<string, number>();
  readonly #announced = new Set<number>();
  #firstPid: string | undefined;
  #nextTid = 1_000_001;
  readonly #sites = new Map<string, SliceSite>();
  /** Sites by the text of a slice before its `"pid"` (see #writerSlice). */
  readonly #heads = new Map<string, SliceSite>();
  readonly #number = new DecimalReader();
  #lastPid = NaN;
  #lastPidKey = "";
  readonly #flowIds = new Map<string, number>();
  #flows = 0;
  /** The async slices begun and not yet ended, by process, category and id. */
  readonly #asyncOpen = new Map<string, AsyncBegin[]>();
  readonly #asyncIds = new Map<string, number>();
  /** The task arrows, joined from their two ends. */
  readonly #arrows = new ArrowEnds();
  #slices = 0;
  #unfinished = 0;
  #end = 0;
  readonly #slice: Slice = {
    tid: 0,
    start: 0,
    duration: 0,
    site: { name: "", category: "" },
    flow: 0,
    flowIn: false,
    flowOut: false,
    args: undefined,
  };

  constructor(sink: TraceSink, options: CatapultReaderOptions = {}) {
    this.#sink = sink;
    this.#onWarning = options.onWarning;
  }

  /**
   * Reads the next piece of the document.
   *
   * @throws {TraceReadError} if it is not a JSON trace.
   */
  push(text: string): void {
    this.#text += text;
    this.#scan();
    // Keep only what an unfinished element still needs.
    const keep = this.#state === At.InEvent || this.#state === At.InValue ? this.#from : this.#at;
    this.#line += countLines(this.#text, 0, keep);
    this.#text = this.#text.slice(keep);
    this.#at -= keep;
    this.#from -= keep;
  }

  /**
   * Ends the document: a trace cut short (in the middle of its events)
   * is read as far as it goes, with a warning; then the sink is finished.
   *
   * @throws {TraceReadError} if the document is empty or not a trace.
   */
  finish(): TraceSummary {
    if (this.#state === At.Start) {
      throw new TraceReadError("the trace is empty: expected a JSON object or array");
    }
    if (this.#state !== At.Done) {
      const line = this.#line + countLines(this.#text, 0, this.#at);
      this.#onWarning?.(
        `the trace is cut short at line ${line} (the JSON document does not end): ` +
          "summarizing what comes before",
      );
    }
    const other = this.#otherData ?? {};
    const number = (key: string) =>
      typeof other[key] === "number" ? other[key] as number : undefined;
    const string = (key: string) =>
      typeof other[key] === "string" ? other[key] as string : undefined;
    this.#ensureProcess(this.#firstPid ?? "0");
    const summary: TraceSummary = {
      complete: this.#state === At.Done && other["complete"] !== false,
      events: number("events") ?? this.#slices,
      recorded: number("recorded"),
      dropped: number("dropped") ?? 0,
      reason: string("reason"),
      slices: this.#slices,
      omittedSlices: number("omitted_slices") ?? 0,
      unfinished: this.#unfinished,
      threads: this.#announced.size,
      duration: this.#end,
      pid: this.#pids.values().next().value ?? 0,
      pythonVersion: string("python") ?? "",
      engine: string("engine") ?? "",
      protocol: number("protocol") ?? 0,
      pythonMaxRss: number("python_max_rss"),
    };
    const collector = string("collector");
    if (collector !== undefined) summary.collector = collector;
    const clock = string("clock");
    if (clock !== undefined) summary.clock = clock;
    const limited = other["limited"];
    if (
      typeof limited === "object" && limited !== null && !Array.isArray(limited) &&
      typeof limited["ts"] === "number" && typeof limited["events"] === "number"
    ) {
      summary.limited = { ts: limited["ts"], events: limited["events"] };
    }
    this.#sink.finish(summary);
    return summary;
  }

  /** Scans `#text` from `#at` as far as it goes. */
  #scan(): void {
    const text = this.#text;
    const length = text.length;
    let at = this.#at;
    while (at < length) {
      switch (this.#state) {
        case At.Start: {
          at = skipSpace(text, at);
          if (at >= length) break;
          const c = text.charCodeAt(at);
          if (c === OPEN_BRACE) this.#state = At.Key;
          else if (c === OPEN_BRACKET) {
            this.#state = At.Events;
            this.#topArray = true;
          } else this.#fail(at, "expected a JSON object or array");
          at++;
          break;
        }
        case At.Key: {
          at = skipSpace(text, at);
          if (at >= length) break;
          const c = text.charCodeAt(at);
          if (c === COMMA) {
            at++;
            break;
          }
          if (c === CLOSE_BRACE) {
            this.#state = At.Done;
            at++;
            break;
          }
          if (c !== QUOTE) this.#fail(at, "expected a key");
          const end = endOfString(text, at + 1);
          if (end < 0) {
            // The key goes on in the next piece: read it again from its quote.
            this.#at = at;
            return;
          }
          this.#key = JSON.parse(text.slice(at, end + 1));
          this.#state = At.Colon;
          at = end + 1;
          break;
        }
        case At.Colon:
          at = skipSpace(text, at);
          if (at >= length) break;
          if (text.charCodeAt(at) !== COLON) this.#fail(at, "expected a colon after a key");
          this.#state = At.Value;
          at++;
          break;
        case At.Value: {
          at = skipSpace(text, at);
          if (at >= length) break;
          if (this.#key === "traceEvents" && text.charCodeAt(at) === OPEN_BRACKET) {
            this.#state = At.Events;
            at++;
            break;
          }
          this.#startValue(At.InValue, at);
          break;
        }
        case At.InValue: {
          const end = this.#valueEnd(text, at, true);
          if (end < 0) {
            at = length;
            break;
          }
          const value = this.#parse(this.#from, end);
          if (
            this.#key === "otherData" && typeof value === "object" && value !== null &&
            !Array.isArray(value)
          ) {
            this.#otherData = value as Record<string, JsonValue>;
          }
          this.#state = At.Key;
          at = end;
          break;
        }
        case At.Events: {
          at = skipSpace(text, at);
          if (at >= length) break;
          const c = text.charCodeAt(at);
          if (c === COMMA) {
            at++;
            break;
          }
          if (c === CLOSE_BRACKET) {
            this.#state = this.#topArray ? At.Done : At.Key;
            at++;
            break;
          }
          if (c === OPEN_BRACE) {
            const end = this.#writerSlice(text, at);
            if (end > 0) {
              at = end;
              break;
            }
          }
          this.#startValue(At.InEvent, at);
          break;
        }
        case At.InEvent: {
          const end = this.#valueEnd(text, at, true);
          if (end < 0) {
            at = length;
            break;
          }
          const event = this.#parse(this.#from, end);
          if (typeof event === "object" && event !== null && !Array.isArray(event)) {
            this.#event(event as JsonEvent);
          }
          this.#state = At.Events;
          at = end;
          break;
        }
        case At.Done:
          at = skipSpace(text, at);
          if (at < length) this.#fail(at, "unexpected text after the end of the trace");
          break;
      }
    }
    this.#at = at;
  }

  /** A value (or an event) begins at `at`: scanned in `state` until {@linkcode #valueEnd} finds its end. */
  #startValue(state: At, at: number): void {
    this.#state = state;
    this.#from = at;
    this.#depth = 0;
    this.#inString = false;
    this.#escaped = false;
  }

  /**
   * The index just past the value that starts at `#from`, scanning on from
   * `at`; -1 if it does not end in the text so far. A value that is not a
   * container ends before the next `,`, `}` or `]` at its level (`bare`).
   */
  #valueEnd(text: string, at: number, bare: boolean): number {
    const length = text.length;
    let depth = this.#depth;
    let inString = this.#inString;
    let escaped = this.#escaped;
    for (; at < length; at++) {
      const c = text.charCodeAt(at);
      if (inString) {
        if (escaped) escaped = false;
        else if (c === BACKSLASH) escaped = true;
        else if (c === QUOTE) {
          inString = false;
          if (depth === 0) {
            this.#depth = 0;
            this.#inString = false;
            return at + 1;
          }
        }
        continue;
      }
      if (c === QUOTE) inString = true;
      else if (c === OPEN_BRACE || c === OPEN_BRACKET) depth++;
      else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
        if (depth === 0) {
          // The end of the enclosing container: a bare value ends here.
          this.#depth = 0;
          return at;
        }
        if (--depth === 0) {
          this.#depth = 0;
          this.#inString = false;
          return at + 1;
        }
      } else if (c === COMMA && depth === 0 && bare) {
        this.#depth = 0;
        return at;
      }
    }
    this.#depth = depth;
    this.#inString = inString;
    this.#escaped = escaped;
    return -1;
  }

  #parse(from: number, end: number): unknown {
    const source = this.#text.slice(from, end);
    try {
      return JSON.parse(source);
    } catch (error) {
      const line = this.#line + countLines(this.#text, 0, from);
      throw new TraceReadError(
        `line ${line}: not valid JSON (${error instanceof Error ? error.message : error}): ` +
          `${source.length > 80 ? `${source.slice(0, 80)}…` : source}`,
      );
    }
  }

  #fail(at: number, what: string): never {
    const line = this.#line + countLines(this.#text, 0, at);
    throw new TraceReadError(
      `line ${line}: ${what}, got ${JSON.stringify(this.#text.slice(at, at + 20))}: ` +
        "this is not a Catapult JSON trace",
    );
  }

  #event(event: JsonEvent): void {
    const pid = key(event.pid);
    switch (event.ph) {
      case "X":
        this.#onSlice(event, pid);
        break;
      case "b":
      case "e":
        this.#onAsync(event, pid);
        break;
      case "M": {
        const args = isObject(event.args) ? event.args : {};
        if (event.name === "process_name") {
          this.#ensureProcess(pid, typeof args["name"] === "string" ? args["name"] : undefined);
        } else if (event.name === "thread_name") {
          this.#ensureProcess(pid);
          const tid = this.#tid(pid, event.tid);
          this.#announced.add(tid);
          this.#sink.thread({
            tid,
            name: typeof args["name"] === "string" ? args["name"] : `Thread ${key(event.tid)}`,
            ident: typeof args["ident"] === "number" ? args["ident"] : null,
            nativeId: typeof args["native_id"] === "number" ? args["native_id"] : null,
            ...(typeof args["serial"] === "number" ? { serial: args["serial"] } : {}),
          });
        }
        break;
      }
      case "i":
      case "I":
      case "C": {
        if (typeof event.ts !== "number") break;
        this.#ensureProcess(pid);
        const counter = event.ph === "C";
        const tid = counter ? 0 : this.#thread(pid, event.tid);
        const ts = event.ts;
        if (ts > this.#end) this.#end = ts;
        this.#sink.mark?.({
          kind: counter ? "counter" : "instant",
          tid,
          ts,
          name: typeof event.name === "string" ? event.name : "",
          category: typeof event.cat === "string" ? event.cat : "",
          args: isObject(event.args) ? event.args as Record<string, JsonValue> : {},
        });
        break;
      }
    }
  }

  #onSlice(event: JsonEvent, pid: string): void {
    if (typeof event.ts !== "number") return;
    this.#ensureProcess(pid);
    let args: SliceArgs | undefined;
    let file: string | undefined;
    let line: number | undefined;
    if (isObject(event.args)) {
      let rest: Record<string, JsonValue> | undefined;
      for (const [name, value] of Object.entries(event.args)) {
        if (name === "file" && typeof value === "string") file = value;
        else if (name === "line" && typeof value === "number") line = value;
        else (rest ??= {})[name] = value as JsonValue;
      }
      args = rest;
    }
    const site = this.#site(
      typeof event.name === "string" ? event.name : "",
      typeof event.cat === "string" ? event.cat : "",
      file,
      line,
    );
    const flowIn = event.flow_in === true;
    const flowOut = event.flow_out === true;
    const bind = event.bind_id ?? event.id2;
    let flow = 0;
    if ((flowIn || flowOut) && bind !== undefined) flow = this.#flowId(bind);
    const duration = typeof event.dur === "number" && event.dur > 0 ? event.dur : 0;
    this.#emit(this.#thread(pid, event.tid), event.ts, duration, site, args, flow, flowIn, flowOut);
  }

  /** Half of an async slice: a begin waits for its end, which sends the slice. */
  #onAsync(event: JsonEvent, pid: string): void {
    if (typeof event.ts !== "number") return;
    this.#ensureProcess(pid);
    const category = typeof event.cat === "string" ? event.cat : "";
    const id = key(event.id);
    const trackKey = `${pid}\0${category}\0${id}`;
    let open = this.#asyncOpen.get(trackKey);
    if (event.ph === "b") {
      if (open === undefined) this.#asyncOpen.set(trackKey, open = []);
      open.push({
        name: typeof event.name === "string" ? event.name : "",
        tid: this.#thread(pid, event.tid),
        ts: event.ts,
        args: isObject(event.args) ? event.args as SliceArgs : undefined,
      });
      return;
    }
    const begin = open?.pop();
    if (begin === undefined) return;
    if (open!.length === 0) this.#asyncOpen.delete(trackKey);
    const slice: AsyncSlice = {
      id: this.#asyncId(event.id),
      // The track's own name is not in the trace: its life's is.
      track: begin.name,
      name: begin.name,
      category,
      tid: begin.tid,
      pid: this.#pids.get(pid)!,
      start: begin.ts,
      duration: Math.max(0, event.ts - begin.ts),
      args: begin.args,
    };
    this.#sink.asyncSlice?.(slice);
  }

  /** An async track's number: Panopticon's hex ids as they are, others numbered in order. */
  #asyncId(id: unknown): number {
    if (typeof id === "string" && /^0x[0-9a-f]{1,13}$/i.test(id)) return parseInt(id, 16);
    if (typeof id === "number" && Number.isSafeInteger(id) && id >= 0) return id;
    const text = JSON.stringify(id ?? null);
    let number = this.#asyncIds.get(text);
    if (number === undefined) {
      number = 2 ** 53 - 1 - this.#asyncIds.size;
      this.#asyncIds.set(text, number);
    }
    return number;
  }

  /**
   * An end of a creation arrow (a slice of no length, category `asyncio`,
   * with a flow): where it leaves is kept until it arrives.
   */
  #arrowEnd(tid: number, ts: number, name: string, flow: number, flowIn: boolean): void {
    if (flowIn) this.#arrows.arrives(flow, tid, ts, this.#sink);
    else this.#arrows.leaves(flow, tid, ts, name);
  }

  /** The one site of a name, category, file and line. */
  #site(name: string, category: string, file?: string, line?: number): SliceSite {
    const siteKey = `${name}\0${category}\0${file ?? ""}\0${line ?? ""}`;
    let site = this.#sites.get(siteKey);
    if (site === undefined) {
      site = { name, category };
      if (file !== undefined) (site as { file?: string }).file = file;
      if (line !== undefined) (site as { line?: number }).line = line;
      this.#sites.set(siteKey, site);
    }
    return site;
  }

  #emit(
    tid: number,
    start: number,
    duration: number,
    site: SliceSite,
    args: SliceArgs | undefined,
    flow: number,
    flowIn: boolean,
    flowOut: boolean,
  ): void {
    if (site.category === TASK_CATEGORY && duration === 0 && flow !== 0 && flowIn !== flowOut) {
      this.#arrowEnd(tid, start, site.name, flow, flowIn);
      return;
    }
    const slice = this.#slice;
    slice.tid = tid;
    slice.start = start;
    slice.duration = duration;
    slice.site = site;
    slice.flow = flow;
    slice.flowIn = flow !== 0 && flowIn;
    slice.flowOut = flow !== 0 && flowOut;
    slice.args = args;
    this.#slices++;
    if (args !== undefined && args["unfinished"] === true) this.#unfinished++;
    if (start + duration > this.#end) this.#end = start + duration;
    this.#sink.slice(slice);
  }

  /**
   * A slice as {@linkcode CatapultWriter} writes it, read without
   * `JSON.parse` (a third of the time):
   * `{"ph":"X","name":…,"cat":…,"args":{"file":…,"line":…},"pid":7,"tid":1,"ts":12.5,"dur":0.25}`,
   * then `,"bind_id":"0x…"` with `,"flow_in":true` and `,"flow_out":true`
   * for a flow, on one line. The part before `"pid"` is the site's, parsed
   * once (with `JSON.parse`) and looked up after that; it holds no other
   * argument (such a slice, rare, takes the general way). Returns the index
   * after the slice, or -1 when it is not in that form: the general way
   * then reads it.
   */
  #writerSlice(text: string, at: number): number {
    if (!text.startsWith(WRITER_HEAD, at)) return -1;
    const newline = text.indexOf("\n", at);
    const pidAt = text.indexOf(PID_KEY, at);
    // A raw `,"pid":` is never inside a string (its quote would be escaped).
    if (newline < 0 || pidAt < 0 || pidAt > newline) return -1;
    const head = text.slice(at, pidAt);
    let site = this.#heads.get(head);
    if (site === undefined) {
      site = writerSite(
        head,
        (name, category, file, line) => this.#site(name, category, file, line),
      );
      if (site === undefined) return -1;
      if (this.#heads.size < MAX_HEADS) this.#heads.set(head, site);
    }
    const number = this.#number;
    let i = number.read(text, pidAt + PID_KEY.length, false);
    const pid = number.value;
    if (i < 0 || !text.startsWith(TID_KEY, i)) return -1;
    i = number.read(text, i + TID_KEY.length, false);
    const rawTid = number.value;
    if (i < 0 || !text.startsWith(TS_KEY, i)) return -1;
    i = number.read(text, i + TS_KEY.length, true);
    const start = number.value;
    if (i < 0 || !text.startsWith(DUR_KEY, i)) return -1;
    i = number.read(text, i + DUR_KEY.length, true);
    const duration = number.value;
    if (i < 0) return -1;
    let flow = 0;
    let flowIn = false;
    let flowOut = false;
    if (text.startsWith(BIND_KEY, i)) {
      i += BIND_KEY.length;
      const from = i;
      while (i < newline && i - from < 14 && isHex(text.charCodeAt(i))) i++;
      if (i === from || text.charCodeAt(i) !== QUOTE) return -1;
      flow = parseInt(text.slice(from, i), 16);
      i++;
      if (text.startsWith(FLOW_IN_KEY, i)) {
        flowIn = true;
        i += FLOW_IN_KEY.length;
      }
      if (text.startsWith(FLOW_OUT_KEY, i)) {
        flowOut = true;
        i += FLOW_OUT_KEY.length;
      }
    }
    if (text.charCodeAt(i) !== CLOSE_BRACE) return -1;
    let pidKey = this.#lastPidKey;
    if (pid !== this.#lastPid) {
      pidKey = String(pid);
      this.#lastPid = pid;
      this.#lastPidKey = pidKey;
    }
    this.#ensureProcess(pidKey);
    // The first process's threads keep their ids (see #tid).
    const tid = pidKey === this.#firstPid && rawTid < 1_000_000 && this.#announced.has(rawTid)
      ? rawTid
      : this.#thread(pidKey, rawTid);
    this.#emit(tid, start / 1000, duration / 1000, site, undefined, flow, flowIn, flowOut);
    return i + 1;
  }

  /** A flow's number: Panopticon's hex ids as they are, others numbered in order. */
  #flowId(bind: unknown): number {
    if (typeof bind === "string" && /^0x[0-9a-f]{1,13}$/i.test(bind)) return parseInt(bind, 16);
    if (typeof bind === "number" && Number.isSafeInteger(bind) && bind > 0) return bind;
    const text = JSON.stringify(bind);
    let id = this.#flowIds.get(text);
    if (id === undefined) {
      id = 2 ** 53 - 1 - this.#flows++;
      this.#flowIds.set(text, id);
    }
    return id;
  }

  /** Calls the sink's `process` the first time a process id is seen. */
  #ensureProcess(pid: string, name?: string): void {
    if (this.#pids.has(pid)) return;
    const number = Number(pid);
    this.#pids.set(pid, Number.isSafeInteger(number) ? number : this.#pids.size);
    this.#firstPid ??= pid;
    const info: ProcessInfo = {
      pid: this.#pids.get(pid)!,
      name: name ?? "",
      argv: [],
      pythonVersion: "",
      engine: "",
      protocol: 0,
    };
    this.#sink.process(info);
  }

  /** The dense id of a thread, announced (with a made-up name) if it was not. */
  #thread(pid: string, raw: unknown): number {
    const tid = this.#tid(pid, raw);
    if (!this.#announced.has(tid)) {
      this.#announced.add(tid);
      this.#sink.thread({ tid, name: `Thread ${key(raw)}`, ident: null, nativeId: null });
    }
    return tid;
  }

  #tid(pid: string, raw: unknown): number {
    const name = `${pid}/${key(raw)}`;
    let tid = this.#tids.get(name);
    if (tid === undefined) {
      // The first process keeps its own small ids; the others get new ones.
      const own = Number(raw);
      tid = pid === this.#firstPid && Number.isSafeInteger(own) && own >= 0 && own < 1_000_000
        ? own
        : this.#nextTid++;
      this.#tids.set(name, tid);
    }
    return tid;
  }
}

/**
 * The site of a slice head as the writer writes it (`{"ph":"X","name":…,
 * "cat":…` and its `"args"` with `file` and `line` only), or undefined.
 */
function writerSite(
  head: string,
  site: (name: string, category: string, file?: string, line?: number) => SliceSite,
): SliceSite | undefined {
  let event: unknown;
  try {
    event = JSON.parse(`${head}}`);
  } catch {
    return undefined;
  }
  if (!isObject(event) || typeof event["name"] !== "string" || typeof event["cat"] !== "string") {
    return undefined;
  }
  const keys = Object.keys(event);
  if (keys.some((key) => key !== "ph" && key !== "name" && key !== "cat" && key !== "args")) {
    return undefined;
  }
  const args = event["args"];
  if (args === undefined) return site(event["name"], event["cat"]);
  if (!isObject(args)) return undefined;
  const { file, line, ...rest } = args;
  if (Object.keys(rest).length > 0) return undefined;
  if (file !== undefined && typeof file !== "string") return undefined;
  if (line !== undefined && typeof line !== "number") return undefined;
  return site(event["name"], event["cat"], file, line);
}

/**
 * Reads a JSON number as the writer writes them: a whole number, or (with
 * `decimals`) microseconds with up to three decimals, into whole
 * nanoseconds: `12.5` is 12500. Anything else (an exponent, more
 * decimals, a number past 2^53 ns) is left to `JSON.parse`.
 */
class DecimalReader {
  /** The number read: the whole number, or nanoseconds. */
  value = 0;

  /** Reads from `at`; returns the index after the number, or -1. */
  read(text: string, at: number, decimals: boolean): number {
    let i = at;
    const negative = text.charCodeAt(i) === 0x2d;
    if (negative) i++;
    let whole = 0;
    const from = i;
    for (let c = text.charCodeAt(i); c >= 0x30 && c <= 0x39; c = text.charCodeAt(++i)) {
      whole = whole * 10 + (c - 0x30);
    }
    if (i === from || i - from > 13) return -1;
    let fraction = 0;
    let scale = 1000;
    if (text.charCodeAt(i) === 0x2e) {
      if (!decimals) return -1;
      i++;
      const start = i;
      for (let c = text.charCodeAt(i); c >= 0x30 && c <= 0x39; c = text.charCodeAt(++i)) {
        scale /= 10;
        fraction += (c - 0x30) * scale;
      }
      if (i === start || i - start > 3) return -1;
    }
    const c = text.charCodeAt(i);
    if (c === 0x65 || c === 0x45) return -1;
    const value = decimals ? whole * 1000 + fraction : whole;
    if (value > Number.MAX_SAFE_INTEGER) return -1;
    this.value = negative ? -value : value;
    return i;
  }
}

function isHex(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66) || (c >= 0x41 && c <= 0x46);
}

/** The index of the quote that closes a string whose text starts at `at`; -1 if the text ends first. */
function endOfString(text: string, at: number): number {
  let escaped = false;
  for (; at < text.length; at++) {
    const c = text.charCodeAt(at);
    if (escaped) escaped = false;
    else if (c === BACKSLASH) escaped = true;
    else if (c === QUOTE) return at;
  }
  return -1;
}

function skipSpace(text: string, at: number): number {
  while (at < text.length) {
    const c = text.charCodeAt(at);
    if (c !== 0x20 && c !== NEWLINE && c !== 0x0d && c !== 0x09) break;
    at++;
  }
  return at;
}

function countLines(text: string, from: number, to: number): number {
  let lines = 0;
  for (let at = text.indexOf("\n", from); at !== -1 && at < to; at = text.indexOf("\n", at + 1)) {
    lines++;
  }
  return lines;
}

function key(value: unknown): string {
  return typeof value === "string" ? value : JSON.stringify(value ?? 0);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
