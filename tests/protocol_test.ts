import assert from "node:assert/strict";
import {
  checkRecord,
  decodeNdjson,
  decodeRecord,
  NdjsonDecoder,
  Op,
  PROTOCOL_VERSION,
  ProtocolError,
  type ProtocolRecord,
} from "../mod.ts";

const encoder = new TextEncoder();

/** Decodes `chunks` with `decodeNdjson`, returning the records and the warnings. */
async function decodeChunks(
  chunks: Uint8Array[],
): Promise<{ records: ProtocolRecord[]; warnings: string[] }> {
  const warnings: string[] = [];
  const records = await Array.fromAsync(
    ReadableStream.from(chunks).pipeThrough(
      decodeNdjson({ onWarning: (message) => warnings.push(message) }),
    ),
  );
  return { records, warnings };
}

/** Asserts that `run` throws a ProtocolError for `line` whose message matches `message`. */
function assertProtocolError(run: () => unknown, line: number, message: string | RegExp): void {
  assert.throws(run, (error) => {
    assert.ok(error instanceof ProtocolError, `not a ProtocolError: ${error}`);
    assert.equal(error.line, line);
    if (typeof message === "string") assert.equal(error.message, message);
    else assert.match(error.message, message);
    return true;
  });
}

const HELLO =
  '{"kind":"hello","protocol":2,"pid":4242,"python":"3.12.1","engine":"monitoring","t0":1000,"main_thread":140001,"argv":["gen.py"]}';

Deno.test("Op numbers the operations as the protocol does", () => {
  assert.deepEqual(Op, {
    Call: 0,
    Resume: 1,
    Return: 2,
    Unwind: 3,
    Suspend: 4,
    CCall: 5,
    CReturn: 6,
    CRaise: 7,
    Instant: 8,
    Counter: 9,
    SpanBegin: 10,
    SpanEnd: 11,
    Stop: 12,
    Spawn: 14,
  });
  assert.equal(PROTOCOL_VERSION, 4);
});

Deno.test("ProtocolError carries the line and names it in its message", () => {
  const error = new ProtocolError(12, "expected something", { cause: "why" });
  assert.equal(error.line, 12);
  assert.equal(error.message, "line 12: expected something");
  assert.equal(error.name, "ProtocolError");
  assert.equal(error.cause, "why");
  assert.ok(error instanceof Error);
});

Deno.test("decodeRecord decodes every kind of record", async (t) => {
  const cases: { name: string; text: string; kind: ProtocolRecord["kind"] }[] = [
    { name: "hello", text: HELLO, kind: "hello" },
    {
      name: "hello with a secret",
      text: HELLO.replace("}", ',"secret":"s3cret"}'),
      kind: "hello",
    },
    {
      name: "thread",
      text: '{"kind":"thread","thread":140001,"native_id":4242,"name":"MainThread"}',
      kind: "thread",
    },
    {
      name: "thread without a native id",
      text: '{"kind":"thread","thread":140001,"native_id":null,"name":"MainThread"}',
      kind: "thread",
    },
    {
      name: "code",
      text:
        '{"kind":"code","id":2,"module":"__main__","qualname":"numbers","file":"gen.py","line":1,"type":"generator"}',
      kind: "code",
    },
    { name: "cfunc", text: '{"kind":"cfunc","id":1,"name":"print"}', kind: "cfunc" },
    {
      name: "events",
      text: '{"kind":"events","events":[[0,140001,1000,0,1],[7,140001,1100,0,0]]}',
      kind: "events",
    },
    { name: "empty events", text: '{"kind":"events","events":[]}', kind: "events" },
    {
      name: "packed events",
      text: '{"kind":"events","packed":"WwEAAAAoBQAAAGkAAAAAaeEiAgBp6AMAAGkAAAAAaQEAAAA="}',
      kind: "events",
    },
    {
      name: "packed events that only unpacking can tell are malformed",
      text: '{"kind":"events","packed":"not base64!"}',
      kind: "events",
    },
    {
      name: "flush",
      text: '{"kind":"flush","thread":140001,"start":1710,"end":1750,"events":8}',
      kind: "flush",
    },
    {
      name: "end",
      text: '{"kind":"end","ts":1800,"events":8,"dropped":0,"reason":"exit"}',
      kind: "end",
    },
    {
      name: "end with max_rss",
      text: '{"kind":"end","ts":1800,"events":8,"dropped":0,"reason":"exit","max_rss":31457280}',
      kind: "end",
    },
    {
      name: "hello of protocol 1",
      text: HELLO.replace('"protocol":2', '"protocol":1'),
      kind: "hello",
    },
    {
      name: "hello of protocol 4, with a collector, serial thread ids and a clock",
      text: HELLO.replace('"protocol":2', '"protocol":4').replace(
        "}",
        ',"collector":"native","thread_ids":"serial","clock":"tsc"}',
      ),
      kind: "hello",
    },
    {
      name: "hello of a child process (protocol 4)",
      text: HELLO.replace('"protocol":2', '"protocol":4').replace(
        "}",
        ',"parent":{"pid":4241,"token":3}}',
      ),
      kind: "hello",
    },
    {
      name: "thread with its ident (protocol 4)",
      text: '{"kind":"thread","thread":2,"native_id":4243,"name":"Worker","ident":140001}',
      kind: "thread",
    },
    {
      name: "batch",
      text: '{"kind":"batch","bytes":65536,"events":17000,"ts":1000,"thread":1}',
      kind: "batch",
    },
    {
      name: "empty batch",
      text: '{"kind":"batch","bytes":0,"events":0,"ts":1000,"thread":1}',
      kind: "batch",
    },
    { name: "events with marshal", text: '{"kind":"events","marshal":97}', kind: "events" },
    {
      name: "limit",
      text: '{"kind":"limit","ts":5000,"events":1000000,"thread":2}',
      kind: "limit",
    },
    {
      name: "a line ending in CR",
      text: '{"kind":"cfunc","id":1,"name":"print"}\r',
      kind: "cfunc",
    },
  ];
  for (const { name, text, kind } of cases) {
    await t.step(name, () => {
      const record = decodeRecord(text, 1);
      assert.ok(record !== undefined);
      assert.equal(record.kind, kind);
      assert.deepEqual(record, JSON.parse(text));
    });
  }
});

