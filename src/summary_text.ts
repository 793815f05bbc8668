/**
 * The summary as a person reads it in a terminal: the run's facts, then
 * tables of functions, generator-like frames, exceptions, asyncio tasks and
 * the values of calls.
 *
 * @module
 */

import {
  type FunctionSummary,
  isGeneratorLike,
  type RunFacts,
  sortFunctions,
  type SummaryReport,
  type SummarySortKey,
} from "./summary.ts";

/** Options of {@linkcode formatSummary}. */
export interface FormatSummaryOptions {
  /**
   * What the function table is sorted by, the most first.
   *
   * @default {"self"}
   */
  sort?: SummarySortKey;
  /**
   * The most rows of each table.
   *
   * @default {20}
   */
  top?: number;
  /**
   * What the trace is called in the first line (its file name).
   *
   * @default {undefined} (no title line)
   */
  title?: string;
  /**
   * Source paths under this directory are shown relative to it.
   *
   * @default {Deno.cwd()}
   */
  cwd?: string;
  /**
   * Warnings to show after the run's facts (the reader's).
   *
   * @default {[]}
   */
  warnings?: readonly string[];
  /**
   * Leave out the run's facts (for `--summary` after a run, whose own line
   * already said them).
   *
   * @default {false}
   */
  tablesOnly?: boolean;
}

const KINDS: Record<string, string> = {
  function: "py",
  generator: "gen",
  coroutine: "coro",
  async_generator: "agen",
  c_function: "C",
  mark: "span",
};

const SORT_TITLES: Record<SummarySortKey, string> = {
  calls: "calls",
  total: "total time",
  self: "self time",
  max: "longest call",
};

/**
 * The report as text: the run's facts, then the functions by `sort` and
 * the generator-like frames by the time they lived, then the exceptions by
 * how many were raised, then the asyncio tasks by the time they ran, then
 * the values `--args` and `--returns` recorded, `top` rows each.
 *
 * @example
 * ```ts
 * import { formatSummary, type SummaryReport } from "@panopticon/panopticon";
 * import assert from "node:assert/strict";
 *
 * const report: SummaryReport = {
 *   run: {
 *     program: "python a.py", pids: [7], python: "3.12.1", engine: "monitoring", collector: "native",
 *     durationNs: 2_500_000, events: 4, complete: true, dropped: 0, slices: 2, unfinished: 0,
 *     omittedSlices: 0, threads: [{ tid: 1, name: "MainThread", slices: 2 }], collectorNs: 0, flushes: 0,
 *   },
 *   functions: [
 *     { name: "main", kind: "function", file: "/src/a.py", line: 1, calls: 1, slices: 1, totalNs: 2_500_000, selfNs: 500_000, meanNs: 2_500_000, maxNs: 2_500_000, unfinished: 0 },
 *     { name: "time.sleep", kind: "c_function", calls: 1, slices: 1, totalNs: 2_000_000, selfNs: 2_000_000, meanNs: 2_000_000, maxNs: 2_000_000, unfinished: 0 },
 *   ],
 *   exceptions: [],
 *   tasks: [],
 *   values: [],
 * };
 * const text = formatSummary(report, { cwd: "/src" });
 * assert.match(text, /duration\s+2\.50 ms/);
 * assert.match(text, /^ +1 +2\.00 ms +2\.00 ms +2\.00 ms +2\.00 ms +C +time\.sleep$/m);
 * assert.match(text, /main +a\.py:1$/m);
 * ```
 */
