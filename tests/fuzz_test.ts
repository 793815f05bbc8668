/**
 * Seeded property tests of the converter: random collector streams, valid
 * and mutated, through `convert` (NDJSON bytes) and `toCatapult` (records).
 *
 * Whatever the input, a conversion either resolves with a trace that loads
 * (one JSON document, every slice with finite times and a duration of at
 * least 0, every flow arrow with both ends) or rejects with a
 * `ProtocolError` that names a line; it never throws from deep inside and
 * never hangs. Conversions run in a worker (`_fuzz_worker.ts`) under a
 * watchdog, so that even a synchronous endless loop fails the test instead
 * of hanging it.
 *
 * Every case is drawn from a PRNG seeded by (seed, case number), and a
 * failure names both. `PANOPTICON_FUZZ_SEED=<seed>` runs that seed only;
 * `PANOPTICON_FUZZ_RUNS=<n>` runs n cases per seed (replay a failure with
 * its seed and runs = case + 1, or explore with more seeds and runs).
 */

import assert from "node:assert/strict";
import type { JsonValue, ProtocolEvent, ProtocolRecord } from "../mod.ts";
import { marshalEvents, packEvents } from "./_packed.ts";
import { batchLine, encodeBatch, nativeEvent } from "./_batch.ts";
import type { FuzzJob, FuzzOutcome } from "./_fuzz_worker.ts";

/** The seeds run by default; each property runs RUNS cases per seed. */
const SEEDS = [0x5eed, 1, 2];
const RUNS = 100;
/** How long one conversion may take before it counts as a hang. */
const TIMEOUT_MS = 5000;

/** An environment variable, or undefined if it is unset or cannot be read. */
function env(name: string): string | undefined {
  try {
    return Deno.env.get(name) || undefined;
  } catch {
    return undefined; // No --allow-env: the defaults.
  }
}

function envNumber(name: string): number | undefined {
  const text = env(name);
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`${name} must be a non-negative integer, got ${JSON.stringify(text)}`);
  }
  return value;
}

const seedOverride = envNumber("PANOPTICON_FUZZ_SEED");
const seeds = seedOverride === undefined ? SEEDS : [seedOverride];
const runs = envNumber("PANOPTICON_FUZZ_RUNS") ?? RUNS;

// --- A small deterministic PRNG ---------------------------------------------

/** mulberry32: 32 bits of state, good enough to draw test cases. */
class Rng {
  #state: number;

  constructor(seed: number, index = 0) {
    // Distinct, well-mixed streams per (seed, case).
    this.#state = (Math.imul(seed >>> 0, 0x9e3779b1) ^ Math.imul(index + 1, 0x85ebca6b)) >>> 0;
    for (let i = 0; i < 4; i++) this.next();
  }

  /** A float in [0, 1). */
  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) | 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** An integer in [low, high]. */
  range(low: number, high: number): number {
    return low + this.int(high - low + 1);
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }

  /** One of `choices`, drawn in proportion to its weight. */
  weighted<T>(choices: readonly (readonly [number, T])[]): T {
    let total = 0;
    for (const [weight] of choices) total += weight;
    let x = this.next() * total;
    for (const [weight, value] of choices) {
      if ((x -= weight) < 0) return value;
    }
    return choices[choices.length - 1]![1];
  }
}

// --- Random valid-looking streams -------------------------------------------

const MAX = Number.MAX_SAFE_INTEGER;
const CODE_TYPES = ["function", "generator", "coroutine", "async_generator"] as const;

interface Stream {
  records: ProtocolRecord[];
  /** Events in all the `events` records. */
  events: number;
  /** Whether it holds an `end` record. */
  complete: boolean;
}

/**
 * A stream as a collector might send it, and then some: every record is
 * well formed, but events come for any thread, frame and code id (reused,
 * undefined, unbalanced, resumed without a start), times run backwards and
 * reach the ends of the protocol's range, records follow the `end`, or
 * the `end` never comes.
 */
