/**
 * The collector protocol: the records the Python collector sends, and their
 * decoding from NDJSON. `docs/protocol.md` is the contract; this module is
 * its executable form.
 *
 * @module
 */

import { LineSplitter } from "./_lines.ts";

/**
 * The newest protocol version this converter understands. Version 2 added
 * `packed` events and `end.max_rss`; version 3 added the marks (ops 8 to
 * 12, `mark` records) and `code.hidden`; version 4 added binary frames
 * (`batch` records, `events` with `marshal`), serial thread ids, the
 * `limit` record, `hello.collector`, `hello.thread_ids`, `hello.clock`
 * and `thread.ident`, and processes (the `spawn` event, op 14, and
 * `hello.parent`). Versions 1 to 3 are still read.
 */
export const PROTOCOL_VERSION = 4;

/**
 * The operation codes of an event, the first element of
 * `[op, thread, ts, frame, ref]`.
 *
 * @example Naming an event's operation
 * ```ts
 * import { Op } from "@panopticon/panopticon";
 * import assert from "node:assert/strict";
 *
 * const event = [4, 140001, 1200, 7002, 2];
 * assert.equal(event[0], Op.Suspend);
 * ```
 */
export const Op = {
  /** A Python frame starts afresh. `frame` is its id, `ref` its code id. */
  Call: 0,
  /** A suspended generator, coroutine or async generator frame resumes. */
  Resume: 1,
  /** A frame returns for the last time: its id is retired. */
  Return: 2,
  /** A frame ends by an exception propagating out of it: its id is retired. */
  Unwind: 3,
  /** A frame yields or awaits: it is suspended, not ended. */
  Suspend: 4,
  /** A C function is called. `frame` is 0, `ref` its cfunc id. */
  CCall: 5,
  /** The innermost C call returns. */
  CReturn: 6,
  /** The innermost C call raises. */
  CRaise: 7,
  /** A marker on the thread's timeline. `ref` is its `mark` record. */
  Instant: 8,
  /** A counter takes new values. `ref` is its `mark` record. */
  Counter: 9,
  /** A named span of the program's own opens. `frame` is its span id, `ref` its `mark`. */
  SpanBegin: 10,
  /** The span `frame` closes. */
  SpanEnd: 11,
  /** Recording stops on the thread: what is still open on it is closed. */
  Stop: 12,
  /**
   * The innermost open call starts a child process (protocol 4). `frame` is
   * 0, `ref` the spawn token, 1, 2, 3… within the process, which the
   * child's `hello.parent` names.
   */
  Spawn: 14,
} as const;

/**
 * The largest operation code of {@linkcode Op}. Not every code below it is
 * one: 13 is a batch frame's thread switch, never an event.
 */
export const MAX_OP = 14;

/**
 * Whether `op` is an operation code of {@linkcode Op}: an integer 0 to 12,
 * or 14.
 *
 * @example
 * ```ts
 * import { isOp, Op } from "@panopticon/panopticon";
 * import assert from "node:assert/strict";
 *
 * assert.equal(isOp(Op.Spawn), true);
 * assert.equal(isOp(13), false); // a batch frame's thread switch, never an event
 * assert.equal(isOp(1.5), false);
 * ```
 */
export function isOp(op: number): boolean {
  // `op >>> 0 === op` holds only for a non-negative integer number.
  return (op >>> 0) === op && op <= MAX_OP && op !== 13;
}

/** How messages name the operation codes of {@linkcode Op}. */
export const OP_RANGE = "0 to 12 or 14";

/**
 * The extended operation codes (`docs/protocol.md`, "Exceptions and
 * values"): 16 and up, written in a batch frame as op 15 followed by the
 * code minus 16. Each carries a `frame` (an object's key, or 0) and a `ref`.
 */
export const ExtOp = {
  /**
   * An exception is raised in the innermost open frame. `frame` is the
   * exception's key (its address), `ref` its `exception` record.
   */
  Raise: 16,
  /**
   * The innermost open frame handles the exception whose key is `frame`
   * (an `except`, `finally` or `with` block starts). `ref` is the line.
   */
  Handled: 17,
  /**
   * Values of the innermost open frame (its arguments, or what it returns
   * or yields): `ref` is a `values` record.
   */
  Values: 18,
  /**
   * The innermost open frame runs a new line (`--lines`): `ref` is the
   * line number, `frame` 0.
   */
  Line: 19,
  /**
   * The innermost open frame, an asyncio task's coroutine, suspends awaiting
   * the future whose key (its address, or the Python collector's identity)
   * is `frame`; `ref` 0 (monitoring engine; see docs/protocol.md, "Awaiting").
   */
  Await: 20,
  /** The future whose key is `frame` completes here; `ref` 0. */
  Done: 21,
} as const;

/** One of the extended operation codes of {@linkcode ExtOp}. */
export type ExtOp = typeof ExtOp[keyof typeof ExtOp];

/** The largest extended operation code of {@linkcode ExtOp}. */
export const MAX_EXT_OP = 21;

/**
 * Whether `op` is an operation code the converter knows: one of
 * {@linkcode Op} (see {@linkcode isOp}) or of {@linkcode ExtOp}.
 */
export function isKnownOp(op: number): boolean {
  return isOp(op) || ((op >>> 0) === op && op >= ExtOp.Raise && op <= MAX_EXT_OP);
}

