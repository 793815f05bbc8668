/** A trace sink that keeps what the frame-state machine gives it, for unit tests. */

import type { AsyncSlice, FlowArrow, Mark, Slice, TraceSink } from "../src/trace_model.ts";

/** The sink, and the slices (copied: the machine may reuse one), marks, async slices and arrows it got. */
export function keepingSink(): {
  sink: Required<TraceSink>;
  slices: Slice[];
  marks: Mark[];
  asyncSlices: AsyncSlice[];
  arrows: FlowArrow[];
} {
  const slices: Slice[] = [];
  const marks: Mark[] = [];
  const asyncSlices: AsyncSlice[] = [];
  const arrows: FlowArrow[] = [];
  const sink: Required<TraceSink> = {
    process() {},
    thread() {},
    slice: (slice) => void slices.push({ ...slice }),
    mark: (mark) => void marks.push(mark),
    asyncSlice: (slice) => void asyncSlices.push(slice),
    flowArrow: (arrow) => void arrows.push({ ...arrow }),
    finish() {},
  };
  return { sink, slices, marks, asyncSlices, arrows };
}