export function formatSummary(report: SummaryReport, options: FormatSummaryOptions = {}): string {
  const sort = options.sort ?? "self";
  const top = options.top ?? 20;
  const cwd = options.cwd ?? Deno.cwd();
  const lines: string[] = [];
  if (!options.tablesOnly) {
    if (options.title !== undefined) lines.push(`Summary of ${options.title}`);
    lines.push(...facts(report.run));
    for (const warning of options.warnings ?? []) lines.push(`  warning   ${warning}`);
    lines.push("");
  }

  const on = report.thread === undefined ? "" : ` on thread "${report.thread}"`;
  const functions = [...report.functions];
  sortFunctions(functions, sort);
  const shown = functions.slice(0, top);
  lines.push(
    `Functions${on} by ${SORT_TITLES[sort]} (${shownOf(shown.length, functions.length)}):`,
  );
  lines.push(
    ...table(
      ["calls", "total", "self", "mean", "max", "kind", "function", "defined at"],
      "rrrrrlll",
      shown.map((f) => [
        count(f.calls),
        duration(f.totalNs),
        duration(f.selfNs),
        duration(f.meanNs),
        duration(f.maxNs),
        KINDS[f.kind] ?? f.kind,
        f.name + (f.unfinished > 0 ? ` (${count(f.unfinished)} unfinished)` : ""),
        where(f, cwd),
      ]),
    ),
  );

  const generators = report.functions.filter((f) => isGeneratorLike(f.kind));
  if (generators.length > 0) {
    // By the time an instance lived, the longest first: where awaits wait.
    generators.sort((a, b) =>
      (b.livedNs ?? 0) / b.calls - (a.livedNs ?? 0) / a.calls || b.calls - a.calls
    );
    const some = generators.slice(0, top);
    lines.push("");
    lines.push(
      `Generators, coroutines and async generators${on} by the time an instance lived ` +
        `(${shownOf(some.length, generators.length)}):`,
    );
    lines.push(
      ...table(
        [
          "instances",
          "slices",
          "per instance",
          "ran",
          "lived",
          "longest",
          "suspended",
          "kind",
          "function",
          "defined at",
        ],
        "rrrrrrrlll",
        some.map((f) => {
          const lived = f.livedNs ?? 0;
          const ran = f.ranNs ?? 0;
          const perInstance = (f.slices / Math.max(1, f.calls)).toLocaleString("en-US", {
            maximumFractionDigits: 1,
          });
          return [
            count(f.calls),
            count(f.slices),
            f.calls === 1 ? perInstance : `${perInstance} (max ${count(f.maxSlices ?? 0)})`,
            duration(ran / f.calls),
            duration(lived / f.calls),
            duration(f.maxLivedNs ?? 0),
            lived > 0 ? `${Math.round(((lived - ran) / lived) * 100)}%` : "-",
            KINDS[f.kind] ?? f.kind,
            f.name,
            where(f, cwd),
          ];
        }),
      ),
    );
    lines.push(
      "  (an instance runs in slices, one per resumption; ran and lived are its means, lived " +
        "from the first\n  start to the final return, suspended the share of that it waited)",
    );
  }

  const exceptions = report.exceptions;
  if (exceptions.length > 0) {
    const some = exceptions.slice(0, top);
    lines.push("");
    lines.push(
      `Exceptions${on} by how many were raised (${shownOf(some.length, exceptions.length)}):`,
    );
    lines.push(
      ...table(
        ["raised", "caught", "swallowed", "exception", "raised at", "swallowed at"],
        "rrrlll",
        some.map((e) => [
          count(e.raised),
          count(e.caught),
          count(e.swallowed),
          e.type,
          placeOf(e.raisedAt, cwd),
          e.swallowedAt.slice(0, 2).map((at) => placeOf(at, cwd)).join(", ") +
          (e.swallowedAt.length > 2 ? ", …" : ""),
        ]),
      ),
    );
    lines.push(
      "  (caught: a handler dealt with it, re-raising another; swallowed: the handler let it go " +
        "and the\n  program went on; the rest went on to a handler not recorded, or to the top)",
    );
  }
  lines.push(...tasksTable(report, top, on, cwd));
  lines.push(...valuesTable(report, top, on));
  return lines.join("\n") + "\n";
}

/** The longest a value is shown in the values table; the trace has it whole. */
const VALUE_WIDTH = 32;