function randomStream(r: Rng, native = false): Stream {
  // A native-like stream (protocol 4) is one that batch frames can carry:
  // no negative numbers, times that never go back, all below 2^53.
  const idents = [native ? r.pick([1, 140001, 0, 2 ** 31]) : r.pick([1, 140001, 0, 2 ** 31, MAX])];
  for (let n = r.int(4); n > 0; n--) {
    idents.push(
      native
        ? r.pick([2, 3, 140002, 2 ** 40 + 3])
        : r.pick([2, 140002, 140003, -7, 2 ** 40 + 3, MAX]),
    );
  }
  const t0 = native
    ? r.weighted<number>([[6, 1000], [2, 0], [2, 1_700_000_000_000_000]])
    : r.weighted<number>([[6, 1000], [2, 0], [2, 1_700_000_000_000_000], [1, MAX - 5000], [
      1,
      -MAX,
    ]]);
  const records: ProtocolRecord[] = [{
    kind: "hello",
    protocol: native ? 4 : r.pick([1, 2, 3]),
    ...(native && r.chance(0.5) ? { thread_ids: "serial" as const, collector: "native" } : {}),
    pid: r.pick([4242, 1, 0, MAX]),
    python: r.pick(["3.12.1", "3.13.0", "", "é😀"]),
    engine: r.pick(["monitoring", "setprofile"]),
    t0,
    main_thread: idents[0]!,
    argv: r.pick([["a.py"], [], ['it\'s a "prog".py', "--flag", "\u2028"]]),
  }];
  const codes = r.range(0, 6);
  const cfuncs = r.range(0, 4);
  const defineCode = (id: number): void => {
    records.push({
      kind: "code",
      id,
      module: r.pick(["__main__", "", "pkg.mod"]),
      qualname: r.pick(["f", "<module>", "C.m", "outer.<locals>.gen", 'q"\\\n']),
      file: r.pick(["a.py", "/x/ü.py", ""]),
      line: r.pick([1, 0, 42, MAX]),
      type: r.pick(CODE_TYPES),
      ...(r.chance(0.2) ? { hidden: true } : {}),
    });
  };
  const marks = r.range(0, 3);
  const defineMark = (id: number): void => {
    records.push({
      kind: "mark",
      id,
      name: r.pick(["cache miss", "", "é😀", '"\\\n']),
      category: r.pick(["mark", "panopticon", ""]),
      args: r.pick<{ [key: string]: JsonValue }>([
        {},
        { key: "k" },
        { value: 3, nested: [1, { a: null }] },
        { "": MAX },
      ]),
    });
  };
  const defineCfunc = (id: number): void => {
    records.push({ kind: "cfunc", id, name: r.pick(["print", "time.sleep", "list.append", ""]) });
  };
  // Some definitions come up front, some later (after their use), some never.
  const later: (() => void)[] = [];
  for (let id = 1; id <= codes; id++) {
    if (r.chance(0.7)) defineCode(id);
    else if (r.chance(0.5)) later.push(() => defineCode(id));
  }
  for (let id = 1; id <= cfuncs; id++) {
    if (r.chance(0.7)) defineCfunc(id);
    else if (r.chance(0.5)) later.push(() => defineCfunc(id));
  }
  for (let id = 1; id <= marks; id++) {
    if (r.chance(0.7)) defineMark(id);
    else if (r.chance(0.5)) later.push(() => defineMark(id));
  }

  const frames = [0, 0, 0, 7001, 7002, 7003, 7004, 2 ** 31, MAX];
  let clock = t0 + r.int(1000);
  const tick = (): number => {
    const step = native ? clock + r.weighted<number>([[40, r.int(500)], [1, 2 ** 40]]) : r.weighted<
      () => number
    >([
      [40, () => clock + r.int(500)],
      [4, () => clock - r.int(3000)],
      [1, () => r.pick([MAX, -MAX, t0 - 1_000_000_000, 0])],
    ])();
    if (Number.isSafeInteger(step)) clock = step;
    return clock;
  };
  let thread = idents[0]!;
  let events = 0;
  /** Recently called frames, so that returns and suspends often match a call. */
  const open: number[] = [];
  const event = (): ProtocolEvent => {
    if (r.chance(0.1)) thread = r.pick(idents);
    const op = r.weighted<number>([
      [25, 0],
      [10, 1],
      [20, 2],
      [5, 3],
      [10, 4],
      [12, 5],
      [12, 6],
      [6, 7],
      [3, 8],
      [2, 9],
      [4, 10],
      [4, 11],
      [2, 12],
    ]) as ProtocolEvent[0];
    let frame = 0;
    let ref = 0;
    if (op >= 8) {
      // Spans are numbered apart from frames; marks are defined or not.
      frame = op === 10 || op === 11 ? r.pick([1, 2, 3, MAX]) : r.pick([0, 0, 5]);
      ref = op === 12 ? 0 : r.range(0, marks + 2);
    } else if (op <= 4) {
      if (op === 0) {
        frame = r.pick(frames);
        open.push(frame);
      } else if (open.length > 0 && r.chance(0.8)) {
        frame = op === 1 ? r.pick(open) : open.pop()!;
      } else {
        frame = r.pick(frames);
      }
      ref = op <= 1 || r.chance(0.3) ? r.range(0, codes + 2) : 0;
    } else {
      ref = op === 5 || r.chance(0.3) ? r.range(0, cfuncs + 2) : 0;
    }
    return [op, thread, tick(), frame, ref];
  };

  const record = (): void => {
    const kind = r.weighted<string>([
      [50, "events"],
      [10, "thread"],
      [8, "flush"],
      [6, "later"],
      [native ? 1 : 0, "limit"],
      [4, "define"],
    ]);
    if (kind === "events") {
      const batch = Array.from({ length: r.int(30) }, event);
      events += batch.length;
      records.push({ kind: "events", events: batch });
    } else if (kind === "thread") {
      records.push({
        kind: "thread",
        thread: r.pick(idents),
        native_id: r.pick([null, 4242, 0, MAX]),
        name: r.pick(["MainThread", "Thread-1 (wörker 😀)", "", '"\\']),
        ...(native && r.chance(0.5) ? { ident: r.pick([140001, 0, MAX]) } : {}),
      });
    } else if (kind === "limit") {
      records.push({ kind: "limit", ts: tick(), events, thread: r.pick(idents) });
    } else if (kind === "flush") {
      const start = tick();
      records.push({
        kind: "flush",
        thread: r.pick(idents),
        start,
        end: r.chance(0.9) || start < 5 - MAX ? tick() : start - 5,
        events: r.int(100),
      });
    } else if (kind === "later") {
      later.shift()?.();
    } else if (r.chance(0.5)) {
      defineCode(r.range(1, codes + 2));
    } else {
      defineCfunc(r.range(1, cfuncs + 2));
    }
  };

  for (let n = r.range(1, 12); n > 0; n--) record();
  const complete = r.chance(0.8);
  if (complete) {
    records.push({
      kind: "end",
      ts: tick(),
      events: r.chance(0.9) ? events : events + 3,
      dropped: r.chance(0.9) ? 0 : 3,
      reason: r.pick(["exit", "os._exit", ""]),
      ...(r.chance(0.5) ? { max_rss: r.pick([31_457_280, 0, MAX]) } : {}),
    });
    // Records after the end: converted anyway, with a warning.
    if (r.chance(0.15)) { for (let n = r.range(1, 3); n > 0; n--) record(); }
  }
  return { records, events, complete };
}

