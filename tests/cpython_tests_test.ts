/**
 * CPython's own regression tests as the peer suite (DESIGN.md, "The program
 * is unchanged"): a few fast modules of the list in tests/_cpython_tests.ts,
 * each run under plain `python` and under Panopticon with both collectors,
 * on the oldest and the newest Python present. The same tests must run with
 * the same outcomes, except the differences docs/reliability.md explains
 * (KNOWN_DIFFERENCES), which must show exactly; and each trace must load
 * (one JSON document, complete, nothing dropped, no collector frame).
 *
 * The modules: frames and their locals (test_frame), objects let go of
 * (test_contextlib's test_nokeepref, test_coroutines' "never awaited"
 * warnings), a signal that must come out where Python raises it
 * (test_generators), at-exit functions cleared by the program
 * (test_atexit), the recursion limit (test_sys), and an exception that
 * ends a thread, reported as _thread reports it (test_thread), and a code
 * extra index the program requests after ours (test_code). The whole list, on
 * every Python: `deno task cpython-tests`.
 */
import assert from "node:assert/strict";
import { COLLECTORS } from "./_collectors.ts";
import { oldestAndNewest } from "./_pythons.ts";
import {
  classify,
  compareRuns,
  type Difference,
  moduleExists,
  runModule,
  stdlibOf,
  tally,
} from "./_cpython_tests.ts";

const MODULES = [
  "test_frame",
  "test_contextlib",
  "test_coroutines",
  "test_generators",
  "test_atexit",
  "test_sys",
  "test_thread",
  "test_code",
];

function show(differences: Difference[]): string {
  return differences.map((d) => `${d.id}: ${d.plain} → ${d.traced} (${d.detail ?? ""})`)
    .join("\n");
}

for (const python of oldestAndNewest()) {
  const lib = stdlibOf(python.path);
  for (const module of MODULES.filter((name) => moduleExists(lib, name))) {
    Deno.test(`CPython's test.${module} gives python's results under Panopticon on Python ${python.version}`, async (t) => {
      const plain = await runModule(python, module, "plain", { timeoutMs: 120_000 });
      assert(plain.done && plain.tests.size > 0, `the plain run: ${plain.stderrTail}`);
      for (const collector of COLLECTORS) {
        await t.step(`${collector} collector`, async () => {
          // Signal tests depend on timing: a second attempt before failing.
          let differences: Difference[] = [];
          for (let attempt = 0; attempt < 2; attempt++) {
            const traced = await runModule(python, module, collector, { timeoutMs: 300_000 });
            differences = compareRuns(plain, traced);
            const { unexpected, missing } = classify(python, collector, module, differences);
            if (unexpected.length === 0 && missing.length === 0) return;
            if (attempt === 1) {
              assert.deepEqual(
                missing,
                [],
                "known differences that did not show (docs/reliability.md)",
              );
              assert.fail(
                `${tally(traced)} against ${tally(plain)}; differences docs/reliability.md ` +
                  `does not explain:\n${show(unexpected)}`,
              );
            }
          }
        });
      }
    });
  }
}
