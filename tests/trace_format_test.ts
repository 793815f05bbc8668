import assert from "node:assert/strict";
import { convert, readPerfetto } from "../mod.ts";
import {
  extensionOf,
  formatBytes,
  formatOfPath,
  openTraceWriter,
  type OutputFormat,
  SIZE_LIMITS,
  sizeWarning,
} from "../src/trace_format.ts";

Deno.test("formatOfPath() reads the format from the file name", async (t) => {
  const cases: [string, OutputFormat | undefined][] = [
    ["trace.json", { format: "json", gzip: false }],
    ["app.trace.json", { format: "json", gzip: false }],
    ["dir.pftrace/trace.json.gz", { format: "json", gzip: true }],
    ["TRACE.JSON.GZ", { format: "json", gzip: true }],
    ["run.pftrace", { format: "perfetto", gzip: false }],
    ["run.perfetto-trace", { format: "perfetto", gzip: false }],
    ["run.pftrace.gz", { format: "perfetto", gzip: true }],
    ["run.perfetto-trace.gz", { format: "perfetto", gzip: true }],
    ["run.trace", undefined],
    ["run.gz", undefined],
    ["json", undefined],
  ];
  for (const [path, expected] of cases) {
    await t.step(path, () => assert.deepEqual(formatOfPath(path), expected));
  }
});

Deno.test("extensionOf() names each format's file", () => {
  assert.equal(extensionOf({ format: "json", gzip: false }), ".json");
  assert.equal(extensionOf({ format: "json", gzip: true }), ".json.gz");
  assert.equal(extensionOf({ format: "perfetto", gzip: false }), ".pftrace");
  assert.equal(extensionOf({ format: "perfetto", gzip: true }), ".pftrace.gz");
});

Deno.test("formatBytes() gives sizes in decimal units", () => {
  assert.deepEqual(
    [0, 999, 1000, 12_345, 12_345_678, 1_500_000_000, 2e12].map(formatBytes),
    ["0 B", "999 B", "1.0 kB", "12.3 kB", "12.3 MB", "1.5 GB", "2.0 TB"],
  );
});

