/**
 * Unit tests of `--lines` in the converter (op 19 of docs/protocol.md):
 * the source text (src/source_lines.ts), the batch frame's extended op,
 * and the instants the frame-state machine nests in a frame's slice, in
 * both trace formats.
 */
import assert from "node:assert/strict";
import { SourceLines } from "../src/source_lines.ts";
import { unpackBatch } from "../src/batch.ts";
import { toCatapult, toPerfetto } from "../src/convert.ts";
import { readPerfetto } from "../src/perfetto_reader.ts";
import type { ProtocolRecord } from "../src/protocol.ts";

const encode = (text: string) => new TextEncoder().encode(text);

Deno.test("SourceLines reads each file once, and gives a line without its indentation", () => {
  const reads: string[] = [];
  const source = new SourceLines("/app", (path) => {
    reads.push(path);
    if (path === "/app/a.py") return encode("def f():\r\n    x = 1\n\treturn x\n");
    throw new Deno.errors.NotFound(path);
  });
  assert.equal(source.text("a.py", 1), "def f():");
  assert.equal(source.text("a.py", 2), "x = 1");
  assert.equal(source.text("/app/a.py", 3), "return x");
  assert.equal(source.text("a.py", 40), "");
  assert.equal(source.text("gone.py", 1), "");
  assert.equal(source.text("gone.py", 2), "");
  assert.equal(source.text("<string>", 1), "");
  // a.py twice (as given, and absolute), gone.py once, <string> never.
  assert.deepEqual(reads, ["/app/a.py", "/app/a.py", "/app/gone.py"]);
});

Deno.test("unpackBatch reads the line event: op 15, sub-op 3, dt, the line, no key", () => {
  const payload = Uint8Array.of(
    0x00, // call, dt 250, code 1
    0xfa,
    0x01,
    0x01,
    0x0f, // line, dt 5, line 12
    0x03,
    0x05,
    0x0c,
    0x0f, // line, dt 300, line 200
    0x03,
    0xac,
    0x02,
    0xc8,
    0x01,
  );
  const record = { kind: "batch", bytes: payload.length, events: 3, ts: 1000, thread: 1, payload };
  assert.deepEqual(unpackBatch(record as ProtocolRecord & { kind: "batch" }), [
    [0, 1, 1250, 0, 1],
    [19, 1, 1255, 0, 12],
    [19, 1, 1555, 0, 200],
  ]);
});

const file = Deno.makeTempFileSync({ suffix: ".py" });
Deno.writeTextFileSync(
  file,
  ["def work():", "    for i in range(2):", "        i += 1", "    return i", ""].join("\n"),
);

/** A call of `work` (code 2, a plain function) from `main` (code 1), with the lines it ran. */
const RECORDS: ProtocolRecord[] = [
  {
    kind: "hello",
    protocol: 4,
    pid: 7,
    python: "3.12.1",
    engine: "monitoring",
    t0: 0,
    main_thread: 1,
    argv: ["a.py"],
  },
  { kind: "code", id: 1, module: "__main__", qualname: "main", file, line: 1, type: "function" },
  { kind: "code", id: 2, module: "__main__", qualname: "work", file, line: 1, type: "function" },
  {
    kind: "events",
    events: [
      [0, 1, 1000, 0, 1],
      [0, 1, 2000, 0, 2],
      [19, 1, 3000, 0, 2],
      [19, 1, 4000, 0, 3],
      [19, 1, 5000, 0, 2],
      [19, 1, 6000, 0, 3],
      [19, 1, 7000, 0, 2],
      [19, 1, 8000, 0, 4],
      [2, 1, 9000, 0, 0],
      [19, 1, 9500, 0, 5], // in main, after work returned
      [2, 1, 10000, 0, 0],
    ],
  },
  { kind: "end", ts: 11000, events: 11, dropped: 0, reason: "exit" },
];

const EXPECTED = [
  ["line 2", "for i in range(2):"],
  ["line 3", "i += 1"],
  ["line 2", "for i in range(2):"],
  ["line 3", "i += 1"],
  ["line 2", "for i in range(2):"],
  ["line 4", "return i"],
];

Deno.test("FrameStateMachine nests an instant per line in the innermost frame's slice (Catapult)", async () => {
  const text = (await Array.fromAsync(toCatapult(ReadableStream.from(RECORDS)))).join("");
  const events = JSON.parse(text).traceEvents as {
    name: string;
    cat?: string;
    ts: number;
    dur?: number;
    args?: { line: number; text: string };
  }[];
  const work = events.find((event) => event.name === "work")!;
  const lines = events.filter((event) => event.cat === "line").sort((a, b) => a.ts - b.ts);
  const inWork = lines.filter((l) => l.ts >= work.ts && l.ts <= work.ts + work.dur!);
  assert.deepEqual(inWork.map((l) => [l.name, l.args!.text]), EXPECTED);
  assert.deepEqual(inWork.map((l) => l.args!.line), [2, 3, 2, 3, 2, 4]);
  assert.ok(inWork.every((l) => l.dur === 0));
  // The last one is main's, after work's slice: a line past the file's end has no text.
  assert.deepEqual(lines.slice(6).map((l) => [l.name, l.args!.text]), [["line 5", ""]]);
});

Deno.test("FrameStateMachine's line instants are the children of the frame's slice (Perfetto)", async () => {
  const trace = await readPerfetto(toPerfetto(ReadableStream.from(RECORDS)));
  const work = trace.slices.find((slice) => slice.name === "work")!;
  const main = trace.slices.find((slice) => slice.name === "main")!;
  const lines = trace.slices.filter((slice) => slice.category === "line");
  assert.deepEqual(
    lines.filter((l) => l.parent === work.id).map((l) => [l.name, l.args.text]),
    EXPECTED,
  );
  assert.deepEqual(lines.filter((l) => l.parent === main.id).map((l) => l.name), ["line 5"]);
  assert.deepEqual(lines[0]!.args.line, 2);
});

Deno.test("FrameStateMachine leaves line instants deeper than --max-depth out", async () => {
  const text = (await Array.fromAsync(toCatapult(ReadableStream.from(RECORDS), { maxDepth: 2 })))
    .join("");
  const lines = JSON.parse(text).traceEvents.filter((e: { cat?: string }) => e.cat === "line");
  // work's lines are at depth 3; main's one is at depth 2.
  assert.deepEqual(lines.map((l: { name: string }) => l.name), ["line 5"]);
});