/**
 * The values `--args` and `--returns` recorded, as the report orders them
 * (the functions whose values the most slices carried first), `top` rows;
 * nothing when the trace has none.
 */
function valuesTable(report: SummaryReport, top: number, on: string): string[] {
  const values = report.values;
  if (values.length === 0) return [];
  const some = values.slice(0, top);
  const shortened = (value: string) =>
    value.length <= VALUE_WIDTH ? value : `${value.slice(0, VALUE_WIDTH - 1)}…`;
  return [
    "",
    `Values${on} by the slices that carried them (${shownOf(some.length, values.length)}):`,
    ...table(
      ["slices", "distinct", "function", "value", "most frequent (slices)"],
      "rrlll",
      some.map((v) => [
        count(v.slices),
        v.more ? `> ${count(v.distinct)}` : count(v.distinct),
        v.function,
        v.name,
        v.top.map(([value, n]) => `${shortened(value)} (${count(n)})`).join(", ") +
        (v.distinct > v.top.length || v.more ? ", …" : ""),
      ]),
    ),
    "  (a parameter's values, as --args shows them, and what the function returned or yielded, as",
    "  --returns does; distinct counts the different ones, up to 1,000 of each)",
  ];
}

/**
 * The asyncio tasks, as the report orders them (by the time they ran, the
 * most first: the tasks that held the loop), `top` rows; nothing when the
 * trace has none.
 */
function tasksTable(report: SummaryReport, top: number, on: string, cwd: string): string[] {
  const tasks = report.tasks;
  if (tasks.length === 0) return [];
  const some = tasks.slice(0, top);
  return [
    "",
    `Tasks${on} by time running (${shownOf(some.length, tasks.length)}):`,
    ...table(
      ["ran", "lifetime", "waited", "steps", "ended", "task", "coroutine", "created by"],
      "rrrrllll",
      some.map((task) => [
        duration(task.ranNs),
        duration(task.lifetimeNs),
        task.lifetimeNs > 0
          ? `${Math.round(((task.lifetimeNs - task.ranNs) / task.lifetimeNs) * 100)}%`
          : "-",
        count(task.steps),
        task.ended,
        task.name,
        task.coroutine,
        task.createdBy === undefined
          ? "(not seen)"
          : task.createdAt === undefined
          ? task.createdBy
          : `${task.createdBy} (${placeOf(task.createdAt, cwd)})`,
      ]),
    ),
    "  (lifetime from its creation, or its first step when that was not seen, to its end; ran its",
    "  steps together, one a resumption; waited the share of its lifetime it did not run)",
  ];
}

/** A `file:line` place, shortened as {@linkcode where} does. */
function placeOf(at: string, cwd: string): string {
  const colon = at.lastIndexOf(":");
  if (at === "" || colon < 0) return at;
  const line = Number(at.slice(colon + 1));
  return where({ file: at.slice(0, colon), line: Number.isInteger(line) ? line : undefined }, cwd);
}

/** The run's facts, a line each. */
function facts(run: RunFacts): string[] {
  const lines: string[] = [];
  const row = (label: string, text: string) => lines.push(`  ${label.padEnd(9)} ${text}`);
  if (run.program !== "") row("program", run.program);
  const by = [
    run.collector === undefined ? undefined : `${run.collector} collector`,
    run.engine === "" ? undefined : `${run.engine} engine`,
  ].filter((part) => part !== undefined);
  row("python", `${run.python || "unknown"}${by.length > 0 ? ` (${by.join(", ")})` : ""}`);
  const threads = run.threads.map((thread) => thread.name);
  row(
    "duration",
    `${duration(run.durationNs)}: ${plural(run.events, "event")}, ${plural(run.slices, "slice")}, ${
      plural(run.threads.length, "thread")
    }${threads.length > 0 && threads.length <= 6 ? ` (${threads.join(", ")})` : ""}, ${
      plural(run.pids.length, "process", "processes")
    }${run.pids.length > 0 ? ` (pid ${run.pids.join(", ")})` : ""}`,
  );
  const state: string[] = [];
  if (!run.complete) state.push("cut short: the stream ended without its end record");
  state.push(run.dropped > 0 ? `${plural(run.dropped, "event")} dropped` : "nothing dropped");
  state.push(
    run.unfinished > 0
      ? `${plural(run.unfinished, "slice")} unfinished (still open at the end)`
      : "no slice unfinished",
  );
  if (run.omittedSlices > 0) {
    state.push(`${plural(run.omittedSlices, "slice")} left out by --max-depth`);
  }
  if (run.limited !== undefined) {
    state.push(
      `recording stopped at ${duration(run.limited.ts * 1000)} after ${
        plural(run.limited.events, "event")
      } (--max-events)`,
    );
  }
  row(run.complete ? "complete" : "incomplete", state.join("; "));
  if (run.flushes > 0) {
    row(
      "collector",
      `${duration(run.collectorNs)} sending events (${plural(run.flushes, "flush", "flushes")}), ` +
        "not counted in any function",
    );
  }
  return lines;
}