/** How messages name every operation code the converter knows. */
export const KNOWN_OP_RANGE = `0 to 12, 14 or ${ExtOp.Raise} to ${MAX_EXT_OP}`;

/**
 * The longest binary frame the converter accepts (protocol 4), 2^30 bytes:
 * a frame is held in memory whole before it is decoded, and a length
 * beyond this is a corrupt record, not a batch (the native collector's are
 * 64 KiB).
 */
export const MAX_FRAME_BYTES = 2 ** 30;

/** One of the operation codes of {@linkcode Op}, 0 to 12 and 14. */
export type Op = typeof Op[keyof typeof Op];

/**
 * One event: `[op, thread, ts, frame, ref]`, or with `--cpu-time`
 * (`hello.thread_time`) `[op, thread, ts, frame, ref, threadTime]` for ops
 * 0 to 7: the thread's CPU time at the event, in ns.
 *
 * `thread` is the Python thread ident, `ts` nanoseconds of the collector's
 * monotonic clock, `frame` the frame id (`id(frame)`, 0 for C events) and
 * `ref` a code id (Python events) or a cfunc id (C events), 0 when unknown.
 */
export type ProtocolEvent =
  | readonly [op: Op | ExtOp, thread: number, ts: number, frame: number, ref: number]
  | readonly [
    op: Op | ExtOp,
    thread: number,
    ts: number,
    frame: number,
    ref: number,
    threadTime: number,
  ];

/** The kind of a Python code object, and the category of its slices. */
export type CodeType = "function" | "generator" | "coroutine" | "async_generator";

/** The first record of every stream: who is talking, and trace time zero. */
export interface HelloRecord {
  /** Always `"hello"`. */
  kind: "hello";
  /** The protocol version the collector speaks. */
  protocol: number;
  /** The traced process's id. */
  pid: number;
  /** The interpreter version, e.g. `"3.12.1"`. */
  python: string;
  /** The hook that produced the events: `"setprofile"` or `"monitoring"`. */
  engine: string;
  /** The clock's value when recording began: trace time zero, in ns. */
  t0: number;
  /** The ident of the main thread, which becomes thread 1. */
  main_thread: number;
  /** The program's `sys.argv`. */
  argv: string[];
  /** The per-run token the converter handed to the collector, if any. */
  secret?: string;
  /** Which collector wrote the stream (protocol 4): `"native"` or `"python"`. */
  collector?: string;
  /**
   * What the stream's thread ids are (protocol 4): `"ident"` (the default),
   * Python thread idents, which the system reuses once a thread has ended;
   * or `"serial"`, numbers the collector gives each thread, never reused.
   */
  thread_ids?: "ident" | "serial";
  /** How the collector reads the time (protocol 4): `"tsc"` or `"monotonic"`. */
  clock?: string;
  /**
   * Whether the events of ops 0 to 7 carry their thread's CPU time
   * (`--cpu-time`, protocol 4: see `docs/protocol.md`, "Thread time").
   */
  thread_time?: boolean;
  /**
   * The process that started this one (protocol 4, see `docs/protocol.md`,
   * "Processes"): its pid, and the token of the `spawn` event it recorded,
   * 0 when it recorded none. Absent for the run's first process.
   */
  parent?: ParentRef;
  /**
   * The program's working directory at start-up (protocol 4, optional):
   * what relative `code` files are relative to, for the source text of
   * `--lines`.
   */
  cwd?: string;
}

/** Who started a process: the `parent` of its `hello` (protocol 4). */
export interface ParentRef {
  /** The parent's process id. */
  pid: number;
  /** The token of the parent's `spawn` event; 0 when unknown. */
  token: number;
}

/** A thread starts (or is first seen) and is named. */
export interface ThreadRecord {
  /** Always `"thread"`. */
  kind: "thread";
  /**
   * The Python thread ident (`threading.get_ident()`), or the collector's
   * serial number when the hello says `thread_ids: "serial"`.
   */
  thread: number;
  /** The operating system's thread id, when Python knows it. */
  native_id: number | null;
  /** The Python thread name (`MainThread`, `Thread-1 (target)`). */
  name: string;
  /** The Python thread ident, with serial thread ids (protocol 4). */
  ident?: number;
}

/** Defines a Python code object, before any event uses it. */
export interface CodeRecord {
  /** Always `"code"`. */
  kind: "code";
  /** The number events use for it. */
  id: number;
  /** The module name from the frame's globals; `"__main__"` for the program. */
  module: string;
  /** The qualified name (`Class.method`, `outer.<locals>.inner`, `<module>`). */
  qualname: string;
  /** `co_filename`, as Python reports it. */
  file: string;
  /** `co_firstlineno`. */
  line: number;
  /** What kind of frames the code runs as. */
  type: CodeType;
  /**
   * The collector's own code (protocol 3): its frames are followed, so that
   * the stack stays right, but not shown, nor the C calls made straight
   * from them; the frames they call are shown.
   */
  hidden?: boolean;
}

/** A JSON value, as a mark's arguments hold them. */
export type JsonValue =
  | string
  | number
  | boolean
  | null
  | JsonValue[]
  | { [key: string]: JsonValue };

/**
 * What an instant, a counter or a span shows (protocol 3), before the
 * event that uses it.
 */
