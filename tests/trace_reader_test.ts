import assert from "node:assert/strict";
import { toCatapult, toPerfetto } from "../src/convert.ts";
import type { ProtocolRecord } from "../src/protocol.ts";
import { sniffFormat, summarizeTrace, TraceReadError } from "../src/trace_reader.ts";
import { randomStream } from "./_streams.ts";

const FIXTURES = new URL("./fixtures/", import.meta.url);
const encoder = new TextEncoder();

function bytes(...chunks: (string | Uint8Array)[]): ReadableStream<Uint8Array> {
  return ReadableStream.from(
    chunks.map((chunk) => typeof chunk === "string" ? encoder.encode(chunk) : chunk),
  );
}

async function gzip(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(
    await new Response(
      stream.pipeThrough(new CompressionStream("gzip") as TransformStream<Uint8Array, Uint8Array>),
    ).arrayBuffer(),
  );
}

async function fixture(name: string): Promise<Uint8Array> {
  return await Deno.readFile(new URL(name, FIXTURES));
}

async function catapult(recording: Uint8Array): Promise<Uint8Array> {
  const text = (await Array.fromAsync(toCatapult(bytes(recording)))).join("");
  return encoder.encode(text);
}

async function protobuf(recording: Uint8Array | ProtocolRecord[]): Promise<Uint8Array> {
  const input = recording instanceof Uint8Array ? bytes(recording) : ReadableStream.from(recording);
  return new Uint8Array(await new Response(toPerfetto(input)).arrayBuffer());
}

Deno.test("sniffFormat() tells a trace by its first bytes", () => {
  const cases: [string | number[], string | undefined][] = [
    ['{"traceEvents":[', "json"],
    ['\n  [{"ph":"X"', "json"],
    ['{"kind":"hello","protocol":4', "ndjson"],
    ['{ "kind" : "hello"', "ndjson"],
    [[0x0a, 0x12, 0x08], "perfetto"],
    ["hello", undefined],
    ["", undefined],
  ];
  for (const [head, format] of cases) {
    const data = typeof head === "string" ? encoder.encode(head) : Uint8Array.from(head);
    assert.equal(sniffFormat(data), format, JSON.stringify(head));
  }
});

Deno.test("summarizeTrace() gives one summary of a recording and of its traces", async (t) => {
  for (const name of ["threads.ndjson", "native.stream", "generator.ndjson"]) {
    const recording = await fixture(name);
    const expected = (await summarizeTrace(bytes(recording))).report;
    assert.ok(expected.functions.length > 0);
    const json = await catapult(recording);
    const pftrace = await protobuf(recording);
    const inputs: [string, Uint8Array, string, boolean][] = [
      ["JSON", json, "json", false],
      ["gzipped JSON", await gzip(bytes(json)), "json", true],
      ["protobuf", pftrace, "perfetto", false],
      ["gzipped protobuf", await gzip(bytes(pftrace)), "perfetto", true],
      ["the gzipped recording", await gzip(bytes(recording)), "ndjson", true],
    ];
    for (const [what, data, format, gzipped] of inputs) {
      await t.step(`${name}: ${what}, in pieces of 5 bytes`, async () => {
        const pieces = Array.from(
          { length: Math.ceil(data.length / 5) },
          (_, i) => data.subarray(i * 5, i * 5 + 5),
        );
        const result = await summarizeTrace(bytes(...pieces));
        assert.deepEqual([result.format, result.gzip], [format, gzipped]);
        assert.deepEqual(result.report, expected);
      });
    }
  }
});

Deno.test("summarizeTrace() sums up random streams alike in JSON and protobuf", async (t) => {
  for (const seed of [11, 12, 13, 14]) {
    await t.step(`seed ${seed}`, async () => {
      const records = randomStream(seed, 3000);
      const fromRecords = (await summarizeTrace(ReadableStream.from(records.map((record) =>
        encoder.encode(`${JSON.stringify(record)}\n`)
      )))).report;
      const text = (await Array.fromAsync(toCatapult(ReadableStream.from(records)))).join("");
      const fromJson = (await summarizeTrace(bytes(text))).report;
      const fromProtobuf = (await summarizeTrace(bytes(await protobuf(records)))).report;
      assert.deepEqual(fromJson, fromRecords);
      assert.deepEqual(fromProtobuf, fromRecords);
    });
  }
});

Deno.test("summarizeTrace() says what is wrong with what is not a trace", async (t) => {
  const cases: [string, ReadableStream<Uint8Array>, RegExp][] = [
    ["an empty file", bytes(), /^the file is empty$/],
    [
      "text",
      bytes("hello, world\n"),
      /^this is not a trace Panopticon reads: expected a JSON trace/,
    ],
    [
      "a broken recording",
      bytes('{"kind":"hello","protocol":2}\n'),
      /^the recording is broken at line 1: /,
    ],
    [
      "broken gzip",
      bytes(Uint8Array.of(0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3)),
      /^the gzip data is broken/,
    ],
    ["malformed JSON", bytes('{"traceEvents":[{"ph":"X",]}'), /^line 1: not valid JSON/],
    [
      "a protobuf trace cut short",
      bytes(Uint8Array.of(0x0a, 0x20, 0x08, 0x01)),
      /^the protobuf trace is broken: the trace ends inside a packet/,
    ],
  ];
  for (const [what, input, message] of cases) {
    await t.step(what, async () => {
      await assert.rejects(summarizeTrace(input), (error: unknown) => {
        assert.ok(error instanceof TraceReadError, String(error));
        assert.match(error.message, message);
        return true;
      });
    });
  }
  await t.step("a thread the trace does not have", async () => {
    await assert.rejects(
      summarizeTrace(bytes(await fixture("threads.ndjson")), { thread: "nobody" }),
      /^TraceReadError: the trace has no thread named "nobody": its threads are "MainThread", /,
    );
  });
  await t.step("a recording cut short is summed up, with the converter's warning", async () => {
    const recording = await fixture("truncated.ndjson");
    const { report, warnings } = await summarizeTrace(bytes(recording));
    assert.equal(report.run.complete, false);
    assert.ok(warnings.some((w) => /without an "end" record/.test(w)), warnings.join("\n"));
  });
});