/** How to write `events` records: as JSON arrays, packed, or either. */
type EventsEncoding = "json" | "packed" | "mixed";

/**
 * The NDJSON text of `records`. Packed records are written as collector.py
 * writes them (which takes the decoder's fast path) or, now and then, with
 * an extra field (which takes `JSON.parse`).
 */
function toNdjson(r: Rng, records: readonly ProtocolRecord[], encoding: EventsEncoding): string {
  const lines: string[] = [];
  for (const record of records) {
    if (r.chance(0.05)) lines.push(r.pick(["", "  ", "\t"]));
    if (record.kind !== "events" || record.events === undefined) {
      lines.push(JSON.stringify(record));
      continue;
    }
    const packed = encoding === "packed" || (encoding === "mixed" && r.chance(0.5));
    if (!packed) {
      lines.push(JSON.stringify(record));
    } else if (r.chance(0.9)) {
      lines.push(
        JSON.stringify({ kind: "events", packed: marshalEvents(record.events).toBase64() }),
      );
    } else {
      lines.push(
        JSON.stringify({ kind: "events", packed: marshalEvents(record.events).toBase64(), x: 1 }),
      );
    }
  }
  return lines.join("\n") + (r.chance(0.9) ? "\n" : "");
}

/**
 * The bytes of a native-like stream (protocol 4) as collectors would send
 * it: each events record mostly as a batch frame (in one or several
 * frames), sometimes as a marshal frame, now and then left as JSON or
 * packed events; every other record as its line.
 */
function toFramed(r: Rng, records: readonly ProtocolRecord[]): Framed {
  const parts: Uint8Array[] = [];
  const frames: Framed["frames"] = [];
  let offset = 0;
  const add = (part: Uint8Array) => {
    parts.push(part);
    offset += part.length;
  };
  const line = (text: string) => add(encoder.encode(`${text}\n`));
  for (const record of records) {
    if (record.kind !== "events" || record.events === undefined) {
      line(JSON.stringify(record));
      continue;
    }
    const list = record.events;
    const how = r.weighted<string>([[6, "batch"], [2, "marshal"], [1, "json"], [1, "packed"]]);
    if (how === "json") line(JSON.stringify(record));
    else if (how === "packed") line(JSON.stringify({ kind: "events", packed: packEvents(list) }));
    else if (how === "marshal") {
      const frame = marshalEvents(list);
      const start = offset;
      line(JSON.stringify({ kind: "events", marshal: frame.length }));
      frames.push({ line: start, offset, length: frame.length });
      add(frame);
    } else {
      // Split where a collector's buffer might fill, from an arbitrary time and thread.
      const native = list.map(nativeEvent);
      let ts = list.length > 0 && r.chance(0.8) ? list[0]![2] - r.int(100) : list[0]?.[2] ?? 0;
      if (ts < 0) ts = 0;
      let thread = list.length > 0 && r.chance(0.7) ? list[0]![1] : r.pick([1, 2, 140001]);
      for (let at = 0; at < native.length || at === 0;) {
        const take = native.slice(at, at + r.range(1, Math.max(1, native.length)));
        const { record: batch, frame } = encodeBatch(take, ts, thread);
        const start = offset;
        line(batchLine(batch));
        frames.push({ line: start, offset, length: frame.length });
        add(frame);
        at += Math.max(1, take.length);
        if (take.length > 0) [ts, thread] = [take.at(-1)![2], take.at(-1)![1]];
      }
    }
  }
  const bytes = new Uint8Array(offset);
  let at = 0;
  for (const part of parts) {
    bytes.set(part, at);
    at += part.length;
  }
  return { bytes, frames };
}

/** A stream with binary frames, and where each frame and the line before it start. */
interface Framed {
  bytes: Uint8Array;
  frames: { line: number; offset: number; length: number }[];
}

/** `bytes` in 1 to 6 chunks cut at random places. */
function chunked(r: Rng, bytes: Uint8Array): Uint8Array[] {
  const cuts = Array.from({ length: r.int(6) }, () => r.int(bytes.length + 1)).sort((a, b) =>
    a - b
  );
  const chunks: Uint8Array[] = [];
  let start = 0;
  for (const cut of [...cuts, bytes.length]) {
    chunks.push(bytes.slice(start, cut));
    start = cut;
  }
  return chunks;
}

/** A `maxDepth` option: usually none or a valid one, sometimes one that must be refused. */
function randomMaxDepth(r: Rng): Pick<FuzzJob, "maxDepth"> {
  return r.weighted<Pick<FuzzJob, "maxDepth">>([
    [12, {}],
    [2, { maxDepth: undefined }],
    [4, { maxDepth: r.range(1, 4) }],
    [1, { maxDepth: Infinity }],
    [1, { maxDepth: r.pick([0, -1, 1.5, NaN, -Infinity]) }],
  ]);
}

function validMaxDepth(job: FuzzJob): boolean {
  const value = job.maxDepth ?? Infinity;
  return value === Infinity || (Number.isInteger(value) && value >= 1);
}