export interface MarkRecord {
  /** Always `"mark"`. */
  kind: "mark";
  /** The number events use for it. */
  id: number;
  /** The name on the timeline. */
  name: string;
  /** The category: `mark` for the program's own, `panopticon` for the collector's. */
  category: string;
  /** Its arguments; for a counter, each series' value, a number. */
  args: { [key: string]: JsonValue };
}

/** Defines a C function (a builtin or a method implemented in C). */
export interface CFuncRecord {
  /** Always `"cfunc"`. */
  kind: "cfunc";
  /** The number events use for it. */
  id: number;
  /** The name a reader expects: `print`, `time.sleep`, `list.append`. */
  name: string;
}

/**
 * A batch of events in the order they happened. It has exactly one of
 * `events`, `packed` and `marshal`; {@linkcode checkRecord} makes sure of it.
 */
export interface EventsRecord {
  /** Always `"events"`. */
  kind: "events";
  /** The events, each `[op, thread, ts, frame, ref]`, as JSON arrays (protocol 1). */
  events?: readonly ProtocolEvent[];
  /**
   * The same events, packed (protocol 2): the base64 of CPython's
   * `marshal.dumps(events, 2)`. {@linkcode unpackEvents} decodes it; the
   * converter decodes it, and checks it, when it converts the batch.
   */
  packed?: string;
  /**
   * Protocol 4: the length of the binary frame that follows the record's
   * line, the marshal bytes that `packed` would hold in base64.
   */
  marshal?: number;
  /**
   * The binary frame of a `marshal` record: its `marshal` bytes, attached
   * by {@linkcode NdjsonDecoder} (it is not a field on the wire). The
   * decoder hands out a view of its own buffers, valid only during the
   * callback that receives the record: copy it to keep it.
   */
  payload?: Uint8Array;
}

/**
 * Protocol 4: a batch of events from the native collector, in a binary
 * frame of `bytes` bytes that follows the record's line
 * (`docs/protocol.md`, section `batch`). {@linkcode unpackBatch} decodes it.
 */
export interface BatchRecord {
  /** Always `"batch"`. */
  kind: "batch";
  /** The length of the binary frame. */
  bytes: number;
  /** How many events the frame holds (thread switches are not events). */
  events: number;
  /** The time, in ns, that the first event's delta counts from. */
  ts: number;
  /** The thread of the events before the frame's first thread switch. */
  thread: number;
  /**
   * The binary frame, attached by {@linkcode NdjsonDecoder} (it is not a
   * field on the wire). The decoder hands out a view of its own buffers,
   * valid only during the callback that receives the record: copy it to
   * keep it. A record built in memory must carry its frame here.
   */
  payload?: Uint8Array;
}

/**
 * Protocol 4: recording stopped because the run reached `--max-events`.
 * The collector recorded no event after this one; the program ran on.
 */
export interface LimitRecord {
  /** Always `"limit"`. */
  kind: "limit";
  /** When recording stopped, in ns. */
  ts: number;
  /** The events recorded until then: the limit. */
  events: number;
  /** The thread whose event reached the limit. */
  thread: number;
}

/** Time the collector spent on itself, shown as its own slice. */
export interface FlushRecord {
  /** Always `"flush"`. */
  kind: "flush";
  /** The ident of the thread that flushed. */
  thread: number;
  /** When the flush began, in ns. */
  start: number;
  /** When it ended, in ns. */
  end: number;
  /** How many events it sent. */
  events: number;
}

/** The last record of a complete stream. */
export interface EndRecord {
  /** Always `"end"`. */
  kind: "end";
  /** When the collector stopped, in ns. */
  ts: number;
  /** Events recorded in all. */
  events: number;
  /** Events recorded but not sent (0 unless something failed). */
  dropped: number;
  /** Why recording stopped, e.g. `"exit"`. */
  reason: string;
  /** The Python process's peak resident memory, in bytes, when the collector knows it. */
  max_rss?: number;
}

/**
 * An exception raised in recorded code, before the `raise` event (op 16)
 * that refers to it. Used by that one event: the converter forgets it then.
 */
export interface ExceptionRecord {
  /** Always `"exception"`. */
  kind: "exception";
  /** The number the event refers to. */
  id: number;
  /** The exception's type: `ValueError`, `json.decoder.JSONDecodeError`. */
  type: string;
  /** Its message, rendered without running the program's code, bounded. */
  message: string;
  /** Where it was raised: the file of the frame that raised it. */
  file: string;
  /** The line it was raised at. */
  line: number;
  /**
   * The key of its `__context__` (or `__cause__`), the exception being
   * handled when it was raised; 0 when none.
   */
  context: number;
}

/**
 * Values of one frame (protocol 4, `--args`, `--returns`), before the
 * `values` event (op 18) that refers to it. Used by that one event.
 */
export interface ValuesRecord {
  /** Always `"values"`. */
  kind: "values";
  /** The number the event refers to. */
  id: number;
  /** Each value as the text it renders to, by name (a parameter, `return`, `yield`). */
  values: { [name: string]: string };
}

/** Any record of the protocol, discriminated by `kind`. */
export type ProtocolRecord =
  | ExceptionRecord
  | ValuesRecord
  | HelloRecord
  | ThreadRecord
  | CodeRecord
  | CFuncRecord
  | EventsRecord
  | FlushRecord
  | EndRecord
  | MarkRecord
  | BatchRecord
  | LimitRecord
  | RuntimeRecord;

