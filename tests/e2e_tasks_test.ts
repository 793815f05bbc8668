/**
 * End-to-end tests of asyncio tasks on the timeline (issue 14), on the
 * oldest and the newest Python present, with both collectors: each task's
 * name on its coroutine's slices, its track (life and steps) with how it
 * ended, and the arrow from where it was created (monitoring engine).
 */
import assert from "node:assert/strict";
import { collectorOptions, COLLECTORS } from "./_collectors.ts";
import { oldestAndNewest } from "./_pythons.ts";
import { runPanopticon, tempDir, traceUnchanged } from "./_run.ts";
import { readPerfetto } from "../mod.ts";
import { ERROR_STATS, query, type Rows, viewerIgnored } from "./_viewer.ts";
import { encloses, slices, type Trace, type TraceEvent } from "./_trace.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const ASYNC_HELLO = `${ROOT}examples/async_hello.py`;
const TASKS = `${ROOT}tests/programs/tasks/tasks.py`;

/** A task's track: its life and its steps, from the trace's async events. */
interface Track {
  life: { name: string; start: number; end: number; args: Record<string, unknown> };
  steps: { start: number; end: number }[];
}

function tracks(trace: Trace): Map<string, Track> {
  const byId = new Map<string, TraceEvent[]>();
  for (const event of trace.traceEvents) {
    if ((event.ph !== "b" && event.ph !== "e") || event.cat !== "asyncio") continue;
    const id = String((event as unknown as { id: string }).id);
    byId.set(id, [...(byId.get(id) ?? []), event]);
  }
  const result = new Map<string, Track>();
  for (const events of byId.values()) {
    // Each slice is written as its "b", then its "e".
    const pairs: [TraceEvent, TraceEvent][] = [];
    for (let i = 0; i + 1 < events.length; i += 2) {
      assert.equal(events[i]!.ph, "b");
      assert.equal(events[i + 1]!.ph, "e");
      assert.equal(events[i]!.name, events[i + 1]!.name);
      pairs.push([events[i]!, events[i + 1]!]);
    }
    const life = pairs.find(([begin]) => begin.name !== "running");
    assert(life !== undefined, "a track without its life");
    const steps = pairs.filter(([begin]) => begin.name === "running")
      .map(([begin, end]) => ({ start: begin.ts, end: end.ts }));
    const name = life[0].name;
    result.set(name, {
      life: { name, start: life[0].ts, end: life[1].ts, args: life[0].args ?? {} },
      steps,
    });
  }
  return result;
}

function trackOf(all: Map<string, Track>, task: string, coroutine: string): Track {
  const track = all.get(`${task} ${coroutine}`);
  assert(track !== undefined, `no track for ${task} (${coroutine}): ${[...all.keys()]}`);
  // Its steps lie within its life.
  for (const step of track.steps) {
    assert(step.start >= track.life.start - 1e-3 && step.end <= track.life.end + 1e-3);
  }
  return track;
}

/**
 * The creation arrows: [start, finish] pairs, each end a slice of no length
 * (category `asyncio`, `create_task`) joined by a flow.
 */
function arrows(trace: Trace): [TraceEvent, TraceEvent][] {
  const starts = new Map<string, TraceEvent>();
  const pairs: [TraceEvent, TraceEvent][] = [];
  for (const event of trace.traceEvents) {
    if (event.ph !== "X" || event.cat !== "asyncio" || event.name !== "create_task") continue;
    assert.equal(event.dur, 0);
    const id = String(event.bind_id);
    if (event.flow_out) starts.set(id, event);
    if (event.flow_in) {
      const start = starts.get(id);
      assert(start !== undefined, `an arrow that arrives without leaving (${id})`);
      pairs.push([start, event]);
    }
  }
  return pairs;
}

/** The innermost slice on `tid` whose time holds `ts`, but for the arrows' own ends. */
function sliceAt(trace: Trace, tid: number, ts: number): TraceEvent | undefined {
  let best: TraceEvent | undefined;
  for (const slice of slices(trace)) {
    if (slice.cat === "asyncio") continue;
    if (slice.tid !== tid || slice.ts > ts || slice.ts + (slice.dur ?? 0) < ts) continue;
    if (best === undefined || (slice.dur ?? 0) <= (best.dur ?? 0)) best = slice;
  }
  return best;
}

