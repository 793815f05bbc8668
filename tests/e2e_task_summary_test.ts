/**
 * End-to-end tests of the summary's task view (issue 14), on the oldest
 * and the newest Python present, with both collectors: the tasks of
 * tests/programs/tasks/tasks.py (named ones gathered, one created inside
 * another, one that raises, one cancelled, a TaskGroup's, a gather of
 * coroutines), as `--summary` prints them after the run, and as
 * `panopticon summary` reads them back from JSON, gzipped JSON and
 * protobuf. What each engine tells (docs/protocol.md, "asyncio tasks"):
 * on the monitoring engine how every task ended and who created it; with a
 * profile function no creation, and how a task ended only as far as the
 * collector can tell.
 */
import assert from "node:assert/strict";
import { collectorOptions, COLLECTORS, type TestCollector } from "./_collectors.ts";
import { oldestAndNewest, type TestPython } from "./_pythons.ts";
import { runPanopticon, tempDir } from "./_run.ts";
import type { SummaryReport, TaskSummary } from "../src/summary.ts";
import { summarizeTrace } from "../src/trace_reader.ts";

const TASKS = new URL("./programs/tasks/tasks.py", import.meta.url).pathname;

async function trace(
  python: TestPython,
  collector: TestCollector,
  output: string,
  options: string[] = [],
) {
  const outcome = await runPanopticon([
    "--python",
    python.path,
    ...collectorOptions(collector),
    "-o",
    output,
    ...options,
    TASKS,
  ]);
  assert.equal(outcome.code, 0, outcome.stderr);
  return outcome;
}

async function summaryOf(path: string): Promise<SummaryReport> {
  const result = await summarizeTrace((await Deno.open(path)).readable);
  assert.deepEqual(result.warnings, []);
  return result.report;
}

/** What a run gives of a task whatever its timing: all but the times. */
function row(task: TaskSummary): string {
  return [
    task.name,
    task.coroutine,
    task.steps,
    task.ended,
    task.createdBy ?? "-",
    task.createdAt ?? "-",
  ]
    .join(" ");
}

/**
 * The rows of the program's own tasks (not the loop's: their coroutines
 * are asyncio's), sorted; the gather's own tasks as `Task-N` (their
 * numbers differ: before 3.9 a named task takes a number too).
 */
function programRows(report: SummaryReport): string[] {
  return report.tasks
    .filter((task) => !task.coroutine.startsWith("asyncio."))
    .map((task) =>
      row(
        task.coroutine === "leaf" && /^Task-\d+$/.test(task.name)
          ? { ...task, name: "Task-N" }
          : task,
      )
    )
    .sort();
}

for (const python of oldestAndNewest()) {
  for (const collector of COLLECTORS) {
    const on = `on Python ${python.version} (${collector} collector)`;

    Deno.test(`summary shows the asyncio tasks ${on}`, async (t) => {
      const dir = await tempDir();
      try {
        const json = `${dir.path}/tasks.json`;
        const traced = await trace(python, collector, json, ["--summary"]);
        const report = await summaryOf(json);
        const minor = Number(python.version.split(".")[1]);
        const monitoring = report.run.engine === "monitoring";
        assert.equal(monitoring, minor >= 12, report.run.engine);

        await t.step("each task: its steps, how it ended, who created it", () => {
          // How it ended, as far as the engine and the collector tell.
          const ended = (how: string) =>
            monitoring
              ? how
              : collector === "native"
              ? (how === "result" ? how : "raised")
              : "ended";
          // Who created it: the creation is seen on the monitoring engine only.
          const by = (name: string, line: number) =>
            monitoring ? `${name} ${TASKS}:${line}` : "- -";
          const fromMain = by("main", 27);
          // Awaits in main that suspend it: the gather, the failing task, the
          // sleep, the cancelled task, the TaskGroup (3.11+), the gather of coroutines.
          const mainSteps = minor >= 11 ? 7 : 6;
          const expected = [
            `Task-1 main ${mainSteps} ${ended("result")} ${by("<module>", 1)}`,
            ...["leaf-0", "leaf-1", "leaf-2"].map((name) =>
              `${name} leaf 2 ${ended("result")} ${fromMain}`
            ),
            `parent parent 2 ${ended("result")} ${fromMain}`,
            `child leaf 2 ${ended("result")} ${by("parent", 12)}`,
            `fails fails 2 ${ended("exception")} ${fromMain}`,
            `sleeper forever 2 ${ended("cancelled")} ${fromMain}`,
            ...(minor >= 11 ? [`grouped leaf 2 ${ended("result")} ${fromMain}`] : []),
            // gather() of two coroutines makes two tasks of its own.
            `Task-N leaf 2 ${ended("result")} ${fromMain}`,
            `Task-N leaf 2 ${ended("result")} ${fromMain}`,
          ].sort();
          assert.deepEqual(programRows(report), expected);
          for (const task of report.tasks) {
            assert.ok(task.ranNs > 0 && task.ranNs <= task.lifetimeNs, row(task));
          }
          // The report's order: by the time they ran, the most first.
          const ran = report.tasks.map((task) => task.ranNs);
          assert.deepEqual(ran, [...ran].sort((a, b) => b - a));
        });

        await t.step(
          "--summary prints the table after the run, top 10, from the same figures",
          () => {
            const lines = traced.stderr.split("\n");
            const at = lines.findIndex((line) => line.startsWith("Tasks by time running ("));
            assert.ok(at > 0, traced.stderr);
            assert.equal(lines[at], `Tasks by time running (top 10 of ${report.tasks.length}):`);
            assert.match(
              lines[at + 1]!,
              /^ +ran +lifetime +waited +steps +ended +task +coroutine +created by$/,
            );
            const rows = lines.slice(at + 2, at + 12);
            const byName = new Map(report.tasks.map((task) => [task.name, task]));
            for (const line of rows) {
              const cells = line.trim().split(/ {2,}/);
              // ran, lifetime, waited, steps, ended, task, coroutine, created by
              const task = byName.get(cells[5]!);
              assert.ok(task !== undefined, line);
              assert.deepEqual([cells[3], cells[4], cells[6]], [
                String(task.steps),
                task.ended,
                task.coroutine,
              ]);
              assert.equal(
                cells[7],
                task.createdBy === undefined
                  ? "(not seen)"
                  : `${task.createdBy} (${task.createdAt!.replace(`${Deno.cwd()}/`, "")})`,
              );
            }
          },
        );

        await t.step("gzipped JSON, and the command's --json, the same tasks", async () => {
          const gzip = `${json}.gz`;
          await Deno.writeFile(
            gzip,
            (await Deno.open(json)).readable.pipeThrough(new CompressionStream("gzip")),
          );
          assert.deepEqual((await summaryOf(gzip)).tasks, report.tasks);
          const outcome = await runPanopticon(["summary", json, "--json"]);
          assert.equal(outcome.code, 0, outcome.stderr);
          assert.deepEqual(JSON.parse(outcome.stdout).tasks, report.tasks);
        });

        await t.step("protobuf, from a run of its own: the same tasks", async () => {
          const pftrace = `${dir.path}/tasks.pftrace`;
          await trace(python, collector, pftrace);
          const read = await summaryOf(pftrace);
          assert.deepEqual(programRows(read), programRows(report));
          assert.deepEqual(read.tasks.map(row).sort(), report.tasks.map(row).sort());
        });
      } finally {
        await dir.remove();
      }
    });
  }
}