// --- The runtime's own records: garbage collection, CPU time -------------
// (protocol 4, added with issue 14; docs/protocol.md, "The runtime").

/**
 * One garbage collection (`gc.callbacks`), on the thread that ran it: a
 * slice of its own.
 */
export interface GcRecord {
  /** Always `"gc"`. */
  kind: "gc";
  /** The thread that ran the collection. */
  thread: number;
  /** When it began, in ns. */
  start: number;
  /** When it ended, in ns. */
  end: number;
  /** The generation collected, 0 to 2. */
  generation: number;
  /** The unreachable objects it found and freed. */
  collected: number;
  /** The unreachable objects it could not free (`gc.garbage`). */
  uncollectable: number;
}

/**
 * The CPU time of each thread the collector knows, sampled at `ts`: the
 * converter shows the share of each interval that the thread ran as a
 * counter track per thread.
 */
export interface CpuRecord {
  /** Always `"cpu"`. */
  kind: "cpu";
  /** When the sample was taken, in ns. */
  ts: number;
  /** `[thread, cpu]` pairs: the thread's id on the wire and its CPU time so far, in ns. */
  threads: readonly (readonly [thread: number, cpu: number])[];
}

/** The records of the runtime's own work: {@linkcode GcRecord} and {@linkcode CpuRecord}. */
export type RuntimeRecord = GcRecord | CpuRecord;

/** A record that a binary frame follows on the wire (protocol 4). */
export type FrameRecord = BatchRecord | (EventsRecord & { marshal: number });

/** Options of a {@linkcode ProtocolError}. */
export interface ProtocolErrorOptions extends ErrorOptions {
  /**
   * Where in the binary frame after the line the stream went wrong: the
   * offset of the byte, from 0. The message then names the frame.
   *
   * @default {undefined} (the error is in the line itself)
   */
  byte?: number;
}

/**
 * A stream that breaks the protocol: malformed, out of order, or from a
 * newer collector. The message names the line (1-based) and what was
 * expected there; for an error inside a binary frame (protocol 4), the
 * line of the record the frame follows and the offset of the byte, as
 * `the binary frame after line 12, byte 40: …`.
 *
 * @example Telling a protocol error apart
 * ```ts
 * import { decodeRecord, ProtocolError } from "@panopticon/panopticon";
 * import assert from "node:assert/strict";
 *
 * assert.throws(() => decodeRecord('{"kind":"end","ts":"soon"}', 12), (error) => {
 *   assert(error instanceof ProtocolError);
 *   assert.equal(error.line, 12);
 *   assert.equal(error.byte, undefined);
 *   assert.equal(error.message, 'line 12: expected an integer "ts" in an "end" record');
 *   return true;
 * });
 * const inFrame = new ProtocolError(3, "an unknown op 14", { byte: 40 });
 * assert.equal(inFrame.message, "the binary frame after line 3, byte 40: an unknown op 14");
 * ```
 */
export class ProtocolError extends Error {
  /**
   * The 1-based line (or record number) where the stream went wrong; for
   * an error in a binary frame, the line of the record it follows.
   */
  readonly line: number;
  /** For an error in a binary frame, the offset of the byte in the frame; else undefined. */
  readonly byte: number | undefined;

  /**
   * Makes the error `line <line>: <detail>`, or with `options.byte`
   * `the binary frame after line <line>, byte <byte>: <detail>`.
   */
  constructor(line: number, detail: string, options?: ProtocolErrorOptions) {
    const byte = options?.byte;
    super(
      byte === undefined
        ? `line ${line}: ${detail}`
        : `the binary frame after line ${line}, byte ${byte}: ${detail}`,
      options,
    );
    this.name = "ProtocolError";
    this.line = line;
    this.byte = byte;
  }
}

const KINDS =
  "hello, thread, code, cfunc, mark, events, batch, limit, flush, end, exception, values, gc or cpu";
const CODE_TYPES: ReadonlySet<string> = new Set<CodeType>([
  "function",
  "generator",
  "coroutine",
  "async_generator",
]);

/**
 * Decodes and validates one NDJSON line.
 *
 * Returns `undefined` for a blank line. Throws a {@linkcode ProtocolError}
 * naming `line` when the text is not a JSON object, has an unknown `kind`
 * or lacks a required field. Unknown fields are kept and ignored. A record
 * that a binary frame follows (`batch`, `events` with `marshal`) comes
 * without its `payload`: the frame is not in the line, and
 * {@linkcode NdjsonDecoder} reads it from the stream.
 *
 * @example Decoding one line
 * ```ts
 * import { decodeRecord } from "@panopticon/panopticon";
 * import assert from "node:assert/strict";
 *
 * const record = decodeRecord('{"kind":"cfunc","id":1,"name":"print"}', 5);
 * assert.deepEqual(record, { kind: "cfunc", id: 1, name: "print" });
 * assert.equal(decodeRecord("  ", 6), undefined);
 * ```
 */
export function decodeRecord(text: string, line: number): ProtocolRecord | undefined {
  const packed = packedOf(text);
  if (packed !== undefined) return { kind: "events", packed };
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    // Blank lines are rare, so they are recognised here, off the hot path.
    if (text.trim() === "") return undefined;
    // V8 appends its own "(line 1 column 9)", which would contradict ours.
    const reason = (error as Error).message.replace(/ \(line \d+ column \d+\)$/, "");
    throw new ProtocolError(line, `expected a JSON object, got text that is not JSON (${reason})`, {
      cause: error,
    });
  }
  // A frame follows its line on the wire: a "payload" field in the JSON is
  // not it, and is ignored as any unknown field is.
  if (typeof value === "object" && value !== null && "payload" in value) {
    delete (value as { payload?: unknown }).payload;
  }
  return checkRecord(value, line);
}