// --- Mutations --------------------------------------------------------------

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const KINDS = [
  "hello",
  "thread",
  "code",
  "cfunc",
  "events",
  "flush",
  "end",
  "sample",
  "Events",
  "",
];
/** Numbers and non-numbers to put where a number was. */
const ODD_NUMBERS = [
  "1e400",
  "-1e400",
  "1e300",
  "-1e300",
  "1.5",
  "-0",
  "0.0001",
  "9007199254740991",
  "9007199254740992",
  "9007199254740993",
  "-9007199254740993",
  "18446744073709551616",
  "null",
  '"7"',
  "[]",
  "true",
];
const BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/**
 * A mutation of NDJSON bytes, line by line (through text: lossless unless an
 * earlier mutation made bytes that are not UTF-8) or byte by byte.
 */
type Mutation = (r: Rng, bytes: Uint8Array) => Uint8Array;

const lineMutation = (mutate: (r: Rng, lines: string[]) => void): Mutation => (r, bytes) => {
  const lines = decoder.decode(bytes).split("\n");
  mutate(r, lines);
  return encoder.encode(lines.join("\n"));
};

const byteMutation = (mutate: (r: Rng, bytes: number[]) => void): Mutation => (r, bytes) => {
  const out = Array.from(bytes);
  mutate(r, out);
  return Uint8Array.from(out);
};

/** Rewrites the `packed` field of a random packed line. */
const packedMutation = (mutate: (r: Rng, packed: string) => string): Mutation =>
  lineMutation((r, lines) => {
    const packedLines = lines.flatMap((line, i) => (line.includes('"packed":"') ? [i] : []));
    if (packedLines.length === 0) return;
    const i = r.pick(packedLines);
    lines[i] = lines[i]!.replace(
      /"packed":"([^"]*)"/,
      (_, packed: string) => `"packed":"${mutate(r, packed)}"`,
    );
  });

const MUTATIONS: readonly (readonly [number, string, Mutation])[] = [
  [
    3,
    "flip a bit",
    byteMutation((r, bytes) => {
      if (bytes.length > 0) bytes[r.int(bytes.length)]! ^= 1 << r.int(8);
    }),
  ],
  [
    3,
    "delete bytes",
    byteMutation((r, bytes) => void bytes.splice(r.int(bytes.length), r.range(1, 4))),
  ],
  [
    3,
    "insert bytes",
    byteMutation((r, bytes) => {
      const alphabet = encoder.encode('{}[]",:-.e019azAZ\n\r\\ ');
      const inserted = Array.from(
        { length: r.range(1, 4) },
        () => (r.chance(0.8) ? r.pick(Array.from(alphabet)) : r.int(256)),
      );
      bytes.splice(r.int(bytes.length + 1), 0, ...inserted);
    }),
  ],
  [3, "truncate", (r, bytes) => bytes.slice(0, r.int(bytes.length))],
  [
    2,
    "duplicate a line",
    lineMutation((r, lines) => {
      const i = r.int(lines.length);
      lines.splice(r.int(lines.length + 1), 0, lines[i]!);
    }),
  ],
  [
    2,
    "swap two lines",
    lineMutation((r, lines) => {
      const i = r.int(lines.length);
      const j = r.int(lines.length);
      [lines[i], lines[j]] = [lines[j]!, lines[i]!];
    }),
  ],
  [2, "delete a line", lineMutation((r, lines) => void lines.splice(r.int(lines.length), 1))],
  [
    3,
    "change a kind",
    lineMutation((r, lines) => {
      const i = r.int(lines.length);
      lines[i] = lines[i]!.replace(/"kind":"[^"]*"/, `"kind":"${r.pick(KINDS)}"`);
    }),
  ],
  [
    1,
    "change the protocol",
    lineMutation((r, lines) => {
      lines[0] = lines[0]!.replace(
        /"protocol":\d+/,
        `"protocol":${r.pick(["3", "0", "-1", "99"])}`,
      );
    }),
  ],
  [
    5,
    "change a number",
    lineMutation((r, lines) => {
      // Mostly in JSON events, where numbers are most of the line.
      const events = lines.flatMap((line, i) => (line.includes('"events":[') ? [i] : []));
      const i = events.length > 0 && r.chance(0.5) ? r.pick(events) : r.int(lines.length);
      const numbers = [...lines[i]!.matchAll(/-?\d+/g)];
      if (numbers.length === 0) return;
      const { index, 0: number } = r.pick(numbers);
      lines[i] = lines[i]!.slice(0, index) + r.pick(ODD_NUMBERS) +
        lines[i]!.slice(index + number.length);
    }),
  ],
  [
    1,
    "add a blank line or a carriage return",
    lineMutation((r, lines) => {
      const i = r.int(lines.length);
      if (r.chance(0.5)) lines.splice(i, 0, "");
      else lines[i] += "\r";
    }),
  ],
  [
    3,
    "corrupt base64",
    packedMutation((r, packed) => {
      const at = r.int(packed.length + 1);
      return r.weighted<string>([
        [
          2,
          packed.slice(0, at) + r.pick(["$", "=", "-", "_", " ", "\t", "\u00e9", "A"]) +
          packed.slice(at),
        ],
        [2, packed.slice(0, at) + packed.slice(at + 1)],
        [2, packed.slice(0, at) + r.pick(Array.from(BASE64)) + packed.slice(at + 1)],
        [1, packed.replace(/=+$/, "")],
        [1, packed + r.pick(["=", "==", "A", "AA=="])],
        [1, ""],
      ]);
    }),
  ],
  [
    4,
    "corrupt the marshal bytes",
    packedMutation((r, packed) => {
      let bytes: Uint8Array;
      try {
        bytes = Uint8Array.fromBase64(packed);
      } catch {
        return packed;
      }
      const out = Array.from(bytes);
      const at = r.int(out.length + 1);
      r.weighted<() => void>([
        [3, () => out.length > 0 && (out[r.int(out.length)] = r.int(256))],
        [
          2,
          () => out.length > 0 && (out[r.int(out.length)] = r.pick([0x5b, 0x28, 0x69, 0x6c, 0xe9])),
        ],
        [2, () => out.splice(at, 0, ...Array.from({ length: r.range(1, 6) }, () => r.int(256)))],
        [2, () => out.splice(at, r.range(1, 6))],
        [1, () => out.splice(at)],
        // A long of a random digit count (negative, huge) with random digits.
        [2, () =>
          out.splice(
            at,
            0,
            0x6c,
            ...Array.from({ length: 4 }, () => r.int(256)),
            ...Array.from(
              { length: r.int(10) },
              () => r.int(256),
            ),
          )],
      ])();
      return Uint8Array.from(out).toBase64();
    }),
  ],
];