function shownOf(shown: number, all: number): string {
  return shown === all ? `all ${count(all)}` : `top ${count(shown)} of ${count(all)}`;
}

/**
 * Where a function is defined: relative to `cwd` when it is inside it, and
 * from the interpreter's library down for the standard library and
 * site-packages (`…/python3.12/asyncio/tasks.py`).
 */
function where(f: Pick<FunctionSummary, "file" | "line">, cwd: string): string {
  if (f.file === undefined) return "";
  const base = cwd.endsWith("/") ? cwd : `${cwd}/`;
  let file = f.file;
  const library = /\/lib\/(python\d+\.\d+t?)\/(site-packages\/|dist-packages\/)?/.exec(file);
  if (file.startsWith(base)) file = file.slice(base.length);
  else if (library !== null) {
    file = `…/${library[2] ?? `${library[1]}/`}${file.slice(library.index + library[0].length)}`;
  }
  return f.line === undefined ? file : `${file}:${f.line}`;
}

/** Columns padded to their widest cell; `align` has an `l` or `r` per column. */
function table(head: string[], align: string, rows: string[][]): string[] {
  const widths = head.map((cell, i) => Math.max(cell.length, ...rows.map((row) => row[i]!.length)));
  const render = (cells: string[]) =>
    "  " + cells.map((cell, i) => {
      if (i === cells.length - 1) return cell;
      return align[i] === "r" ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!);
    }).join("  ").trimEnd();
  return [render(head), ...rows.map(render)];
}

/** A count with thousands separators. */
export function count(n: number): string {
  return n.toLocaleString("en-US");
}

function plural(n: number, one: string, many = `${one}s`): string {
  return `${count(n)} ${n === 1 ? one : many}`;
}

/**
 * A duration in nanoseconds for people, three significant digits:
 * `812 ns`, `1.23 µs`, `45.6 ms`, `2.30 s`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { duration } from "./summary_text.ts";
 *
 * assert.deepEqual([duration(0), duration(812), duration(1234), duration(45_600_000), duration(2.3e9)], [
 *   "0 ns", "812 ns", "1.23 µs", "45.6 ms", "2.30 s",
 * ]);
 * ```
 */
export function duration(ns: number): string {
  if (ns < 1000) return `${Math.round(ns)} ns`;
  const units: [number, string][] = [[1e3, "µs"], [1e6, "ms"], [1e9, "s"]];
  for (let i = 0; i < units.length; i++) {
    const [scale, unit] = units[i]!;
    const value = ns / scale;
    // Past 999.5 the next unit reads better, but for seconds.
    if (value >= 999.5 && i < units.length - 1) continue;
    if (value >= 1000) return `${count(Math.round(value))} ${unit}`;
    const digits = value >= 99.95 ? 0 : value >= 9.995 ? 1 : 2;
    return `${value.toFixed(digits)} ${unit}`;
  }
  return `${ns} ns`;
}