/** How collector.py begins an `events` record with `packed` events. */
const PACKED_START = '{"kind":"events","packed":"';
const PACKED_END = '"}';

/**
 * The `packed` field of a line that is exactly a packed `events` record as
 * collector.py writes it, or `undefined` for any other line, which then
 * goes through `JSON.parse`. Such lines are nearly all of a stream's bytes,
 * and cutting the base64 out of the line costs nothing, where parsing the
 * JSON copies it (measured: 3% of the conversion time, a quarter of its
 * peak heap). Base64 holds no
 * character that JSON escapes; a line with a quote or a backslash in the
 * middle is left to `JSON.parse`.
 */
function packedOf(text: string): string | undefined {
  if (!text.startsWith(PACKED_START) || !text.endsWith(PACKED_END)) return undefined;
  const packed = text.slice(PACKED_START.length, -PACKED_END.length);
  return packed.includes('"') || packed.includes("\\") ? undefined : packed;
}

/**
 * Validates an already parsed record, e.g. one built in memory. Returns it,
 * typed, or throws a {@linkcode ProtocolError} naming `line`.
 *
 * @example Checking a record built in code
 * ```ts
 * import { checkRecord } from "@panopticon/panopticon";
 * import assert from "node:assert/strict";
 *
 * assert.throws(() => checkRecord({ kind: "flush", thread: 1 }, 3), /line 3: expected an integer "start"/);
 * ```
 */
export function checkRecord(value: unknown, line: number): ProtocolRecord {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ProtocolError(line, `expected a JSON object, got ${describe(value)}`);
  }
  const record = value as Record<string, unknown>;
  const kind = record.kind;
  switch (kind) {
    case "events":
      checkEvents(record, line);
      break;
    case "hello":
      integer(record, "protocol", line);
      integer(record, "pid", line);
      string(record, "python", line);
      string(record, "engine", line);
      integer(record, "t0", line);
      integer(record, "main_thread", line);
      if (!Array.isArray(record.argv) || !record.argv.every((arg) => typeof arg === "string")) {
        throw fieldError(line, "an array of strings", "argv", kind);
      }
      if (record.secret !== undefined) string(record, "secret", line);
      if (record.collector !== undefined) string(record, "collector", line);
      if (record.clock !== undefined) string(record, "clock", line);
      if (record.thread_time !== undefined && typeof record.thread_time !== "boolean") {
        throw fieldError(line, "a boolean", "thread_time", kind);
      }
      if (record.cwd !== undefined) string(record, "cwd", line);
      if (record.parent !== undefined) checkParent(record.parent, line);
      // Unlike the two above, which only describe the run, the thread ids
      // change how the stream is read: a value this converter does not
      // know is an error, not a default.
      if (
        record.thread_ids !== undefined && record.thread_ids !== "ident" &&
        record.thread_ids !== "serial"
      ) {
        throw new ProtocolError(
          line,
          `expected "thread_ids" to be "serial" or "ident" in a "hello" record, got ${
            preview(record.thread_ids)
          }`,
        );
      }
      break;
    case "thread":
      integer(record, "thread", line);
      if (record.native_id !== null) {
        if (!Number.isSafeInteger(record.native_id)) {
          throw fieldError(line, "an integer or null", "native_id", kind, record.native_id);
        }
      }
      string(record, "name", line);
      if (record.ident !== undefined) integer(record, "ident", line);
      break;
    case "batch":
      count(record, "bytes", line);
      count(record, "events", line);
      integer(record, "ts", line);
      integer(record, "thread", line);
      checkPayload(record, record.bytes as number, line);
      break;
    case "limit":
      integer(record, "ts", line);
      integer(record, "events", line);
      integer(record, "thread", line);
      break;
    case "code":
      integer(record, "id", line);
      string(record, "module", line);
      string(record, "qualname", line);
      string(record, "file", line);
      integer(record, "line", line);
      if (typeof record.type !== "string" || !CODE_TYPES.has(record.type)) {
        throw new ProtocolError(
          line,
          `expected "type" to be "function", "generator", "coroutine" or "async_generator" in a "code" record, got ${
            preview(record.type)
          }`,
        );
      }
      if (record.hidden !== undefined && typeof record.hidden !== "boolean") {
        throw fieldError(line, "a boolean", "hidden", kind, record.hidden);
      }
      break;
    case "mark":
      integer(record, "id", line);
      string(record, "name", line);
      string(record, "category", line);
      if (typeof record.args !== "object" || record.args === null || Array.isArray(record.args)) {
        throw fieldError(line, "an object", "args", kind, record.args);
      }
      break;
    case "cfunc":
      integer(record, "id", line);
      string(record, "name", line);
      break;
    case "exception":
      integer(record, "id", line);
      string(record, "type", line);
      string(record, "message", line);
      string(record, "file", line);
      integer(record, "line", line);
      integer(record, "context", line);
      break;
    case "values": {
      integer(record, "id", line);
      const values = record.values;
      if (
        typeof values !== "object" || values === null || Array.isArray(values) ||
        !Object.values(values).every((value) => typeof value === "string")
      ) {
        throw fieldError(line, "an object of strings", "values", kind);
      }
      break;
    }
    case "flush":
      integer(record, "thread", line);
      integer(record, "start", line);
      integer(record, "end", line);
      integer(record, "events", line);
      break;
    case "end":
      integer(record, "ts", line);
      integer(record, "events", line);
      integer(record, "dropped", line);
      string(record, "reason", line);
      if (record.max_rss !== undefined) integer(record, "max_rss", line);
      break;
    case "gc":
    case "cpu":
      checkRuntimeRecord(record, line);
      break;
    default:
      if (typeof kind !== "string") {
        throw new ProtocolError(
          line,
          `expected a string "kind" in the record, got ${preview(kind)}`,
        );
      }
      throw new ProtocolError(line, `unknown record kind ${preview(kind)}: expected ${KINDS}`);
  }
  return record as unknown as ProtocolRecord;
}

