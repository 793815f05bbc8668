/**
 * Unit tests of src/values.ts: the names values are shown by, and the
 * summary's tally of them (SummarySink's `values`, formatSummary's table).
 */
import assert from "node:assert/strict";
import { DISTINCT_LIMIT, namedValues, OWN_ARGS, valueName, ValueTally } from "../src/values.ts";
import { SummarySink } from "../src/summary.ts";
import { formatSummary } from "../src/summary_text.ts";
import type { Slice, SliceArgs, SliceSite } from "../src/trace_model.ts";

const fib: SliceSite = { name: "fib", category: "function", file: "/a/fib.py", line: 1 };
const gen: SliceSite = { name: "gen", category: "generator", file: "/a/fib.py", line: 5 };
const len: SliceSite = { name: "len", category: "c_function" };

Deno.test("valueName renames the slice's own args and nothing else", () => {
  for (const own of OWN_ARGS) assert.equal(valueName(own), `${own} (argument)`);
  for (const name of ["n", "self", "*args", "**kwargs", "return", "yield", "File"]) {
    assert.equal(valueName(name), name);
  }
});

Deno.test("namedValues keeps the object when no name changes, and the order when one does", () => {
  const plain = { n: "1", return: "2" };
  assert.equal(namedValues(plain), plain);
  assert.deepEqual(Object.entries(namedValues({ file: "'x'", mode: "'r'", line: "3" })), [
    ["file (argument)", "'x'"],
    ["mode", "'r'"],
    ["line (argument)", "3"],
  ]);
});

Deno.test("ValueTally counts per function and name, merges threads, and orders by weight", () => {
  const tally = new ValueTally();
  tally.add(gen, 1, { k: "3", task: "Task-1" });
  for (const n of [1, 1, 2, 1]) tally.add(fib, 1, { n: String(n), return: "1" });
  tally.add(fib, 2, { n: "2", unfinished: true });
  const all = tally.summaries();
  assert.deepEqual(
    all.map((v) => [v.function, v.name, v.slices, v.distinct, v.top]),
    [
      ["fib", "n", 5, 2, [["1", 3], ["2", 2]]],
      ["fib", "return", 4, 1, [["1", 4]]],
      ["gen", "k", 1, 1, [["3", 1]]],
    ],
    "the slice's own args (task, unfinished) are no values",
  );
  assert.equal(all[0]!.file, "/a/fib.py");
  assert.equal(all[0]!.line, 1);
  const second = tally.summaries(new Set([2]));
  assert.deepEqual(second.map((v) => [v.function, v.name, v.slices, v.top]), [
    ["fib", "n", 1, [["2", 1]]],
  ]);
});

Deno.test(`ValueTally counts ${DISTINCT_LIMIT} different values one by one, then only says there were more`, () => {
  const tally = new ValueTally();
  for (let i = 0; i < DISTINCT_LIMIT + 10; i++) tally.add(fib, 1, { n: String(i) });
  tally.add(fib, 1, { n: "0" });
  const [n] = tally.summaries();
  assert.equal(n!.slices, DISTINCT_LIMIT + 11);
  assert.equal(n!.distinct, DISTINCT_LIMIT);
  assert.equal(n!.more, true);
  assert.deepEqual(n!.top[0], ["0", 2], "a value seen before is still counted");
  assert.equal(n!.top.length, 5);
});

Deno.test("the summary's Values table, and none for C functions or a trace without values", () => {
  const sink = new SummarySink();
  sink.thread({ tid: 1, name: "MainThread", ident: 1, nativeId: 1 });
  const slice = (site: SliceSite, start: number, args: SliceArgs | undefined): Slice => ({
    tid: 1,
    start,
    duration: 1,
    site,
    flow: 0,
    flowIn: false,
    flowOut: false,
    args,
  });
  sink.slice(slice(fib, 0, { n: "'a very long string that the table cuts short'" }));
  sink.slice(slice(fib, 2, { n: "2" }));
  sink.slice(slice(len, 4, { n: "9" }));
  sink.slice(slice(fib, 6, undefined));
  const report = sink.report();
  assert.deepEqual(report.values.map((v) => [v.function, v.name, v.slices]), [["fib", "n", 2]]);
  const text = formatSummary(report, { tablesOnly: true });
  assert.match(text, /^Values by the slices that carried them \(all 1\):$/m);
  assert.match(text, /^ +2 +2 +fib +n +'a very long string that the ta… \(1\), 2 \(1\)$/m);

  const none = new SummarySink();
  none.slice(slice(fib, 0, undefined));
  const plain = none.report();
  assert.deepEqual(plain.values, []);
  assert.doesNotMatch(formatSummary(plain, { tablesOnly: true }), /^Values/m);
});