Deno.test("decodeRecord keeps unknown fields and skips blank lines", async (t) => {
  await t.step("unknown fields", () => {
    const record = decodeRecord('{"kind":"cfunc","id":1,"name":"print","future":[1,2]}', 3);
    assert.deepEqual(record, { kind: "cfunc", id: 1, name: "print", future: [1, 2] });
  });
  for (const blank of ["", " ", "\t", "\r", "  \r"]) {
    await t.step(`blank line ${JSON.stringify(blank)}`, () => {
      assert.equal(decodeRecord(blank, 1), undefined);
    });
  }
});

Deno.test("decodeRecord rejects malformed lines, naming the line", async (t) => {
  const cases: { name: string; text: string; message: string | RegExp }[] = [
    {
      name: "text that is not JSON",
      text: '{"kind":"end",',
      message: /^line 7: expected a JSON object, got text that is not JSON \(.+\)$/,
    },
    {
      name: "a JSON array",
      text: "[1,2]",
      message: "line 7: expected a JSON object, got an array",
    },
    {
      name: "a JSON number",
      text: "42",
      message: "line 7: expected a JSON object, got a number (42)",
    },
    { name: "JSON null", text: "null", message: "line 7: expected a JSON object, got null" },
    {
      name: "no kind",
      text: '{"ts":1}',
      message: 'line 7: expected a string "kind" in the record, got undefined',
    },
    {
      name: "an unknown kind",
      text: '{"kind":"bogus"}',
      message:
        'line 7: unknown record kind "bogus": expected hello, thread, code, cfunc, mark, events, batch, limit, flush, end, exception, values, gc or cpu',
    },
    {
      name: "a string ts in an end record",
      text: '{"kind":"end","ts":"soon","events":8,"dropped":0,"reason":"exit"}',
      message: 'line 7: expected an integer "ts" in an "end" record',
    },
    {
      name: "a missing reason in an end record",
      text: '{"kind":"end","ts":1,"events":8,"dropped":0}',
      message: 'line 7: expected a string "reason" in an "end" record',
    },
    {
      name: "a max_rss that is not an integer",
      text: '{"kind":"end","ts":1,"events":8,"dropped":0,"reason":"exit","max_rss":"30M"}',
      message: 'line 7: expected an integer "max_rss" in an "end" record',
    },
    {
      name: "a fractional t0 in a hello record",
      text: HELLO.replace('"t0":1000', '"t0":1000.5'),
      message: 'line 7: expected an integer "t0" in a "hello" record',
    },
    {
      name: "a hello record without main_thread",
      text: HELLO.replace(',"main_thread":140001', ""),
      message: 'line 7: expected an integer "main_thread" in a "hello" record',
    },
    {
      name: "argv that is not strings",
      text: HELLO.replace('["gen.py"]', '["gen.py",3]'),
      message: 'line 7: expected an array of strings "argv" in a "hello" record',
    },
    {
      name: "a secret that is not a string",
      text: HELLO.replace("}", ',"secret":1}'),
      message: 'line 7: expected a string "secret" in a "hello" record',
    },
    {
      name: "a thread record without native_id",
      text: '{"kind":"thread","thread":1,"name":"MainThread"}',
      message: 'line 7: expected an integer or null "native_id" in a "thread" record',
    },
    {
      name: "a code record without qualname",
      text: '{"kind":"code","id":2,"module":"m","file":"f.py","line":1,"type":"function"}',
      message: 'line 7: expected a string "qualname" in a "code" record',
    },
    {
      name: "a code record of an unknown type",
      text:
        '{"kind":"code","id":2,"module":"m","qualname":"q","file":"f.py","line":1,"type":"lambda"}',
      message:
        'line 7: expected "type" to be "function", "generator", "coroutine" or "async_generator" in a "code" record, got "lambda"',
    },
    {
      name: "a cfunc record with a string id",
      text: '{"kind":"cfunc","id":"1","name":"print"}',
      message: 'line 7: expected an integer "id" in a "cfunc" record',
    },
    {
      name: "a flush record without events",
      text: '{"kind":"flush","thread":1,"start":1,"end":2}',
      message: 'line 7: expected an integer "events" in a "flush" record',
    },
    {
      name: "an events record with neither events nor packed",
      text: '{"kind":"events"}',
      message:
        'line 7: expected exactly one of "events", "packed" and "marshal" in an "events" record, got none',
    },
    {
      name: "an events record with both events and packed",
      text: '{"kind":"events","events":[],"packed":"WwAAAAA="}',
      message:
        'line 7: expected exactly one of "events", "packed" and "marshal" in an "events" record, got two',
    },
    {
      name: "packed events that are not a string",
      text: '{"kind":"events","packed":[1,2]}',
      message: 'line 7: expected a string "packed" in an "events" record',
    },
    {
      name: "events that are not an array",
      text: '{"kind":"events","events":{}}',
      message: 'line 7: expected an array "events" in an "events" record',
    },
    {
      name: "an event of four numbers",
      text: '{"kind":"events","events":[[0,1,2,3,4],[0,1,2,3]]}',
      message:
        'line 7: expected event 2 of an "events" record to be [op, thread, ts, frame, ref], five integers below 2^63 with op 0 to 12, 14 or 16 to 21 (six, with the thread time, for ops 0 to 7), got [0,1,2,3]',
    },
    {
      name: "an event that is not an array",
      text: '{"kind":"events","events":[7]}',
      message: /^line 7: expected event 1 of an "events" record .* got 7$/,
    },
    {
      name: "op 13",
      text: '{"kind":"events","events":[[13,1,2,3,4]]}',
      message: /^line 7: expected event 1 .* got \[13,1,2,3,4\]$/,
    },
    { name: "op 15", text: '{"kind":"events","events":[[15,1,2,0,4]]}', message: /event 1 / },
    { name: "op -1", text: '{"kind":"events","events":[[-1,1,2,3,4]]}', message: /event 1 / },
    { name: "op 1.5", text: '{"kind":"events","events":[[1.5,1,2,3,4]]}', message: /event 1 / },
    { name: 'op "1"', text: '{"kind":"events","events":[["1",1,2,3,4]]}', message: /event 1 / },
    { name: "op null", text: '{"kind":"events","events":[[null,1,2,3,4]]}', message: /event 1 / },
    {
      name: "a string timestamp",
      text: '{"kind":"events","events":[[0,1,"2",3,4]]}',
      message: /event 1 /,
    },
    {
      name: "a null ref",
      text: '{"kind":"events","events":[[0,1,2,3,null]]}',
      message: /event 1 /,
    },
    // Found by tests/fuzz_test.ts: JSON events took any number, and `1e400`
    // (Infinity) made the converter loop forever, NaN or 1e300 wrote text
    // that is not JSON. They are integers below 2^63, as packed ones are.
    {
      name: "an infinite timestamp",
      text: '{"kind":"events","events":[[0,1,2,3,4],[6,1,1e400,0,1]]}',
      message:
        'line 7: expected event 2 of an "events" record to be [op, thread, ts, frame, ref], five integers below 2^63 with op 0 to 12, 14 or 16 to 21 (six, with the thread time, for ops 0 to 7), got [6,1,Infinity,0,1]',
    },
    {
      name: "an infinite thread",
      text: '{"kind":"events","events":[[0,-1e400,2,3,4]]}',
      message: /got \[0,-Infinity,2,3,4\]$/,
    },
    {
      name: "a huge frame",
      text: '{"kind":"events","events":[[0,1,2,1e300,4]]}',
      message: /event 1 /,
    },
    {
      name: "a timestamp of 2^63",
      text: '{"kind":"events","events":[[0,1,9223372036854775808,3,4]]}',
      message: /event 1 /,
    },
    {
      name: "a fractional timestamp",
      text: '{"kind":"events","events":[[0,1,2.5,3,4]]}',
      message: /event 1 /,
    },
    {
      name: "a t0 of 1e300 in a hello record",
      text: HELLO.replace('"t0":1000', '"t0":1e300'),
      message:
        'line 7: expected an integer "t0" in a "hello" record, got 1e+300, which is not below 2^63',
    },
    {
      name: "a native_id of -2^63 in a thread record",
      text: '{"kind":"thread","thread":1,"native_id":-9223372036854775808,"name":"T"}',
      message:
        'line 7: expected an integer or null "native_id" in a "thread" record, got -9223372036854776000, which is not below 2^63',
    },
    {
      name: "thread ids that are neither serial nor ident",
      text: HELLO.replace("}", ',"thread_ids":"tid"}'),
      message:
        'line 7: expected "thread_ids" to be "serial" or "ident" in a "hello" record, got "tid"',
    },
    {
      name: "a parent without its token",
      text: HELLO.replace("}", ',"parent":{"pid":4241}}'),
      message:
        'line 7: expected "parent" to be {"pid": integer, "token": integer} in a "hello" record, got {"pid":4241}',
    },
    {
      name: "a parent that is a number",
      text: HELLO.replace("}", ',"parent":4241}'),
      message: /^line 7: expected "parent" to be .* got 4241$/,
    },
    {
      name: "a collector that is not a string",
      text: HELLO.replace("}", ',"collector":1}'),
      message: 'line 7: expected a string "collector" in a "hello" record',
    },
    {
      name: "a thread ident that is not an integer",
      text: '{"kind":"thread","thread":2,"native_id":null,"name":"W","ident":"x"}',
      message: 'line 7: expected an integer "ident" in a "thread" record',
    },
    {
      name: "a batch of negative length",
      text: '{"kind":"batch","bytes":-1,"events":0,"ts":1000,"thread":1}',
      message: 'line 7: expected a non-negative integer "bytes" in a "batch" record, got -1',
    },
    {
      name: "a batch longer than a frame may be",
      text: '{"kind":"batch","bytes":1073741825,"events":0,"ts":1000,"thread":1}',
      message:
        "line 7: a binary frame of 1073741825 bytes is longer than the 1073741824 bytes a frame may hold",
    },
    {
      name: "a batch with a fractional count",
      text: '{"kind":"batch","bytes":4,"events":1.5,"ts":1000,"thread":1}',
      message: 'line 7: expected a non-negative integer "events" in a "batch" record',
    },
    {
      name: "a batch without its thread",
      text: '{"kind":"batch","bytes":4,"events":1,"ts":1000}',
      message: 'line 7: expected an integer "thread" in a "batch" record',
    },
    {
      name: "events with marshal and packed",
      text: '{"kind":"events","marshal":4,"packed":"AAAA"}',
      message:
        'line 7: expected exactly one of "events", "packed" and "marshal" in an "events" record, got two',
    },
    {
      name: "events with a marshal length that is not a number",
      text: '{"kind":"events","marshal":"4"}',
      message: 'line 7: expected a non-negative integer "marshal" in an "events" record',
    },
    {
      name: "a limit without its count",
      text: '{"kind":"limit","ts":5000,"thread":2}',
      message: 'line 7: expected an integer "events" in a "limit" record',
    },
  ];
  for (const { name, text, message } of cases) {
    await t.step(name, () => assertProtocolError(() => decodeRecord(text, 7), 7, message));
  }
});