/** A hello's `parent`: an object with an integer `pid` and `token`. */
function checkParent(parent: unknown, line: number): void {
  const fields = parent as Record<string, unknown>;
  if (
    typeof parent !== "object" || parent === null || Array.isArray(parent) ||
    !isWireInteger(fields.pid) || !isWireInteger(fields.token)
  ) {
    throw new ProtocolError(
      line,
      `expected "parent" to be {"pid": integer, "token": integer} in a "hello" record, got ${
        preview(parent)
      }`,
    );
  }
}

/** The fields of a {@linkcode RuntimeRecord}. */
function checkRuntimeRecord(record: Record<string, unknown>, line: number): void {
  if (record.kind === "gc") {
    for (const field of ["thread", "start", "end", "generation", "collected", "uncollectable"]) {
      integer(record, field, line);
    }
    return;
  }
  integer(record, "ts", line);
  const threads = record.threads;
  if (
    !Array.isArray(threads) ||
    !threads.every((pair) =>
      Array.isArray(pair) && pair.length === 2 && isWireInteger(pair[0]) && isWireInteger(pair[1])
    )
  ) {
    throw fieldError(line, "an array of [thread, cpu] integer pairs", "threads", "cpu");
  }
}

/**
 * Exactly one of `events`, `packed` and `marshal`. JSON events are checked
 * here, one loop over the batch; packed and marshal ones when they are
 * unpacked, which is the same loop over bytes (see `packed.ts`): checking
 * them here would decode every batch twice.
 */
function checkEvents(record: Record<string, unknown>, line: number): void {
  const events = record.events;
  const given = (events !== undefined ? 1 : 0) + (record.packed !== undefined ? 1 : 0) +
    (record.marshal !== undefined ? 1 : 0);
  if (given !== 1) {
    throw new ProtocolError(
      line,
      `expected exactly one of "events", "packed" and "marshal" in an "events" record, got ${
        given === 0 ? "none" : given === 2 ? "two" : "all three"
      }`,
    );
  }
  if (record.marshal !== undefined) {
    count(record, "marshal", line);
    checkPayload(record, record.marshal as number, line);
    return;
  }
  if (events === undefined) {
    if (typeof record.packed !== "string") throw fieldError(line, "a string", "packed", "events");
    return;
  }
  if (!Array.isArray(events)) throw fieldError(line, "an array", "events", "events");
  for (let i = 0; i < events.length; i++) {
    const event = events[i];
    // A sixth number is the thread time (`hello.thread_time`).
    if (!Array.isArray(event) || (event.length !== 5 && (event.length !== 6 || event[0] > 7))) {
      throw eventError(line, i, event);
    }
    const op = event[0];
    // The op must be one (see `isOp`); the other numbers must be integers
    // below 2^63, as packed ones are: NaN,
    // Infinity (`1e400` in JSON) or 1e300 would reach the trace as text
    // that is not JSON, or as times that are. This costs about 6 ns an
    // event more than `typeof` did, 2% of converting a JSON event (measured).
    if (
      !isKnownOp(op) ||
      !isWireInteger(event[1]) || !isWireInteger(event[2]) ||
      !isWireInteger(event[3]) || !isWireInteger(event[4]) ||
      (event.length === 6 && !isWireInteger(event[5]))
    ) {
      throw eventError(line, i, event);
    }
  }
}

/**
 * A binary frame's record built in memory carries its frame as `payload`,
 * exactly as long as the record says. (From a byte stream, the decoder
 * attaches the frame after checking the line.)
 */
function checkPayload(record: Record<string, unknown>, length: number, line: number): void {
  const payload = record.payload;
  if (payload === undefined) return;
  if (!(payload instanceof Uint8Array) || payload.length !== length) {
    throw new ProtocolError(
      line,
      `expected "payload" to be a Uint8Array of ${length} bytes in ${
        record.kind === "batch" ? 'a "batch"' : 'an "events"'
      } record, got ${
        payload instanceof Uint8Array ? `${payload.length} bytes` : describe(payload)
      }`,
    );
  }
}

function eventError(line: number, index: number, event: unknown): ProtocolError {
  return new ProtocolError(
    line,
    `expected event ${index + 1} of an "events" record to be [op, thread, ts, frame, ref], ` +
      `five integers below 2^63 with op ${KNOWN_OP_RANGE} (six, with the thread time, for ` +
      `ops 0 to 7), got ${preview(event)}`,
  );
}

