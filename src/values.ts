/**
 * The values `--args` and `--returns` record (issue 13), as a slice's args
 * carry them: by parameter name, `return` and `yield`. Here: the names a
 * value must not take, and the summary's tally of the values each function
 * was called with and gave back.
 *
 * @module
 */

import type { SliceArgs, SliceSite } from "./trace_model.ts";

/**
 * The args a Python function's slice has of its own: its place (`file` and
 * `line`, as the JSON trace writes them beside the values), its asyncio
 * task's name, and whether it was left open. A parameter of one of these
 * names (`def show(file, line)`) would have been a second `file` key in the
 * JSON object, and a viewer keeps one of the two: its value is
 * {@linkcode valueName}d instead.
 */
export const OWN_ARGS: ReadonlySet<string> = new Set(["file", "line", "task", "unfinished"]);

/**
 * The name a value is shown by: the parameter's own, or `NAME (argument)`
 * for one of {@linkcode OWN_ARGS}.
 *
 * @example
 * ```ts
 * import { valueName } from "@panopticon/panopticon";
 * import assert from "node:assert/strict";
 *
 * assert.equal(valueName("n"), "n");
 * assert.equal(valueName("file"), "file (argument)");
 * ```
 */
export function valueName(name: string): string {
  return OWN_ARGS.has(name) ? `${name} (argument)` : name;
}

/** A `values` record's values, with the names {@linkcode valueName} gives (the same object when none changes). */
export function namedValues(values: { [name: string]: string }): SliceArgs {
  let renamed: Record<string, string> | undefined;
  for (const name in values) {
    if (OWN_ARGS.has(name)) {
      renamed = {};
      break;
    }
  }
  if (renamed === undefined) return values;
  for (const [name, value] of Object.entries(values)) renamed[valueName(name)] = value;
  return renamed;
}

/** The values of one name (a parameter, `return`, `yield`) of one function, in the summary. */
export interface ValueSummary {
  /** The function's name, as its slices are named. */
  function: string;
  /** Where the function is defined. */
  file?: string;
  /** Its first line. */
  line?: number;
  /** The parameter's name, or `return`, or `yield`. */
  name: string;
  /** How many slices carried it. */
  slices: number;
  /** How many different values (as rendered) it had, of those counted. */
  distinct: number;
  /**
   * Whether there were more than {@linkcode DISTINCT_LIMIT}: past it, a value
   * not seen before is not counted one by one (`distinct` stops there).
   */
  more: boolean;
  /** The most frequent values, with how many slices had each, the most first. */
  top: [value: string, slices: number][];
}

/** The different values of one name counted one by one; past it, only their number. */
export const DISTINCT_LIMIT = 1000;
/** How many of the most frequent values a {@linkcode ValueSummary} keeps. */
const TOP_VALUES = 5;

/** The values of one name of one function on one thread. */
interface Tally {
  /** The order the names were first seen in (a function's parameters, then what it returns). */
  order: number;
  slices: number;
  counts: Map<string, number>;
  more: boolean;
}

/** The values of one name of one function, the threads wanted merged. */
interface Merged {
  summary: ValueSummary;
  order: number;
  counts: Map<string, number>;
}

/**
 * Counts the values on the slices of Python functions, by function, name
 * and thread; {@linkcode ValueTally.summaries} merges the threads wanted.
 */
export class ValueTally {
  /** By site, by thread id, by name. */
  readonly #tallies = new Map<SliceSite, Map<string, Tally>[]>();
  #order = 0;

  /** Counts the values among `args`, the args of a slice of `site` on thread `tid`. */
  add(site: SliceSite, tid: number, args: SliceArgs): void {
    let byThread: Map<string, Tally>[] | undefined;
    for (const name in args) {
      if (OWN_ARGS.has(name)) continue;
      byThread ??= this.#tallies.get(site);
      if (byThread === undefined) this.#tallies.set(site, byThread = []);
      const names = byThread[tid] ??= new Map();
      let tally = names.get(name);
      if (tally === undefined) {
        tally = { order: this.#order++, slices: 0, counts: new Map(), more: false };
        names.set(name, tally);
      }
      tally.slices++;
      const raw = args[name];
      const value = typeof raw === "string" ? raw : JSON.stringify(raw);
      const seen = tally.counts.get(value);
      if (seen !== undefined) tally.counts.set(value, seen + 1);
      else if (tally.counts.size < DISTINCT_LIMIT) tally.counts.set(value, 1);
      else tally.more = true;
    }
  }

  /**
   * The values of the threads in `only` (every thread without it), merged:
   * the functions by how many slices carried values, the most first, each
   * function's names in the order they came.
   */
  summaries(only?: ReadonlySet<number>): ValueSummary[] {
    // By function, its name and place: a function has a site in each process.
    const functions = new Map<string, { key: string; weight: number; names: Merged[] }>();
    for (const [site, byThread] of this.#tallies) {
      const key = `${site.name}\0${site.file ?? ""}\0${site.line ?? 0}`;
      let group = functions.get(key);
      if (group === undefined) functions.set(key, group = { key, weight: 0, names: [] });
      const names = new Map<string, Merged>();
      byThread.forEach((tallies, tid) => {
        if (only !== undefined && !only.has(tid)) return;
        for (const [name, tally] of tallies) {
          let entry = names.get(name);
          if (entry === undefined) {
            const summary: ValueSummary = {
              function: site.name,
              name,
              slices: 0,
              distinct: 0,
              more: false,
              top: [],
            };
            if (site.file !== undefined) summary.file = site.file;
            if (site.line !== undefined) summary.line = site.line;
            entry = { summary, order: tally.order, counts: new Map() };
            names.set(name, entry);
            group!.names.push(entry);
          }
          entry.summary.slices += tally.slices;
          entry.summary.more ||= tally.more;
          if (tally.order < entry.order) entry.order = tally.order;
          for (const [value, n] of tally.counts) {
            entry.counts.set(value, (entry.counts.get(value) ?? 0) + n);
          }
        }
      });
    }
    const groups = [...functions.values()];
    for (const group of groups) {
      for (const { summary, counts } of group.names) {
        summary.distinct = counts.size;
        summary.top = [...counts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
          .slice(0, TOP_VALUES);
        // A function's weight: its most carried name's slices (its calls, for an argument).
        group.weight = Math.max(group.weight, summary.slices);
      }
    }
    groups.sort((a, b) => b.weight - a.weight || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    return groups.flatMap((group) =>
      group.names.sort((a, b) => a.order - b.order).map(({ summary }) => summary)
    );
  }
}