Deno.test("checkRecord checks the frame that a record built in memory carries", async (t) => {
  const batch = { kind: "batch", bytes: 2, events: 1, ts: 0, thread: 1 };
  await t.step("a frame of the record's length", () => {
    const payload = Uint8Array.of(6, 1);
    assert.equal(checkRecord({ ...batch, payload }, 3).kind, "batch");
  });
  await t.step("no frame (it is checked where it is needed)", () => {
    assert.equal(checkRecord(batch, 3).kind, "batch");
  });
  await t.step("a frame of another length", () => {
    assertProtocolError(
      () => checkRecord({ ...batch, payload: Uint8Array.of(6) }, 3),
      3,
      'line 3: expected "payload" to be a Uint8Array of 2 bytes in a "batch" record, got 1 bytes',
    );
  });
  await t.step("a frame that is not bytes", () => {
    assertProtocolError(
      () => checkRecord({ kind: "events", marshal: 2, payload: [6, 1] }, 3),
      3,
      'line 3: expected "payload" to be a Uint8Array of 2 bytes in an "events" record, got an array',
    );
  });
  await t.step("a payload field in a line is not the frame, and is ignored", () => {
    const record = decodeRecord(`${JSON.stringify({ ...batch, payload: "x" })}`, 3);
    assert.deepEqual(record, batch);
  });
});