/**
 * Whether `value` is an integer of the wire: below 2^63 in magnitude
 * (`docs/protocol.md`). Above 2^53 it is rounded here, by a few nanoseconds
 * for a clock (perf_counter_ns passes 2^53 after 104 days of uptime); a
 * bigger or non-finite number could make times that do not fit the trace.
 */
function isWireInteger(value: unknown): boolean {
  return Number.isInteger(value) && Math.abs(value as number) < 2 ** 63;
}

function integer(record: Record<string, unknown>, field: string, line: number): void {
  if (!isWireInteger(record[field])) {
    throw fieldError(line, "an integer", field, record.kind as string, record[field]);
  }
}

/**
 * The length of a binary frame, or a count of events: a non-negative
 * integer. A frame is held in memory whole, so it is at most
 * {@linkcode MAX_FRAME_BYTES} long.
 */
function count(record: Record<string, unknown>, field: string, line: number): void {
  const value = record[field];
  if (!Number.isSafeInteger(value) || (value as number) < 0) {
    const kind = record.kind as string;
    const got = Number.isInteger(value) ? `, got ${preview(value)}` : "";
    throw new ProtocolError(
      line,
      `expected a non-negative integer "${field}" in ${
        kind.startsWith("e") ? "an" : "a"
      } "${kind}" record${got}`,
    );
  }
  if (field !== "events" && (value as number) > MAX_FRAME_BYTES) {
    throw new ProtocolError(
      line,
      `a binary frame of ${value} bytes is longer than the ${MAX_FRAME_BYTES} bytes a frame may hold`,
    );
  }
}

function string(record: Record<string, unknown>, field: string, line: number): void {
  if (typeof record[field] !== "string") {
    throw fieldError(line, "a string", field, record.kind as string);
  }
}

function fieldError(
  line: number,
  what: string,
  field: string,
  kind: string,
  value?: unknown,
): ProtocolError {
  const article = kind.startsWith("e") ? "an" : "a";
  // An integer too big to be exact says why it is refused.
  const beyond = Number.isInteger(value) ? `, got ${preview(value)}, which is not below 2^63` : "";
  return new ProtocolError(
    line,
    `expected ${what} "${field}" in ${article} "${kind}" record${beyond}`,
  );
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") return "an object";
  return `${typeof value === "number" ? "a number" : `a ${typeof value}`} (${preview(value)})`;
}

/**
 * A short JSON rendering of a value, for error messages; numbers JSON has
 * no text for (`1e400` parses as Infinity) show as `Infinity` or `NaN`,
 * not as `null`.
 */