for (const python of oldestAndNewest()) {
  for (const collector of COLLECTORS) {
    Deno.test(`asyncio tasks on Python ${python.version} (${collector} collector)`, async (t) => {
      await t.step(
        "async_hello.py: the task is named on its 14 slices, and has a track",
        async () => {
          const trace = await traceUnchanged(python.path, collectorOptions(collector), [
            ASYNC_HELLO,
          ]);
          const own = slices(trace, "print_slowly");
          assert.equal(own.length, 14);
          for (const slice of own) assert.equal(slice.args?.task, "Task-1");
          // The generator it drives runs in the task too.
          for (const slice of slices(trace, "gen_text")) assert.equal(slice.args?.task, "Task-1");
          const track = trackOf(tracks(trace), "Task-1", "print_slowly");
          assert.equal(track.steps.length, 14, "a step for each slice");
          const monitoring = trace.otherData?.engine === "monitoring";
          assert.equal(
            track.life.args.ended,
            collector === "python" && !monitoring ? "ended" : "result",
          );
          const created = arrows(trace);
          if (monitoring) {
            // asyncio.run's task: created in the loop's create_task, arriving
            // at its first slice (the loop's own tasks at shutdown have theirs).
            const mine = created.filter(([, to]) => sliceAt(trace, to.tid, to.ts) === own[0]);
            assert.equal(mine.length, 1);
            const [from, to] = mine[0]!;
            assert.equal(
              sliceAt(trace, from.tid, from.ts)?.name,
              "asyncio.base_events.BaseEventLoop.create_task",
            );
            assert(from.ts <= to.ts);
            assert.equal(track.life.start, from.ts, "the track starts at the creation");
          } else {
            // The profile function sees no call of a type: the creation is not seen.
            assert.deepEqual(created, []);
            assert.equal(track.life.args.created, "unseen");
            assert(Math.abs(track.life.start - own[0]!.ts) < 0.002);
          }
        },
      );

      await t.step("tasks named, nested, failing, cancelled, grouped and gathered", async () => {
        const trace = await traceUnchanged(python.path, collectorOptions(collector), [TASKS]);
        const all = tracks(trace);
        const monitoring = trace.otherData?.engine === "monitoring";
        const ended = (how: string) =>
          monitoring ? how : collector === "native" ? (how === "result" ? how : "raised") : "ended";
        for (const name of ["leaf-0", "leaf-1", "leaf-2", "child"]) {
          assert.equal(trackOf(all, name, "leaf").life.args.ended, ended("result"));
        }
        assert.equal(trackOf(all, "parent", "parent").life.args.ended, ended("result"));
        assert.equal(trackOf(all, "fails", "fails").life.args.ended, ended("exception"));
        assert.equal(trackOf(all, "sleeper", "forever").life.args.ended, ended("cancelled"));
        if (Number(python.version.split(".")[1]) >= 11) {
          assert.equal(trackOf(all, "grouped", "leaf").life.args.ended, ended("result"));
        }
        // gather() of two coroutines makes two tasks of its own.
        const gathered = [...all.values()].filter((track) =>
          track.life.args.coroutine === "leaf" && /^Task-\d+ leaf$/.test(track.life.name)
        );
        assert.equal(gathered.length, 2);
        // Every slice of a task's coroutine carries its name.
        for (const slice of slices(trace, "leaf")) {
          assert.match(String(slice.args?.task), /^(leaf-\d|child|grouped|Task-\d+)$/);
        }
        for (const slice of slices(trace, "forever")) assert.equal(slice.args?.task, "sleeper");
        if (monitoring) {
          // One arrow a task, from its creation to its first slice; the
          // child's leaves the parent task's own slice.
          assert.equal(arrows(trace).length, all.size);
          const child = arrows(trace).find(([, to]) =>
            sliceAt(trace, to.tid, to.ts)?.args?.task === "child"
          );
          assert(child !== undefined, "no arrow to the child task");
          const parent = slices(trace, "parent").find((slice) =>
            encloses(slice, sliceAt(trace, child[0].tid, child[0].ts)!) ||
            slice === sliceAt(trace, child[0].tid, child[0].ts)
          );
          assert(parent !== undefined, "the child's arrow does not leave the parent task");
          assert.equal(parent.args?.task, "parent");
        } else {
          assert.deepEqual(arrows(trace), []);
        }
      });

      await t.step(
        "async_hello.py in a Perfetto trace: the task's track, steps and arrow",
        async () => {
          const dir = await tempDir();
          try {
            const output = `${dir.path}/t.pftrace`;
            const outcome = await runPanopticon([
              "--python",
              python.path,
              ...collectorOptions(collector),
              "-o",
              output,
              ASYNC_HELLO,
            ]);
            assert.equal(outcome.code, 0, outcome.stderr);
            const trace = await readPerfetto(await Deno.readFile(output), { strict: true });
            const track = [...trace.tracks.values()].find((t) => t.name === "Task-1 print_slowly");
            assert(track !== undefined, "no track for the task");
            const own = trace.slices.filter((slice) => slice.track === track.uuid);
            const life = own.filter((slice) => slice.name === "Task-1 print_slowly");
            assert.equal(life.length, 1);
            assert.equal(life[0]!.depth, 0);
            const steps = own.filter((slice) => slice.name === "running");
            assert.equal(steps.length, 14);
            for (const step of steps) assert.equal(step.parent, life[0]!.id);
            const coroutine = trace.slices.filter((slice) => slice.name === "print_slowly");
            assert.equal(coroutine.length, 14);
            for (const slice of coroutine) assert.equal(slice.args.task, "Task-1");
            const monitoring = Number(python.version.split(".")[1]) >= 12;
            const arrival = trace.flows.find((flow) =>
              trace.slices[flow.to]?.name === "create_task" &&
              trace.slices[trace.slices[flow.to]!.parent!]?.name === "print_slowly"
            );
            assert.equal(arrival !== undefined, monitoring, "the creation arrow");
            // The CPU counter is a counter track too.
            assert([...trace.counters.keys()].some((name) => name === "CPU 1: MainThread %"));
          } finally {
            await dir.remove();
          }
        },
      );

      await t.step("--no-tasks leaves the tasks out", async () => {
        const trace = await traceUnchanged(python.path, [
          ...collectorOptions(collector),
          "--no-tasks",
        ], [
          ASYNC_HELLO,
        ]);
        assert.equal(tracks(trace).size, 0);
        assert.deepEqual(arrows(trace), []);
        for (const slice of slices(trace, "print_slowly")) {
          assert.equal(slice.args?.task, undefined);
        }
        assert.equal(slices(trace, "print_slowly").length, 14);
      });
    });
  }
}