/** A valid stream's bytes, mutated one to three times; returns them and what was done. */
function mutate(r: Rng, bytes: Uint8Array): { bytes: Uint8Array; done: string[] } {
  const done: string[] = [];
  for (let n = r.weighted<number>([[6, 1], [3, 2], [1, 3]]); n > 0; n--) {
    const [name, mutation] = r.weighted(MUTATIONS.map(([w, name, m]) => [w, [name, m]] as const));
    bytes = mutation(r, bytes);
    done.push(name);
  }
  return { bytes, done };
}

/** Values that fit no field, or only just. */
const ODD_VALUES: readonly unknown[] = [
  null,
  undefined,
  "x",
  "",
  1.5,
  -0,
  -1,
  NaN,
  Infinity,
  -Infinity,
  MAX,
  MAX + 1,
  MAX + 2,
  -MAX - 2,
  1e300,
  [],
  [0, 1, 2, 3, 4],
  {},
  true,
];

/** A stream of records, mutated in memory (where NaN and Infinity can occur). */
function mutateRecords(r: Rng, records: ProtocolRecord[]): { records: unknown[]; done: string[] } {
  const out: unknown[] = structuredClone(records);
  const done: string[] = [];
  for (let n = r.weighted<number>([[6, 1], [3, 2], [1, 3]]); n > 0; n--) {
    const i = r.int(out.length);
    // A record an earlier mutation replaced by a non-object takes no field.
    const record = (typeof out[i] === "object" && out[i] !== null ? out[i] : {}) as Record<
      string,
      unknown
    >;
    const name = r.weighted<string>([
      [4, "set a field"],
      [2, "delete a field"],
      [4, "set an event's number"],
      [1, "set an event"],
      [2, "change a kind"],
      [1, "duplicate a record"],
      [1, "swap two records"],
      [1, "delete a record"],
      [1, "replace a record"],
      [1, "add packed events"],
    ]);
    done.push(`${name} (record ${i + 1})`);
    if (name === "set a field" || name === "delete a field") {
      const fields = Object.keys(record);
      const field = r.chance(0.9) ? r.pick(fields) : r.pick(["secret", "max_rss", "packed"]);
      if (name === "delete a field") delete record[field];
      else record[field] = r.pick(ODD_VALUES);
    } else if (name === "set an event's number" || name === "set an event") {
      const events = record.events;
      if (!Array.isArray(events) || events.length === 0) continue;
      const e = r.int(events.length);
      if (name === "set an event") events[e] = r.pick(ODD_VALUES);
      else if (Array.isArray(events[e])) events[e][r.int(5)] = r.pick(ODD_VALUES);
    } else if (name === "change a kind") {
      record.kind = r.pick(KINDS);
    } else if (name === "duplicate a record") {
      out.splice(r.int(out.length + 1), 0, structuredClone(record));
    } else if (name === "swap two records") {
      const j = r.int(out.length);
      [out[i], out[j]] = [out[j], out[i]];
    } else if (name === "delete a record") {
      out.splice(i, 1);
    } else if (name === "replace a record") {
      out[i] = r.pick(ODD_VALUES);
    } else {
      record.packed = r.pick(["", "WwAAAAA=", "W$==", 7]);
      if (r.chance(0.5)) delete record.events;
    }
  }
  return { records: out, done };
}

// --- Running conversions, and what must hold of them -------------------------

/** A worker that runs conversions, with a watchdog per conversion. */
class Sandbox {
  #worker = new Worker(new URL("./_fuzz_worker.ts", import.meta.url), { type: "module" });
  #pending: { resolve: (outcome: FuzzOutcome) => void; reject: (error: Error) => void } | undefined;

  constructor() {
    this.#worker.onmessage = ({ data }: MessageEvent<FuzzOutcome>) => this.#pending?.resolve(data);
    this.#worker.onerror = (event) => {
      event.preventDefault();
      this.#pending?.reject(new Error(`the fuzz worker failed: ${event.message}`));
    };
  }

  /** Runs one conversion; rejects if it takes longer than TIMEOUT_MS (and kills the worker). */
  run(job: FuzzJob, label: string): Promise<FuzzOutcome> {
    return new Promise<FuzzOutcome>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.close();
        reject(
          new assert.AssertionError({
            message: `${label}: the conversion did not finish within ${TIMEOUT_MS} ms (a hang)`,
          }),
        );
      }, TIMEOUT_MS);
      this.#pending = {
        resolve: (outcome) => {
          clearTimeout(timer);
          resolve(outcome);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      };
      this.#worker.postMessage(job);
    });
  }

  close(): void {
    this.#pending = undefined;
    this.#worker.terminate();
  }
}

