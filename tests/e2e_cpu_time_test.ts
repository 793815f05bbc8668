/**
 * End-to-end tests of `--cpu-time` (issue 14): each slice's thread CPU time,
 * `tts` and `tdur` in JSON and `thread_ts`/`thread_dur` in Perfetto's trace
 * processor for protobuf, on the oldest and the newest Python present, with
 * both collectors.
 */
import assert from "node:assert/strict";
import { collectorOptions, COLLECTORS } from "./_collectors.ts";
import { oldestAndNewest } from "./_pythons.ts";
import { programStderr, runPanopticon, runPython, tempDir, traceProgram } from "./_run.ts";
import { slices, threadNames, type Trace, type TraceEvent } from "./_trace.ts";
import { ERROR_STATS, query, type Rows, viewerIgnored } from "./_viewer.ts";

const PROGRAM = new URL("./programs/runtime/cpu_time.py", import.meta.url).pathname;
const NO_VIEWER = viewerIgnored("e2e_cpu_time_test.ts");
/** The spinner's CPU time a step (the program's SPIN_S), in µs. */
const SPIN_US = 20_000;
/** The sleeper's wall time a step (SLEEP_S), in µs. */
const SLEEP_US = 30_000;
/** What the two clocks' resolutions and rounding to the ns may leave over, in µs. */
const TOLERANCE_US = 50;

type Timed = TraceEvent & { tts?: number; tdur?: number };

function onThread(trace: Trace, name: string, slice: string): Timed[] {
  const tid = [...threadNames(trace)].find(([, thread]) => thread === name)?.[0];
  assert(tid !== undefined, `no thread ${name}`);
  return slices(trace, slice).filter((event) => event.tid === tid) as Timed[];
}

for (const python of oldestAndNewest()) {
  for (const collector of COLLECTORS) {
    Deno.test(`--cpu-time, Python ${python.version} (${collector} collector)`, async (t) => {
      const plain = await runPython(python.path, [PROGRAM]);
      const { outcome, trace } = await traceProgram(
        python.path,
        [...collectorOptions(collector), "--cpu-time"],
        [PROGRAM],
      );
      assert.equal(outcome.stdout, plain.stdout, "stdout differs");
      assert.equal(programStderr(outcome.stderr), plain.stderr, "stderr differs");
      assert.equal(outcome.code, 0);

      await t.step("every Python and C slice has tts and tdur, tdur at most dur", () => {
        const all = slices(trace).filter((slice) =>
          ["function", "generator", "c_function"].includes(slice.cat ?? "")
        ) as Timed[];
        assert(all.length > 20, `${all.length} slices`);
        for (const slice of all) {
          assert(typeof slice.tts === "number" && typeof slice.tdur === "number", slice.name);
          assert(slice.tdur >= 0, `${slice.name}: tdur ${slice.tdur}`);
          assert(
            slice.tdur <= slice.dur! + TOLERANCE_US,
            `${slice.name}: tdur ${slice.tdur} > dur ${slice.dur}`,
          );
        }
      });

      await t.step("tts never goes back on a thread", () => {
        const byThread = new Map<number, Timed[]>();
        for (const slice of slices(trace) as Timed[]) {
          if (slice.tts === undefined) continue;
          const list = byThread.get(slice.tid) ?? [];
          list.push(slice);
          byThread.set(slice.tid, list);
        }
        for (const [tid, list] of byThread) {
          list.sort((a, b) => a.ts - b.ts);
          for (let i = 1; i < list.length; i++) {
            assert(
              list[i]!.tts! >= list[i - 1]!.tts!,
              `thread ${tid}: ${list[i]!.name} at ${list[i]!.ts} has tts ${list[i]!.tts} < ` +
                `${list[i - 1]!.tts}`,
            );
          }
        }
      });

      await t.step("the spinner's slices hold their CPU time, the sleeper's nearly none", () => {
        const spins = onThread(trace, "spinner", "spin_step");
        const sleeps = onThread(trace, "sleeper", "sleep_step");
        assert.equal(spins.length, 4);
        assert.equal(sleeps.length, 4);
        for (const spin of spins) {
          // 20 ms of its own CPU time, however long the wall clock took.
          assert(spin.tdur! >= SPIN_US * 0.95, `spin_step tdur ${spin.tdur}`);
          assert(spin.tdur! <= spin.dur! + TOLERANCE_US);
        }
        for (const sleep of sleeps) {
          assert(sleep.dur! >= SLEEP_US * 0.95, `sleep_step dur ${sleep.dur}`);
          assert(sleep.tdur! < sleep.dur! * 0.1, `sleep_step tdur ${sleep.tdur} of ${sleep.dur}`);
        }
      });

      await t.step("a generator's resumption slices have their own thread time", () => {
        const steps = onThread(trace, "MainThread", "spinning_numbers");
        // Three spinning steps, and the last resumption that ends it.
        assert.equal(steps.length, 4);
        for (const step of steps.slice(0, 3)) {
          assert(step.tdur! >= SPIN_US * 0.95, `spinning_numbers tdur ${step.tdur}`);
        }
        assert(steps[3]!.tdur! < SPIN_US / 2);
      });
    });

    Deno.test({
      name:
        `--cpu-time in a protobuf trace, in Perfetto's trace processor, Python ${python.version} ` +
        `(${collector} collector)`,
      ignore: NO_VIEWER,
      async fn() {
        const dir = await tempDir();
        try {
          const output = `${dir.path}/cpu.pftrace`;
          const outcome = await runPanopticon([
            "--python",
            python.path,
            ...collectorOptions(collector),
            "--cpu-time",
            "-o",
            output,
            PROGRAM,
          ]);
          assert.equal(outcome.code, 0, outcome.stderr);
          const loaded = await query(
            output,
            ERROR_STATS,
            `select s.name, s.dur, s.thread_ts, s.thread_dur from slice s
               where s.name in ('spin_step', 'sleep_step') order by s.ts`,
            // The trace processor leaves thread_dur NULL where it is 0 µs
            // (the field is whole µs): short slices, and calls that block.
            `select count(*) as n from slice
               where category in ('function', 'generator', 'c_function') and thread_ts is null`,
          );
          assert.ok(loaded.parsed, loaded.message);
          const [stats, rows, untimed] = loaded.results as Rows[];
          assert.deepEqual(stats, [], "0 error statistics");
          assert.deepEqual(untimed, [{ n: "0" }], "every Python and C slice has thread time");
          const spins = rows!.filter((row) => row.name === "spin_step");
          const sleeps = rows!.filter((row) => row.name === "sleep_step");
          assert.equal(spins.length, 4 + 3);
          assert.equal(sleeps.length, 4);
          // The trace processor's thread times are in ns, from whole µs.
          for (const row of spins) {
            assert(
              Number(row.thread_dur) >= SPIN_US * 950,
              `spin_step thread_dur ${row.thread_dur}`,
            );
            assert(Number(row.thread_dur) <= Number(row.dur) + 2000, JSON.stringify(row));
          }
          for (const row of sleeps) {
            const threadDur = row.thread_dur === "[NULL]" ? 0 : Number(row.thread_dur);
            assert(threadDur < Number(row.dur) * 0.1, JSON.stringify(row));
          }
        } finally {
          await dir.remove();
        }
      },
    });
  }
}