/** NDJSON with characters of two, three and four bytes in UTF-8. */
const UNICODE_TEXT = [
  HELLO,
  '{"kind":"thread","thread":140001,"native_id":null,"name":"Wörker ✓ 😀"}',
  "",
  '{"kind":"code","id":1,"module":"café","qualname":"naïve.<locals>.😀","file":"/tmp/ünï.py","line":1,"type":"function"}',
  '{"kind":"events","events":[[0,140001,1000,0,1],[2,140001,2000,0,1]]}',
].join("\n") + "\n";

Deno.test("decodeNdjson splits lines at any chunk boundary", async (t) => {
  const bytes = encoder.encode(UNICODE_TEXT);
  const expected = UNICODE_TEXT.split("\n").filter((line) => line !== "").map((line) =>
    JSON.parse(line)
  );

  await t.step("in one chunk", async () => {
    const { records, warnings } = await decodeChunks([bytes]);
    assert.deepEqual(records, expected);
    assert.deepEqual(warnings, []);
  });
  await t.step("in two chunks, split at every byte, even inside a character", async () => {
    for (let at = 0; at <= bytes.length; at++) {
      const { records } = await decodeChunks([bytes.slice(0, at), bytes.slice(at)]);
      assert.deepEqual(records, expected, `split at byte ${at}`);
    }
  });
  await t.step("one byte per chunk", async () => {
    const chunks = Array.from(bytes, (byte) => Uint8Array.of(byte));
    const { records } = await decodeChunks(chunks);
    assert.deepEqual(records, expected);
  });
  await t.step("with empty chunks between", async () => {
    const { records } = await decodeChunks([
      new Uint8Array(0),
      bytes.slice(0, 5),
      new Uint8Array(0),
      bytes.slice(5),
      new Uint8Array(0),
    ]);
    assert.deepEqual(records, expected);
  });
});