/** Runs `body` in a fresh sandbox for every case of every seed, naming the case on failure. */
async function forEachCase(
  body: (r: Rng, sandbox: Sandbox, label: string) => Promise<void>,
): Promise<void> {
  const sandbox = new Sandbox();
  try {
    for (const seed of seeds) {
      for (let index = 0; index < runs; index++) {
        const label = `seed ${seed}, case ${index} ` +
          `(replay: PANOPTICON_FUZZ_SEED=${seed} PANOPTICON_FUZZ_RUNS=${index + 1})`;
        await body(new Rng(seed, index), sandbox, label);
      }
    }
  } finally {
    sandbox.close();
  }
}

/** At most `limit` characters of `text`, for a failure message. */
function excerpt(text: string, limit = 3000): string {
  return text.length <= limit ? text : `${text.slice(0, limit)}… (${text.length} characters)`;
}

/**
 * Counts how mutated streams ended, to check that the property is not
 * vacuous: that a fair share of them converts, and of them fails.
 */
class Tally {
  resolved = 0;
  rejected = 0;

  add(outcome: FuzzOutcome): void {
    if (outcome.status === "resolved") this.resolved++;
    else this.rejected++;
  }

  assertMixed(): void {
    const total = this.resolved + this.rejected;
    if (total < 100) return;
    const counts = `${this.resolved} resolved, ${this.rejected} rejected`;
    if (env("PANOPTICON_FUZZ_VERBOSE") !== undefined) console.log(counts);
    assert.ok(this.resolved >= total / 10 && this.rejected >= total / 10, counts);
  }
}

// deno-lint-ignore no-explicit-any
type TraceEvent = Record<string, any>;

/**
 * Asserts that `text` is a trace a viewer loads: one JSON document, a
 * `traceEvents` array of metadata and complete events, every complete
 * event with a name, a category, a thread, a finite start and a finite
 * duration of at least 0, and every flow arrow with both its ends.
 * Returns the complete events.
 */
function assertLoadable(text: string, where: string): TraceEvent[] {
  let trace: { traceEvents?: unknown; displayTimeUnit?: unknown; otherData?: unknown };
  try {
    trace = JSON.parse(text);
  } catch (error) {
    assert.fail(`${where}: the output is not JSON (${(error as Error).message})`);
  }
  assert.ok(Array.isArray(trace.traceEvents), `${where}: no traceEvents array`);
  assert.equal(trace.displayTimeUnit, "ns", where);
  assert.equal(typeof trace.otherData, "object", where);
  const slices: TraceEvent[] = [];
  const flows = new Map<string, number>();
  for (const event of trace.traceEvents as TraceEvent[]) {
    const what = `${where}: event ${JSON.stringify(event)}`;
    assert.ok(Number.isFinite(event.pid), what);
    if (event.ph === "M") {
      assert.equal(typeof event.name, "string", what);
      continue;
    }
    if (event.ph === "i" || event.ph === "C") {
      // Instants on a thread; counters of the process, numbers only.
      assert.equal(typeof event.name, "string", what);
      assert.equal(typeof event.cat, "string", what);
      assert.ok(Number.isFinite(event.ts), what);
      assert.equal(typeof event.args, "object", what);
      if (event.ph === "i") {
        assert.equal(event.s, "t", what);
        assert.ok(Number.isSafeInteger(event.tid) && event.tid >= 1, what);
      } else {
        assert.ok(Object.values(event.args).every(Number.isFinite), what);
      }
      continue;
    }
    assert.equal(event.ph, "X", what);
    assert.equal(typeof event.name, "string", what);
    assert.equal(typeof event.cat, "string", what);
    assert.ok(Number.isSafeInteger(event.tid) && event.tid >= 1, what);
    assert.ok(Number.isFinite(event.ts), what);
    assert.ok(Number.isFinite(event.dur) && event.dur >= 0, what);
    if (event.bind_id !== undefined) {
      assert.match(event.bind_id, /^0x[0-9a-f]+$/, what);
      assert.ok(event.flow_in === true || event.flow_out === true, what);
      const balance = (event.flow_out ? 1 : 0) - (event.flow_in ? 1 : 0);
      flows.set(event.bind_id, (flows.get(event.bind_id) ?? 0) + balance);
    }
    slices.push(event);
  }
  for (const [id, balance] of flows) {
    assert.equal(balance, 0, `${where}: flow ${id} has a loose end`);
  }
  return slices;
}

/** Asserts that a conversion of a valid stream resolved, with a trace that loads. */
function assertConverted(outcome: FuzzOutcome, where: string): TraceEvent[] {
  if (outcome.status === "rejected") {
    assert.fail(`${where}: rejected with ${outcome.name}: ${outcome.message}\n${outcome.stack}`);
  }
  return assertLoadable(outcome.text, where);
}

/**
 * Asserts that a conversion of a mutated stream either resolved with a
 * trace that loads (and said so if the stream was cut short) or rejected
 * with a ProtocolError naming a line up to `lines + 1` (or, for a bad
 * `maxDepth`, a RangeError saying so).
 */