function preview(value: unknown): string {
  const text = (JSON.stringify(value, nonFinite) ?? String(value))
    .replace(/"\\u0000(-?Infinity|NaN)"/g, "$1");
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

function nonFinite(_key: string, value: unknown): unknown {
  return typeof value === "number" && !Number.isFinite(value) ? `\0${value}` : value;
}

/** Receives a decoded record and the line it came from. */
export type RecordCallback = (record: ProtocolRecord, line: number) => void;

/** Options of {@linkcode decodeNdjson} and {@linkcode NdjsonDecoder}. */
export interface DecodeNdjsonOptions {
  /**
   * Called when the stream ends in the middle of a line or of a binary
   * frame: a collector that was killed mid-write leaves one. That line or
   * frame is dropped, not an error.
   *
   * @default {undefined} (the warning is not reported)
   */
  onWarning?: (message: string) => void;
}

/**
 * The length of the binary frame that follows `record` (protocol 4), or 0
 * if none does.
 */
function frameLength(record: ProtocolRecord): number {
  if (record.kind === "batch") return record.bytes;
  if (record.kind === "events") return record.marshal ?? 0;
  return 0;
}

/**
 * The synchronous core of {@linkcode decodeNdjson}: bytes in, records out
 * through a callback, with the line each came from. Use it where a stream
 * per stage would cost too much; use `decodeNdjson` otherwise.
 *
 * A record that a binary frame follows (protocol 4: `batch`, and `events`
 * with `marshal`) is handed out once its frame has come, with the frame as
 * its `payload`. The payload is a view of the chunk, or of the decoder's
 * own buffer when the frame was split across chunks: it is valid only
 * during the callback, which must copy what it keeps.
 *
 * @example Decoding chunks by hand
 * ```ts
 * import { NdjsonDecoder, type ProtocolRecord } from "@panopticon/panopticon";
 * import assert from "node:assert/strict";
 *
 * const records: ProtocolRecord[] = [];
 * const warnings: string[] = [];
 * const decoder = new NdjsonDecoder({ onWarning: (message) => warnings.push(message) });
 * const bytes = new TextEncoder().encode('{"kind":"cfunc","id":1,"name":"print"}\n{"kind":"cf');
 * decoder.push(bytes.subarray(0, 10), (record) => records.push(record));
 * decoder.push(bytes.subarray(10), (record) => records.push(record));
 * decoder.finish((record) => records.push(record));
 * assert.equal(records.length, 1);
 * assert.match(warnings[0]!, /^line 2 is incomplete/);
 * ```
 *
 * @example A record with a binary frame, which may hold newlines
 * ```ts
 * import { NdjsonDecoder } from "@panopticon/panopticon";
 * import assert from "node:assert/strict";
 *
 * const line = new TextEncoder().encode('{"kind":"batch","bytes":4,"events":2,"ts":1000,"thread":1}\n');
 * // A frame of two c_return events, 10 ns (0x0a, a newline byte) after
 * // `ts` and 6 ns after that, split across two chunks.
 * const frames: number[][] = [];
 * const decoder = new NdjsonDecoder();
 * decoder.push(Uint8Array.of(...line, 0x06, 0x0a), () => assert.fail("the frame is not whole"));
 * decoder.push(Uint8Array.of(0x06, 0x06), (record, at) => {
 *   assert.equal(record.kind === "batch" && record.events, 2);
 *   assert.equal(at, 1);
 *   // The payload is valid during this call only: copy what you keep.
 *   if (record.kind === "batch") frames.push(Array.from(record.payload!));
 * });
 * decoder.finish(() => {});
 * assert.deepEqual(frames, [[0x06, 0x0a, 0x06, 0x06]]);
 * assert.equal(decoder.line, 1);
 * ```
 */
export class NdjsonDecoder {
  #lines = new LineSplitter();
  #onWarning: ((message: string) => void) | undefined;
  #onRecord: RecordCallback = () => {};
  /** The record whose binary frame is being read. */
  #framed: FrameRecord | undefined;
  #onLine = (text: string, line: number): number => {
    const record = decodeRecord(text, line);
    if (record === undefined) return 0;
    const length = frameLength(record);
    if (length === 0) {
      if (record.kind === "batch" || record.kind === "events" && record.marshal !== undefined) {
        (record as FrameRecord).payload = EMPTY;
      }
      this.#onRecord(record, line);
      return 0;
    }
    this.#framed = record as FrameRecord;
    return length;
  };
  #onFrame = (bytes: Uint8Array, line: number): void => {
    const record = this.#framed!;
    this.#framed = undefined;
    record.payload = bytes;
    this.#onRecord(record, line);
  };

  /** Makes a decoder; see {@linkcode DecodeNdjsonOptions}. */
  constructor(options: DecodeNdjsonOptions = {}) {
    this.#onWarning = options.onWarning;
  }

  /** How many complete lines have been decoded so far (binary frames are not lines). */
  get line(): number {
    return this.#lines.line;
  }

  /** Decodes one chunk, calling `onRecord` for each record it completes. */
  push(chunk: Uint8Array, onRecord: RecordCallback): void {
    this.#onRecord = onRecord;
    this.#lines.push(chunk, this.#onLine, this.#onFrame);
  }

  /**
   * Ends the stream. A final line without `\n` is decoded if it is a whole
   * JSON value; if it is cut short it is dropped with a warning, and so is
   * a binary frame cut short.
   */
  finish(onRecord: RecordCallback): void {
    const unfinished = this.#lines.finish();
    if (unfinished === undefined) return;
    if (unfinished.kind === "frame") {
      this.#framed = undefined;
      this.#warnFrame(unfinished.line, unfinished.received, unfinished.length);
      return;
    }
    const { line, text } = unfinished;
    if (text.trim() === "") return;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      this.#onWarning?.(
        `line ${line} is incomplete (the stream ended in the middle of it): it was dropped`,
      );
      return;
    }
    const record = checkRecord(value, line);
    const length = frameLength(record);
    if (length > 0) {
      this.#warnFrame(line, 0, length);
      return;
    }
    if (record.kind === "batch" || record.kind === "events" && record.marshal !== undefined) {
      (record as FrameRecord).payload = EMPTY;
    }
    onRecord(record, line);
  }

  #warnFrame(line: number, received: number, length: number): void {
    this.#onWarning?.(
      `the binary frame after line ${line} is incomplete (the stream ended after ${received} ` +
        `of its ${length} bytes): it was dropped, with its record`,
    );
  }
}

const EMPTY = new Uint8Array(0);

/**
 * Decodes an NDJSON byte stream into validated records.
 *
 * Lines may be split anywhere across chunks, even inside a multi-byte
 * character. Blank lines are skipped. A malformed line errors the stream
 * with a {@linkcode ProtocolError} naming the line; an unterminated final
 * line that is cut short is dropped and reported through `onWarning`.
 * Record order (`hello` first) is checked later, by the
 * {@linkcode FrameStateMachine}.
 *
 * @example Decoding a stream
 * ```ts
 * import { decodeNdjson, type ProtocolRecord } from "@panopticon/panopticon";
 * import assert from "node:assert/strict";
 *
 * const text = '{"kind":"cfunc","id":1,"name":"print"}\n\n{"kind":"events","events":[[5,1,10,0,1]]}\n';
 * const records: ProtocolRecord[] = await Array.fromAsync(
 *   ReadableStream.from([new TextEncoder().encode(text)]).pipeThrough(decodeNdjson()),
 * );
 * assert.deepEqual(records.map((record) => record.kind), ["cfunc", "events"]);
 * ```
 */
export function decodeNdjson(
  options: DecodeNdjsonOptions = {},
): TransformStream<Uint8Array, ProtocolRecord> {
  const decoder = new NdjsonDecoder(options);
  return new TransformStream<Uint8Array, ProtocolRecord>({
    transform(chunk, controller) {
      decoder.push(chunk, (record) => controller.enqueue(record));
    },
    flush(controller) {
      decoder.finish((record) => controller.enqueue(record));
    },
  });
}