Deno.test("decodeNdjson handles the end of the stream", async (t) => {
  const cfunc = '{"kind":"cfunc","id":1,"name":"print"}';
  const cases: {
    name: string;
    text: string;
    /** Bytes to cut off the end, to leave half a character. */
    cut?: number;
    kinds: string[];
    warnings: (string | RegExp)[];
  }[] = [
    { name: "a final newline", text: `${cfunc}\n`, kinds: ["cfunc"], warnings: [] },
    {
      name: "a whole final record without newline",
      text: `${cfunc}\n${cfunc}`,
      kinds: ["cfunc", "cfunc"],
      warnings: [],
    },
    { name: "trailing blank lines", text: `${cfunc}\n\n  \n `, kinds: ["cfunc"], warnings: [] },
    {
      name: "a final line cut short",
      text: `${cfunc}\n\n{"kind":"events","events":[[0,1,`,
      kinds: ["cfunc"],
      warnings: ["line 3 is incomplete (the stream ended in the middle of it): it was dropped"],
    },
    {
      name: "a multi-byte character cut short",
      text: `${cfunc}\n{"kind":"cfunc","id":2,"name":"\u00e9`,
      cut: 1,
      kinds: ["cfunc"],
      warnings: [/^line 2 is incomplete/],
    },
    { name: "an empty stream", text: "", kinds: [], warnings: [] },
  ];
  for (const { name, text, cut = 0, kinds, warnings: expected } of cases) {
    await t.step(name, async () => {
      const bytes = encoder.encode(text);
      const { records, warnings } = await decodeChunks([bytes.slice(0, bytes.length - cut)]);
      assert.deepEqual(records.map((record) => record.kind), kinds);
      assert.equal(warnings.length, expected.length);
      expected.forEach((message, i) => {
        if (typeof message === "string") assert.equal(warnings[i], message);
        else assert.match(warnings[i]!, message);
      });
    });
  }
});

Deno.test("decodeNdjson errors the stream on a malformed line, counting blank lines", async () => {
  const text = `${HELLO}\n\n\n{"kind":"cfunc","id":1}\n`;
  await assert.rejects(
    () => decodeChunks([encoder.encode(text)]),
    (error) => {
      assert.ok(error instanceof ProtocolError);
      assert.equal(error.line, 4);
      assert.equal(error.message, 'line 4: expected a string "name" in a "cfunc" record');
      return true;
    },
  );
});