function assertHandled(outcome: FuzzOutcome, job: FuzzJob, lines: number, where: string): void {
  if (!validMaxDepth(job)) {
    assert.equal(outcome.status, "rejected", where);
    if (outcome.status === "rejected") {
      assert.equal(outcome.name, "RangeError", `${where}: ${outcome.message}`);
      assert.match(
        outcome.message,
        /^maxDepth must be a positive integer or Infinity, got /,
        where,
      );
    }
    return;
  }
  if (outcome.status === "resolved") {
    const slices = assertLoadable(outcome.text, where);
    const otherData = JSON.parse(outcome.text).otherData;
    if (outcome.summary !== undefined) {
      assert.equal(outcome.summary.slices, slices.length, `${where}: summary.slices`);
      assert.equal(outcome.summary.complete, otherData.complete, where);
    }
    if (otherData.complete !== true) {
      assert.ok(
        outcome.warnings.some((warning) => warning.includes('ended without an "end" record')),
        `${where}: a stream cut short, without a warning: ${JSON.stringify(outcome.warnings)}`,
      );
    }
    return;
  }
  const error = `${outcome.name}: ${outcome.message}\n${outcome.stack}`;
  assert.ok(outcome.protocolError, `${where}: rejected with ${error}`);
  // A line, or a binary frame (protocol 4) by the line before it and the byte.
  const match = /^(?:line (\d+)|the binary frame after line (\d+), byte (\d+)): /.exec(
    outcome.message,
  );
  assert.ok(match, `${where}: a ProtocolError that names no line: ${error}`);
  const line = Number(match[1] ?? match[2]);
  assert.equal(outcome.byte, match[3] === undefined ? undefined : Number(match[3]), where);
  assert.equal(outcome.line, line, `${where}: error.line disagrees with ${error}`);
  assert.ok(line >= 1 && line <= lines + 1, `${where}: line ${line} of ${lines}: ${error}`);
  // The output, aborted, must not pretend to be a whole trace.
  assert.ok(!outcome.text.endsWith("}\n"), `${where}: a failed conversion wrote a whole trace`);
}

// --- The properties ---------------------------------------------------------

Deno.test("fuzz: random valid-looking streams convert to traces that load", async () => {
  await forEachCase(async (r, sandbox, label) => {
    const stream = randomStream(r);
    const options = randomMaxDepth(r);
    const json = toNdjson(r, stream.records, "json");
    const packed = toNdjson(r, stream.records, r.pick<EventsEncoding>(["packed", "mixed"]));
    const where = (what: string, text: string) =>
      `${label}, ${what}, maxDepth ${options.maxDepth}:\n${excerpt(text)}\n`;

    const outcomes: FuzzOutcome[] = [];
    for (const [what, text] of [["JSON events", json], ["packed events", packed]] as const) {
      const job: FuzzJob = { input: { chunks: chunked(r, encoder.encode(text)) }, ...options };
      const outcome = await sandbox.run(job, where(what, text));
      outcomes.push(outcome);
      if (!validMaxDepth(job)) {
        assertHandled(outcome, job, 0, where(what, text));
        continue;
      }
      const slices = assertConverted(outcome, where(what, text));
      const summary = outcome.status === "resolved" ? outcome.summary! : {};
      assert.equal(summary.slices, slices.length, where(what, text));
      assert.equal(summary.events, stream.events, where(what, text));
      assert.equal(summary.complete, stream.complete, where(what, text));
      const warnings = summary.warnings as string[];
      assert.equal(
        warnings.some((warning) => warning.includes('ended without an "end" record')),
        !stream.complete,
        `${where(what, text)}${JSON.stringify(warnings)}`,
      );
    }
    // Packed events convert as JSON events do, and records as their NDJSON does.
    assert.equal(outcomes[1]!.text, outcomes[0]!.text, where("packed against JSON", packed));
    const records = await sandbox.run(
      { input: { records: stream.records }, ...options },
      where("records", json),
    );
    assert.equal(records.status, outcomes[0]!.status, where("records", json));
    assert.equal(records.text, outcomes[0]!.text, where("records against bytes", json));
  });
});

Deno.test("fuzz: mutated NDJSON converts to a trace that loads or fails naming a line", async () => {
  const tally = new Tally();
  await forEachCase(async (r, sandbox, label) => {
    const stream = randomStream(r);
    const valid = toNdjson(r, stream.records, r.pick<EventsEncoding>(["json", "packed", "mixed"]));
    const { bytes, done } = mutate(r, encoder.encode(valid));
    const text = decoder.decode(bytes);
    const job: FuzzJob = {
      input: { chunks: chunked(r, bytes) },
      ...(r.chance(0.1) ? randomMaxDepth(r) : {}),
    };
    const where = `${label}, ${done.join(", ")}, maxDepth ${job.maxDepth}:\n${excerpt(text)}\n`;
    const outcome = await sandbox.run(job, where);
    const lines = bytes.reduce((count, byte) => count + (byte === 0x0a ? 1 : 0), 1);
    assertHandled(outcome, job, lines, where);
    tally.add(outcome);
  });
  tally.assertMixed();
});

Deno.test("fuzz: mutated records convert to a trace that loads or fail naming a record", async () => {
  const tally = new Tally();
  await forEachCase(async (r, sandbox, label) => {
    const stream = randomStream(r);
    const { records, done } = mutateRecords(r, stream.records);
    const job: FuzzJob = {
      input: { records },
      ...(r.chance(0.1) ? randomMaxDepth(r) : {}),
    };
    const shown = records.map((record) =>
      Deno.inspect(record, { breakLength: Infinity, depth: 4 })
    );
    const where = `${label}, ${done.join(", ")}, maxDepth ${job.maxDepth}:\n` +
      `${excerpt(shown.join("\n"))}\n`;
    const outcome = await sandbox.run(job, where);
    assertHandled(outcome, job, records.length, where);
    tally.add(outcome);
  });
  tally.assertMixed();
});