const NO_VIEWER = viewerIgnored("tests/e2e_tasks_test.ts");
const NEWEST = oldestAndNewest().at(-1);

for (const format of ["trace.json", "trace.pftrace"]) {
  Deno.test({
    name: `tasks.py's ${format} loads into Perfetto's trace processor: tracks, steps, arrows`,
    ignore: NO_VIEWER || NEWEST === undefined,
    async fn() {
      const dir = await tempDir();
      try {
        const output = `${dir.path}/${format}`;
        const outcome = await runPanopticon(["--python", NEWEST!.path, "-o", output, TASKS]);
        assert.equal(outcome.code, 0, outcome.stderr);
        const loaded = await query(
          output,
          ERROR_STATS,
          `select t.name as name, count(*) as n from slice s join track t on s.track_id = t.id
             where s.name = 'running' group by t.name order by t.name`,
          `select count(*) as n from flow f join slice so on so.id = f.slice_out
             join slice si on si.id = f.slice_in where so.name = 'create_task'
             and si.name = 'create_task'`,
          "select count(distinct t.id) as n from slice s join track t on s.track_id = t.id where s.category = 'asyncio' and s.name not in ('create_task', 'await')",
        );
        assert.ok(loaded.parsed, loaded.message);
        const [stats, steps, flows, tracks] = loaded.results as Rows[];
        assert.deepEqual(stats, [], "0 error statistics");
        const byTask = new Map(steps!.map((row) => [row.name, Number(row.n)]));
        for (const name of ["leaf-0 leaf", "child leaf", "fails fails", "sleeper forever"]) {
          assert.equal(byTask.get(name), 2, `${name}: two steps`);
        }
        const monitoring = Number(NEWEST!.version.split(".")[1]) >= 12;
        // One arrow a task: the 13 tasks of 3.11+ (12 before).
        if (monitoring) assert.equal(Number(flows![0]!.n), Number(tracks![0]!.n));
      } finally {
        await dir.remove();
      }
    },
  });
}