Deno.test("decodeNdjson rejects a malformed final line that is whole JSON", async () => {
  await assert.rejects(
    () => decodeChunks([encoder.encode(`${HELLO}\n{"kind":"later"}`)]),
    /^ProtocolError: line 2: unknown record kind "later"/,
  );
});

Deno.test("NdjsonDecoder joins a line that spans many chunks in linear time", () => {
  // 200,000 events in one line, fed in 4 KiB chunks: joining the pieces once
  // per line keeps this fast; searching a growing string per chunk would not.
  const events = Array.from({ length: 200_000 }, (_, i) => `[0,1,${i},0,1]`).join(",");
  const bytes = encoder.encode(`{"kind":"events","events":[${events}]}\n`);
  const decoder = new NdjsonDecoder();
  const seen: [ProtocolRecord, number][] = [];
  const started = performance.now();
  for (let at = 0; at < bytes.length; at += 4096) {
    decoder.push(bytes.subarray(at, at + 4096), (record, line) => seen.push([record, line]));
  }
  decoder.finish((record, line) => seen.push([record, line]));
  const elapsed = performance.now() - started;
  assert.equal(seen.length, 1);
  const [record, line] = seen[0]!;
  assert.equal(line, 1);
  assert.equal(record.kind, "events");
  assert.equal(record.kind === "events" && record.events?.length, 200_000);
  assert.equal(decoder.line, 1);
  assert.ok(elapsed < 2000, `took ${elapsed} ms`);
});

Deno.test("decodeNdjson decodes the protocol's example, which the generator fixture holds", async () => {
  const doc = await Deno.readTextFile(new URL("../docs/protocol.md", import.meta.url));
  const example = doc.split("## Example")[1]?.match(/```\n([\s\S]*?)```/)?.[1];
  assert.ok(example !== undefined, "docs/protocol.md has no example");
  const fixture = await Deno.readFile(new URL("./fixtures/generator.ndjson", import.meta.url));
  assert.equal(new TextDecoder().decode(fixture), example);
  const { records, warnings } = await decodeChunks([fixture]);
  assert.deepEqual(records.map((record) => record.kind), [
    "hello",
    "thread",
    "code",
    "code",
    "cfunc",
    "events",
    "flush",
    "end",
  ]);
  assert.deepEqual(warnings, []);
});

// --- Binary frames (protocol 4) -----------------------------------------------

/** The shared fixture: lines and batch frames, the frames holding newline bytes. */
const NATIVE = await Deno.readFile(new URL("./fixtures/native.stream", import.meta.url));
const NATIVE_FRAMES: { line: number; offset: number; length: number }[] = JSON.parse(
  await Deno.readTextFile(new URL("./fixtures/native.events.json", import.meta.url)),
);

/** What a decoder hands out: kinds, lines, and every frame, copied. */
function decodeCopying(
  chunks: Uint8Array[],
): { seen: [string, number, number[] | undefined][]; warnings: string[] } {
  const warnings: string[] = [];
  const decoder = new NdjsonDecoder({ onWarning: (message) => warnings.push(message) });
  const seen: [string, number, number[] | undefined][] = [];
  const onRecord = (record: ProtocolRecord, line: number) => {
    const payload = "payload" in record ? record.payload : undefined;
    // The payload may be the decoder's buffer, valid during this call only.
    seen.push([record.kind, line, payload && Array.from(payload)]);
  };
  for (const chunk of chunks) decoder.push(chunk, onRecord);
  decoder.finish(onRecord);
  return { seen, warnings };
}

Deno.test("NdjsonDecoder hands out each binary frame with its record", async (t) => {
  const whole = decodeCopying([NATIVE]);
  await t.step("in one chunk", () => {
    assert.deepEqual(whole.warnings, []);
    const batches = whole.seen.filter(([kind]) => kind === "batch");
    assert.deepEqual(
      batches.map(([, line, payload]) => [line, payload]),
      NATIVE_FRAMES.map(({ line, offset, length }) => [
        line,
        Array.from(NATIVE.subarray(offset, offset + length)),
      ]),
    );
    // A frame is not a line: the lines count on after it.
    assert.deepEqual(whole.seen.at(-1)!.slice(0, 2), ["end", NATIVE_FRAMES.at(-1)!.line + 1]);
  });
  await t.step("in two chunks, split at every byte", () => {
    for (let at = 0; at <= NATIVE.length; at++) {
      const split = decodeCopying([NATIVE.slice(0, at), NATIVE.slice(at)]);
      assert.deepEqual(split, whole, `split at byte ${at}`);
    }
  });
  await t.step("one byte per chunk", () => {
    assert.deepEqual(decodeCopying(Array.from(NATIVE, (byte) => Uint8Array.of(byte))), whole);
  });
  await t.step("a frame within one chunk is not copied", () => {
    const decoder = new NdjsonDecoder();
    const buffers: ArrayBufferLike[] = [];
    decoder.push(NATIVE, (record) => {
      if (record.kind === "batch" && record.bytes > 0) buffers.push(record.payload!.buffer);
    });
    assert.ok(buffers.length > 0 && buffers.every((buffer) => buffer === NATIVE.buffer));
  });
  await t.step("with decodeNdjson, as records of the stream", async () => {
    const { records, warnings } = await decodeChunks([NATIVE.slice(0, 1500), NATIVE.slice(1500)]);
    assert.deepEqual(warnings, []);
    assert.deepEqual(
      records.map((record) => record.kind),
      whole.seen.map(([kind]) => kind),
    );
  });
});