// --- Binary frames (protocol 4) ---------------------------------------------------

Deno.test("fuzz: native-like streams convert from batch and marshal frames as from JSON events", async () => {
  await forEachCase(async (r, sandbox, label) => {
    const stream = randomStream(r, true);
    const options = r.chance(0.8) ? {} : { maxDepth: r.range(1, 4) };
    const json = toNdjson(r, stream.records, "json");
    const framed = toFramed(r, stream.records);
    const where = (what: string) =>
      `${label}, ${what}, maxDepth ${options.maxDepth}:\n${excerpt(json)}\n`;
    const fromJson = await sandbox.run(
      { input: { chunks: chunked(r, encoder.encode(json)) }, ...options },
      where("JSON events"),
    );
    assertConverted(fromJson, where("JSON events"));
    const fromFrames = await sandbox.run(
      { input: { chunks: chunked(r, framed.bytes) }, ...options },
      where("frames"),
    );
    const slices = assertConverted(fromFrames, where("frames"));
    assert.equal(fromFrames.text, fromJson.text, where("frames against JSON"));
    const summary = fromFrames.status === "resolved" ? fromFrames.summary! : {};
    assert.equal(summary.slices, slices.length, where("frames"));
    assert.equal(summary.events, stream.events, where("frames"));
  });
});

/** Mutations aimed at a stream's binary frames and the records that announce them. */
const FRAME_MUTATIONS:
  readonly (readonly [number, string, (r: Rng, framed: Framed) => Uint8Array])[] = [
    [4, "set a frame byte", (r, { bytes, frames }) => {
      const frame = pickFrame(r, frames);
      const out = bytes.slice();
      if (frame !== undefined) {
        out[frame.offset + r.int(frame.length)] = r.chance(0.5)
          ? r.int(256)
          : r.pick([0x0d, 0x0e, 0x0f, 0x1d, 0x22, 0x40, 0x80, 0xff, 0x0a, 0x5b, 0x72]);
      }
      return out;
    }],
    [2, "flip a bit of a frame", (r, { bytes, frames }) => {
      const frame = pickFrame(r, frames);
      const out = bytes.slice();
      if (frame !== undefined) out[frame.offset + r.int(frame.length)]! ^= 1 << r.int(8);
      return out;
    }],
    [3, "cut the stream in a frame", (r, { bytes, frames }) => {
      const frame = pickFrame(r, frames);
      return frame === undefined ? bytes : bytes.slice(0, frame.offset + r.int(frame.length + 1));
    }],
    [2, "delete or insert frame bytes", (r, { bytes, frames }) => {
      const frame = pickFrame(r, frames);
      if (frame === undefined) return bytes;
      const out = Array.from(bytes);
      const at = frame.offset + r.int(frame.length + 1);
      if (r.chance(0.5)) out.splice(at, r.range(1, 3));
      else out.splice(at, 0, ...Array.from({ length: r.range(1, 3) }, () => r.int(256)));
      return Uint8Array.from(out);
    }],
    [3, "change a frame's length or count in its record", (r, { bytes, frames }) => {
      const frame = pickFrame(r, frames);
      if (frame === undefined) return bytes;
      const text = decoder.decode(bytes.subarray(frame.line, frame.offset));
      const changed = text.replace(
        /"(bytes|events|marshal)":(\d+)/g,
        (whole, field, n) =>
          r.chance(0.5)
            ? `"${field}":${r.pick([Number(n) + 1, Math.max(0, Number(n) - 1), 0, 2 ** 31, -1])}`
            : whole,
      );
      const out = new Uint8Array([
        ...bytes.subarray(0, frame.line),
        ...encoder.encode(changed),
        ...bytes.subarray(frame.offset),
      ]);
      return out;
    }],
  ];

function pickFrame(r: Rng, frames: Framed["frames"]): Framed["frames"][number] | undefined {
  const nonEmpty = frames.filter((frame) => frame.length > 0);
  return nonEmpty.length === 0 ? undefined : r.pick(nonEmpty);
}

Deno.test("fuzz: corrupted or truncated binary frames convert or fail naming where", async () => {
  const tally = new Tally();
  await forEachCase(async (r, sandbox, label) => {
    const stream = randomStream(r, true);
    const framed = toFramed(r, stream.records);
    const done: string[] = [];
    let bytes = framed.bytes;
    const [name, mutation] = r.weighted(
      FRAME_MUTATIONS.map(([weight, name, mutation]) => [weight, [name, mutation]] as const),
    );
    bytes = mutation(r, framed);
    done.push(name);
    // Now and then, one of the line and byte mutations too.
    if (r.chance(0.2)) ({ bytes } = { bytes: mutate(r, bytes).bytes, ...{} });
    const job: FuzzJob = { input: { chunks: chunked(r, bytes) } };
    const where = `${label}, ${done.join(", ")}:\n${excerpt(decoder.decode(bytes))}\n`;
    const outcome = await sandbox.run(job, where);
    const lines = bytes.reduce((count, byte) => count + (byte === 0x0a ? 1 : 0), 1);
    assertHandled(outcome, job, lines, where);
    tally.add(outcome);
  });
  tally.assertMixed();
});
