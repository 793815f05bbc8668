import assert from "node:assert/strict";
import { toCatapult } from "../src/convert.ts";
import { sniffFormat, summarizeTrace, TraceReadError } from "../src/trace_reader.ts";

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
    const inputs: [string, Uint8Array, string, boolean][] = [
      ["JSON", json, "json", false],
      ["gzipped JSON", await gzip(bytes(json)), "json", true],
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