Deno.test("NdjsonDecoder reads marshal frames and empty frames", () => {
  const text = (line: string) => encoder.encode(`${line}\n`);
  const { seen, warnings } = decodeCopying([
    text('{"kind":"events","marshal":3}'),
    Uint8Array.of(0x0a, 0x0a, 0x7b),
    text('{"kind":"batch","bytes":0,"events":0,"ts":1,"thread":1}'),
    text('{"kind":"cfunc","id":1,"name":"print"}'),
  ]);
  assert.deepEqual(warnings, []);
  assert.deepEqual(seen, [
    ["events", 1, [0x0a, 0x0a, 0x7b]],
    ["batch", 2, []],
    ["cfunc", 3, undefined],
  ]);
});

Deno.test("NdjsonDecoder drops a binary frame cut short, with a warning", async (t) => {
  const last = NATIVE_FRAMES.at(-1)!;
  await t.step("in the middle of the frame", () => {
    const { seen, warnings } = decodeCopying([NATIVE.slice(0, last.offset + 10)]);
    assert.deepEqual(warnings, [
      `the binary frame after line ${last.line} is incomplete (the stream ended after 10 of ` +
      `its ${last.length} bytes): it was dropped, with its record`,
    ]);
    assert.equal(seen.at(-1)![1], last.line - 1);
  });
  await t.step("before the frame's first byte", () => {
    const { warnings } = decodeCopying([NATIVE.slice(0, last.offset)]);
    assert.match(warnings[0]!, /ended after 0 of its 47 bytes/);
  });
  await t.step("a final record without a newline, and so without its frame", () => {
    const { seen, warnings } = decodeCopying([NATIVE.slice(0, last.offset - 1)]);
    assert.match(
      warnings[0]!,
      new RegExp(`^the binary frame after line ${last.line} is incomplete`),
    );
    assert.equal(seen.at(-1)![1], last.line - 1);
  });
  await t.step("a final empty batch without a newline is whole", () => {
    const { seen, warnings } = decodeCopying([
      encoder.encode('{"kind":"batch","bytes":0,"events":0,"ts":1,"thread":1}'),
    ]);
    assert.deepEqual(warnings, []);
    assert.deepEqual(seen, [["batch", 1, []]]);
  });
});

Deno.test("NdjsonDecoder names the right line after frames that hold newlines", () => {
  const frame = NATIVE_FRAMES[0]!;
  const bytes = new Uint8Array([
    ...NATIVE.subarray(0, frame.offset + frame.length),
    ...encoder.encode('{"kind":"cfunc","id":1}\n'),
  ]);
  assert.ok(NATIVE.subarray(frame.offset, frame.offset + frame.length).includes(0x0a));
  assertProtocolError(
    () => new NdjsonDecoder().push(bytes, () => {}),
    frame.line + 1,
    `line ${frame.line + 1}: expected a string "name" in a "cfunc" record`,
  );
});