Deno.test("sizeWarning() speaks up past what viewers open, and names what helps", async (t) => {
  await t.step("JSON up to 500 MB, protobuf up to 1.5 GB: no warning", () => {
    assert.equal(sizeWarning("json", SIZE_LIMITS.json), undefined);
    assert.equal(sizeWarning("perfetto", SIZE_LIMITS.perfetto), undefined);
    assert.equal(SIZE_LIMITS.json, 500e6);
  });
  await t.step("big JSON: the protobuf format first", () => {
    assert.equal(
      sizeWarning("json", 600e6),
      "600.0 MB of JSON is more than viewers open comfortably (Perfetto's UI runs out of " +
        "memory on JSON traces of 1 to 2 GB): to make it smaller, use the protobuf format " +
        "(-o NAME.pftrace, a fifth to a sixth of the size), --exclude-stdlib or another filter " +
        "(--include, --exclude, --no-c-calls), --max-depth N, or record only a " +
        "panopticon.trace() block (--manual)",
    );
  });
  await t.step("big protobuf: the filters", () => {
    const warning = sizeWarning("perfetto", 2e9)!;
    assert.match(warning, /^2\.0 GB is more than Perfetto's UI opens comfortably: /);
    assert.doesNotMatch(warning, /pftrace/);
    assert.match(warning, /--exclude-stdlib.*--max-depth N.*--manual/);
  });
});

/** Writes a tiny trace through `openTraceWriter` and returns the bytes that reached the output. */
async function write(output: OutputFormat) {
  const chunks: Uint8Array[] = [];
  const writer = openTraceWriter(
    new WritableStream({ write: (chunk) => void chunks.push(chunk) }),
    output,
  );
  writer.process({
    pid: 7,
    name: "python a.py",
    argv: ["a.py"],
    pythonVersion: "3.12.1",
    engine: "monitoring",
    protocol: 3,
  });
  writer.thread({ tid: 1, name: "MainThread", ident: 1, nativeId: 7 });
  writer.slice({
    tid: 1,
    start: 1,
    duration: 2,
    site: { name: "main", category: "function", file: "a.py", line: 1 },
    flow: 0,
    flowIn: false,
    flowOut: false,
    args: undefined,
  });
  writer.finish({
    complete: true,
    events: 2,
    recorded: 2,
    dropped: 0,
    reason: "exit",
    slices: 1,
    unfinished: 0,
    threads: 1,
    duration: 3,
    pid: 7,
    pythonVersion: "3.12.1",
    engine: "monitoring",
    protocol: 3,
  });
  await writer.ready();
  await writer.close();
  return {
    bytes: new Uint8Array(await new Response(ReadableStream.from(chunks)).arrayBuffer()),
    counted: writer.bytes,
  };
}

async function gunzip(bytes: Uint8Array): Promise<Uint8Array> {
  const stream = ReadableStream.from([bytes.slice()]).pipeThrough(new DecompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

Deno.test("openTraceWriter() writes each format, gzipped on request, and counts its bytes", async (t) => {
  await t.step("JSON", async () => {
    const { bytes, counted } = await write({ format: "json", gzip: false });
    assert.equal(counted, bytes.length);
    assert.equal(JSON.parse(new TextDecoder().decode(bytes)).otherData.complete, true);
  });
  await t.step("gzipped JSON: the bytes counted are the JSON's", async () => {
    const { bytes, counted } = await write({ format: "json", gzip: true });
    assert.deepEqual([bytes[0], bytes[1]], [0x1f, 0x8b]);
    const text = new TextDecoder().decode(await gunzip(bytes));
    assert.equal(counted, text.length);
    assert.equal(JSON.parse(text).traceEvents.at(-1).name, "main");
  });
  await t.step("protobuf", async () => {
    const { bytes, counted } = await write({ format: "perfetto", gzip: false });
    assert.equal(counted, bytes.length);
    assert.deepEqual((await readPerfetto(bytes, { strict: true })).slices.map((s) => s.name), [
      "main",
    ]);
  });
  await t.step("gzipped protobuf", async () => {
    const { bytes } = await write({ format: "perfetto", gzip: true });
    const trace = await readPerfetto(await gunzip(bytes), { strict: true });
    assert.deepEqual(trace.slices.map((s) => [s.name, s.ts, s.dur]), [["main", 1000, 2000]]);
  });
});

Deno.test("convert gzips as it writes, and a failing output still fails the conversion", async (t) => {
  const fixture = await Deno.readFile(new URL("./fixtures/generator.ndjson", import.meta.url));
  await t.step("gzip", async () => {
    const chunks: Uint8Array[] = [];
    const summary = await convert(
      ReadableStream.from([fixture]),
      new WritableStream({ write: (chunk) => void chunks.push(chunk) }),
      { gzip: true },
    );
    const gz = new Uint8Array(await new Response(ReadableStream.from(chunks)).arrayBuffer());
    const text = new TextDecoder().decode(await gunzip(gz));
    assert.equal(summary.bytes, text.length);
    assert.equal(summary.format, "json");
    assert.equal(JSON.parse(text).otherData.slices, 5);
  });
  await t.step("an output that fails, behind gzip", async () => {
    await assert.rejects(
      convert(
        ReadableStream.from([fixture]),
        new WritableStream({ write: () => Promise.reject(new Error("disk full")) }),
        { gzip: true, format: "perfetto" },
      ),
      /disk full/,
    );
  });
  await t.step("an unknown format, before the output is touched", async () => {
    const output = new WritableStream();
    await assert.rejects(
      // deno-lint-ignore no-explicit-any
      convert(ReadableStream.from([fixture]), output, { format: "xml" as any }),
      new RangeError("format must be one of json, perfetto, got xml"),
    );
    assert.equal(output.locked, false);
  });
});