Deno.test("NdjsonDecoder finds frames after long lines of characters of every length", async (t) => {
  // Lines longer than the decoder's first search (256 bytes), and short
  // ones, with characters of 2 to 4 bytes, each before a frame that holds
  // newlines and bytes that are not UTF-8, and a byte order mark first.
  const name = (n: number) => `Wörker ✓ 😀 é ${"x".repeat(n)}`;
  const frame = Uint8Array.of(0x0a, 0xf0, 0x9f, 0x0a, 0xe2, 0x82, 0x0a, 0xc3, 0xff, 0x0a);
  const parts: (string | Uint8Array)[] = [
    "\uFEFF" + JSON.stringify({ kind: "cfunc", id: 1, name: name(300) }),
    '{"kind":"events","marshal":10}',
    frame,
    JSON.stringify({ kind: "cfunc", id: 2, name: name(1) }),
    '{"kind":"events","marshal":10}',
    frame,
    JSON.stringify({ kind: "cfunc", id: 3, name: name(1000) }),
    "",
    JSON.stringify({ kind: "cfunc", id: 4, name: "😀".repeat(100) }),
    // Split inside the character, the decoder keeps its start: the text of
    // the next chunk has more code units than bytes, until the newline,
    // which a blank line follows.
    JSON.stringify({ kind: "cfunc", id: 6, name: `😀${"x".repeat(300)}` }),
    "",
    '{"kind":"batch","bytes":10,"events":0,"ts":0,"thread":1}',
    frame,
    JSON.stringify({ kind: "cfunc", id: 5, name: name(10) }),
  ];
  const bytes = new Uint8Array(
    parts.flatMap((part) => typeof part === "string" ? [...encoder.encode(part), 0x0a] : [...part]),
  );
  const whole = decodeCopying([bytes]);
  await t.step("in one chunk", () => {
    assert.deepEqual(whole.warnings, []);
    assert.deepEqual(whole.seen.map(([kind, line]) => [kind, line]), [
      ["cfunc", 1],
      ["events", 2],
      ["cfunc", 3],
      ["events", 4],
      ["cfunc", 5],
      ["cfunc", 7],
      ["cfunc", 8],
      ["batch", 10],
      ["cfunc", 11],
    ]);
    const frames = whole.seen.filter(([kind]) => kind !== "cfunc").map(([, , payload]) => payload);
    assert.deepEqual(frames, [Array.from(frame), Array.from(frame), Array.from(frame)]);
  });
  await t.step("the names decode whole", () => {
    const { records } = decodeSync([bytes]);
    assert.deepEqual(
      records.filter((record) => record.kind === "cfunc").map((record) =>
        record.kind === "cfunc" && record.name
      ),
      [name(300), name(1), name(1000), "😀".repeat(100), `😀${"x".repeat(300)}`, name(10)],
    );
  });
  await t.step("in two chunks, split at every byte", () => {
    for (let at = 0; at <= bytes.length; at++) {
      const split = decodeCopying([bytes.slice(0, at), bytes.slice(at)]);
      assert.deepEqual(split, whole, `split at byte ${at}`);
    }
  });
  await t.step("in three chunks, split at many pairs of bytes", () => {
    for (let a = 0; a <= bytes.length; a += 7) {
      for (let b = a; b <= bytes.length; b += 13) {
        const split = decodeCopying([bytes.slice(0, a), bytes.slice(a, b), bytes.slice(b)]);
        assert.deepEqual(split, whole, `split at bytes ${a} and ${b}`);
      }
    }
  });
  await t.step("one byte per chunk", () => {
    assert.deepEqual(decodeCopying(Array.from(bytes, (byte) => Uint8Array.of(byte))), whole);
  });
});

/** Decodes `chunks` synchronously, keeping the records (not their frames). */
function decodeSync(chunks: Uint8Array[]): { records: ProtocolRecord[] } {
  const records: ProtocolRecord[] = [];
  const decoder = new NdjsonDecoder();
  for (const chunk of chunks) decoder.push(chunk, (record) => records.push(record));
  decoder.finish((record) => records.push(record));
  return { records };
}

Deno.test("checkRecord reads the thread time of --cpu-time", async (t) => {
  const hello = {
    kind: "hello",
    protocol: 4,
    pid: 1,
    python: "3.13.0",
    engine: "monitoring",
    t0: 0,
    main_thread: 1,
    argv: [],
  };
  await t.step("hello.thread_time, a boolean", () => {
    assert.equal(
      (checkRecord({ ...hello, thread_time: true }, 1) as { thread_time: boolean }).thread_time,
      true,
    );
    assertProtocolError(
      () => checkRecord({ ...hello, thread_time: 1 }, 2),
      2,
      /expected a boolean "thread_time" in a "hello" record/,
    );
  });
  await t.step("a sixth number on ops 0 to 7", () => {
    const events = [[0, 1, 10, 0, 1, 500], [6, 1, 20, 0, 0, 900], [8, 1, 30, 0, 1]];
    assert.deepEqual(checkRecord({ kind: "events", events }, 3), { kind: "events", events });
  });
  await t.step("but not on another op", () => {
    assertProtocolError(
      () => checkRecord({ kind: "events", events: [[8, 1, 30, 0, 1, 5]] }, 4),
      4,
      /expected event 1 of an "events" record to be \[op, thread, ts, frame, ref\]/,
    );
  });
});
