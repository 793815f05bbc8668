import assert from "node:assert/strict";
import { ERROR_STATS, query, viewerIgnored } from "./_viewer.ts";
import {
  type ConversionSummary,
  convertProcesses,
  type ConvertProcessesOptions,
  type ProcessStreams,
  readPerfetto,
} from "../mod.ts";

const encoder = new TextEncoder();

/** A hello of protocol 4 for `pid`, with `extra` fields. */
function hello(pid: number, t0: number, extra: Record<string, unknown> = {}): string {
  return JSON.stringify({
    kind: "hello",
    protocol: 4,
    pid,
    python: "3.13.0",
    engine: "monitoring",
    collector: "native",
    thread_ids: "serial",
    t0,
    main_thread: 1,
    argv: [`/home/user/p${pid}.py`],
    ...extra,
  });
}

const DEFINITIONS = [
  '{"kind":"code","id":1,"module":"__main__","qualname":"main","file":"p.py","line":1,"type":"function"}',
  '{"kind":"code","id":2,"module":"__main__","qualname":"work","file":"p.py","line":5,"type":"function"}',
  '{"kind":"cfunc","id":1,"name":"posix.fork"}',
];

function end(ts: number, events: number, reason = "exit"): string {
  return JSON.stringify({ kind: "end", ts, events, dropped: 0, reason });
}

function events(...list: number[][]): string {
  return JSON.stringify({ kind: "events", events: list });
}

/** A parent that calls main, forks (spawn `token`) inside posix.fork, and returns. */
function parentLines(pid: number, t0: number, tokens = [1], extra = {}): string[] {
  const list: number[][] = [[0, 1, t0 + 1000, 0, 1]];
  let ts = t0 + 2000;
  for (const token of tokens) {
    list.push([5, 1, ts, 0, 1], [14, 1, ts + 500, 0, token], [6, 1, ts + 1000, 0, 0]);
    ts += 2000;
  }
  list.push([2, 1, ts, 0, 0]);
  return [hello(pid, t0, extra), ...DEFINITIONS, events(...list), end(ts + 100, list.length)];
}

/** A child that runs `work` from `start` to `stop`. */
function childLines(
  pid: number,
  parent: { pid: number; token: number } | undefined,
  start: number,
  stop: number,
  extra = {},
): string[] {
  return [
    hello(pid, start - 100, parent ? { parent, ...extra } : extra),
    ...DEFINITIONS,
    events([0, 1, start, 0, 2], [2, 1, stop, 0, 0]),
    end(stop + 50, 2),
  ];
}

function streamOf(lines: string[]): ReadableStream<Uint8Array> {
  return ReadableStream.from([encoder.encode(lines.join("\n") + "\n")]);
}

/** A stream whose chunks are sent by hand. */
function manualStream() {
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  let cancelled = false;
  const stream = new ReadableStream<Uint8Array>({
    start: (c) => void (controller = c),
    cancel: () => void (cancelled = true),
  });
  return {
    stream,
    send: (lines: string[]) => controller.enqueue(encoder.encode(lines.join("\n") + "\n")),
    close: () => controller.close(),
    get cancelled() {
      return cancelled;
    },
  };
}

/** Connections that come by hand, with a record of when `stop` was called. */
function manualConnections() {
  let controller!: ReadableStreamDefaultController<ReadableStream<Uint8Array>>;
  const connections = new ReadableStream<ReadableStream<Uint8Array>>({
    start: (c) => void (controller = c),
  });
  const stops: number[] = [];
  const source: ProcessStreams & { stops: number[] } = {
    connections,
    stops,
    stop() {
      stops.push(performance.now());
      // As the channel does: once stopped, the connections end.
      queueMicrotask(() => {
        try {
          controller.close();
        } catch {
          // Closed already.
        }
      });
    },
  };
  return { source, connect: (stream: ReadableStream<Uint8Array>) => controller.enqueue(stream) };
}

interface Converted {
  summary: ConversionSummary | undefined;
  trace: {
    traceEvents: Record<string, unknown>[];
    otherData: Record<string, unknown>;
  } | undefined;
  warnings: string[];
}

async function convert(
  input: Parameters<typeof convertProcesses>[0],
  options: ConvertProcessesOptions = {},
): Promise<Converted> {
  let text = "";
  const decoder = new TextDecoder();
  const warnings: string[] = [];
  const summary = await convertProcesses(
    input,
    new WritableStream({
      write: (chunk) => void (text += decoder.decode(chunk, { stream: true })),
    }),
    { ...options, onWarning: (message) => warnings.push(message) },
  );
  return { summary, trace: text === "" ? undefined : JSON.parse(text), warnings };
}

const slicesOf = (trace: Converted["trace"]) =>
  trace!.traceEvents.filter((event) => event.ph === "X") as {
    name: string;
    pid: number;
    tid: number;
    ts: number;
    dur: number;
  }[];

Deno.test("convertProcesses joins a parent and its children in one trace", async (t) => {
  await t.step("summaries, root first, and one time axis", async () => {
    const { summary, trace, warnings } = await convert([
      streamOf(parentLines(100, 10_000, [1, 2])),
      streamOf(childLines(101, { pid: 100, token: 1 }, 14_000, 20_000)),
      streamOf(childLines(102, { pid: 100, token: 2 }, 16_000, 18_000)),
    ]);
    assert.deepEqual(warnings, []);
    assert.ok(summary !== undefined);
    assert.equal(summary.pid, 100);
    assert.equal(summary.complete, true);
    assert.equal(summary.events, 8);
    assert.deepEqual(
      summary.processes?.map((p) => [p.pid, p.parent, p.complete, p.reason, p.events, p.slices]),
      [
        [100, null, true, "exit", 8, 3],
        [101, { pid: 100, token: 1 }, true, "exit", 2, 1],
        [102, { pid: 100, token: 2 }, true, "exit", 2, 1],
      ],
    );
    assert.deepEqual(summary.processes?.[1]?.argv, ["/home/user/p101.py"]);
    const work = slicesOf(trace).filter((slice) => slice.name === "work");
    // Times count from the first process's t0, 10,000 ns.
    assert.deepEqual(work.map((slice) => [slice.ts, slice.dur]).sort(), [[4, 6], [6, 2]]);
    assert.deepEqual(
      (trace!.otherData.processes as { pid: number }[]).map((process) => process.pid),
      [100, 101, 102],
    );
  });

  await t.step(
    "a child's hello that comes first is held back until the first process's",
    async () => {
      const root = manualStream();
      const { source, connect } = manualConnections();
      const exited = Promise.withResolvers<void>();
      const converting = convert(source, { exited: exited.promise });
      connect(streamOf(childLines(101, { pid: 100, token: 1 }, 14_000, 20_000)));
      connect(root.stream);
      await new Promise((resolve) => setTimeout(resolve, 20));
      root.send(parentLines(100, 10_000));
      root.close();
      exited.resolve();
      const { summary, trace } = await converting;
      assert.deepEqual(summary?.processes?.map((process) => process.pid), [100, 101]);
      // Thread 1 is the first process's main thread.
      const main = slicesOf(trace).find((slice) => slice.name === "main");
      assert.equal(main?.tid, 1);
      const work = slicesOf(trace).find((slice) => slice.name === "work");
      assert.deepEqual([work?.ts, work?.tid], [4, 2]);
    },
  );

  await t.step("a child cut short marks only its process incomplete, and says which", async () => {
    const child = childLines(101, { pid: 100, token: 1 }, 14_000, 20_000);
    const { summary, warnings } = await convert([
      streamOf(parentLines(100, 10_000)),
      streamOf(child.slice(0, -2)),
    ]);
    assert.equal(summary?.complete, false);
    assert.deepEqual(summary?.processes?.map((process) => process.complete), [true, false]);
    assert.deepEqual(warnings, [
      'process 101 (p101.py): the event stream ended without an "end" record (the program exited abruptly): open slices were closed at the last timestamp',
    ]);
  });

  await t.step("a child whose stream breaks is cut there, with a warning", async () => {
    const child = childLines(101, { pid: 100, token: 1 }, 14_000, 20_000);
    const { summary, warnings } = await convert([
      streamOf(parentLines(100, 10_000)),
      streamOf([...child.slice(0, -1), "not json"]),
    ]);
    assert.deepEqual(summary?.processes?.map((process) => process.complete), [true, false]);
    assert.equal(warnings.length, 1);
    assert.match(
      warnings[0]!,
      /^process 101 \(p101\.py\): its event stream is broken at line 6: expected a JSON object/,
    );
  });

  await t.step("the first process's broken stream fails the conversion", async () => {
    await assert.rejects(
      convert([
        streamOf([...parentLines(100, 10_000).slice(0, 2), "not json"]),
        streamOf(childLines(101, { pid: 100, token: 1 }, 14_000, 20_000)),
      ]),
      /^ProtocolError: line 3: expected a JSON object/,
    );
  });

  await t.step("a child of token 0 (its spawn unknown) has no arrow", async () => {
    const { summary } = await convert([
      streamOf(parentLines(100, 10_000)),
      streamOf(childLines(101, { pid: 100, token: 0 }, 14_000, 20_000)),
    ]);
    assert.deepEqual(summary?.processes?.[1]?.parent, { pid: 100, token: 0 });
    assert.equal(summary?.complete, true);
  });

  await t.step("a program that replaced itself (exec) goes on in the same process", async () => {
    const before = [
      hello(100, 10_000),
      ...DEFINITIONS,
      events([0, 1, 11_000, 0, 1]),
      end(12_000, 1, "exec"),
    ];
    const after = childLines(100, { pid: 100, token: 0 }, 13_000, 15_000);
    const { summary, trace } = await convert([streamOf(before), streamOf(after)]);
    assert.deepEqual(
      summary?.processes?.map((process) => [process.pid, process.reason]),
      [[100, "exec"], [100, "exit"]],
    );
    assert.equal(summary?.complete, true);
    // One track: the exec'd program's main thread is the one that called exec.
    assert.deepEqual(
      slicesOf(trace).map((slice) => [slice.name, slice.tid]),
      [["main", 1], ["work", 1]],
    );
    const names = trace!.traceEvents.filter((event) => event.name === "process_name");
    assert.deepEqual(names.at(-1)?.args, {
      name: "python /home/user/p100.py → python /home/user/p100.py",
    });
  });

  await t.step("no stream at all gives no trace", async () => {
    const { summary, trace } = await convert([]);
    assert.equal(summary, undefined);
    assert.equal(trace, undefined);
  });

  await t.step("without a first process, the one that began first stands in", async () => {
    const { summary } = await convert([
      streamOf(childLines(102, { pid: 1, token: 2 }, 16_000, 18_000)),
      streamOf(childLines(101, { pid: 1, token: 1 }, 14_000, 20_000)),
    ]);
    assert.equal(summary?.pid, 101);
    assert.deepEqual(summary?.processes?.map((process) => process.pid), [101, 102]);
  });

  await t.step("a stream without this run's secret is refused", async () => {
    await assert.rejects(
      convert([streamOf(parentLines(100, 10_000))], { secret: "s3cret" }),
      /^ProtocolError: line 1: the event stream did not present this run's secret/,
    );
  });
});

Deno.test("convertProcesses writes each process's events with its pid, and arrows between them", async (t) => {
  const { trace } = await convert([
    streamOf(parentLines(100, 10_000, [1, 2])),
    streamOf(childLines(101, { pid: 100, token: 1 }, 14_000, 20_000)),
    streamOf(childLines(102, { pid: 100, token: 2 }, 16_000, 18_000)),
  ]);
  const events = trace!.traceEvents;
  await t.step("process names and their order, the first first", () => {
    const meta = events.filter((event) => event.ph === "M" && !("tid" in event));
    assert.deepEqual(
      meta.map((event) => [event.pid, event.name, event.args as Record<string, unknown>]),
      [
        [100, "process_name", { name: "python /home/user/p100.py" }],
        [100, "process_sort_index", { sort_index: 1 }],
        [101, "process_name", { name: "python /home/user/p101.py" }],
        [101, "process_sort_index", { sort_index: 2 }],
        [102, "process_name", { name: "python /home/user/p102.py" }],
        [102, "process_sort_index", { sort_index: 3 }],
      ],
    );
  });
  await t.step("threads named per process, with ids unique across them", () => {
    const threads = events.filter((event) => event.name === "thread_name");
    assert.deepEqual(threads.map((event) => [event.pid, event.tid]), [[100, 1], [101, 2], [
      102,
      3,
    ]]);
  });
  await t.step("slices with the pid of their thread", () => {
    assert.deepEqual(
      slicesOf(trace).map((slice) => [slice.name, slice.pid, slice.tid]).sort(),
      [
        ["main", 100, 1],
        ["posix.fork", 100, 1],
        ["posix.fork", 100, 1],
        ["work", 101, 2],
        ["work", 102, 3],
      ],
    );
  });
  await t.step("an arrow from each fork call to its child's first slice", () => {
    const bound = slicesOf(trace).filter((slice) => "bind_id" in slice) as unknown as {
      name: string;
      pid: number;
      ts: number;
      bind_id: string;
      flow_in?: boolean;
      flow_out?: boolean;
    }[];
    const arrows = Map.groupBy(bound, (slice) => slice.bind_id);
    assert.deepEqual(
      [...arrows.values()].map((pair) =>
        pair.map((slice) => [slice.name, slice.pid, slice.flow_out ? "out" : "in"]).sort()
      ).sort(),
      [
        [["posix.fork", 100, "out"], ["work", 101, "in"]],
        [["posix.fork", 100, "out"], ["work", 102, "in"]],
      ],
    );
    // The two arrows leave the two calls, in order.
    const out = bound.filter((slice) => slice.flow_out).sort((a, b) => a.ts - b.ts);
    const into = (id: string) => bound.find((slice) => slice.bind_id === id && slice.flow_in)!;
    assert.deepEqual(out.map((slice) => into(slice.bind_id).pid), [101, 102]);
    // No v1 flow events: Perfetto would number them in the same space as bind_id.
    assert.ok(events.every((event) => event.ph !== "s" && event.ph !== "f"));
  });
});

Deno.test("convertProcesses stops once no process can still connect", async (t) => {
  const options = { grace: 50 };

  await t.step("not before the first process has exited", async () => {
    const { source, connect } = manualConnections();
    const exited = Promise.withResolvers<void>();
    const converting = convert(source, { ...options, exited: exited.promise });
    connect(streamOf(parentLines(100, 10_000, [])));
    await new Promise((resolve) => setTimeout(resolve, 30));
    assert.deepEqual(source.stops, []);
    const at = performance.now();
    exited.resolve();
    const { summary } = await converting;
    assert.equal(source.stops.length, 1);
    assert.ok(source.stops[0]! - at < 40, "no spawn to wait for: it stops at once");
    assert.equal(summary?.complete, true);
  });

  await t.step("a recent spawn waits for its child, which may connect late", async () => {
    const { source, connect } = manualConnections();
    const exited = Promise.withResolvers<void>();
    const converting = convert(source, { ...options, exited: exited.promise });
    connect(streamOf(parentLines(100, 10_000)));
    exited.resolve();
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.deepEqual(source.stops, [], "the spawn's child has not come");
    connect(streamOf(childLines(101, { pid: 100, token: 1 }, 14_000, 20_000)));
    const { summary } = await converting;
    assert.equal(source.stops.length, 1);
    assert.deepEqual(summary?.processes?.map((process) => process.pid), [100, 101]);
  });

  await t.step("a spawn whose child never connects is waited for only `grace`", async () => {
    const { source, connect } = manualConnections();
    const at = performance.now();
    const converting = convert(source, { ...options, exited: Promise.resolve() });
    connect(streamOf(parentLines(100, 10_000)));
    const { summary } = await converting;
    const waited = source.stops[0]! - at;
    assert.ok(waited >= 45 && waited < 500, `stopped after ${waited} ms`);
    assert.equal(summary?.processes?.length, 1);
  });

  await t.step("streams left open are reported once, and waited for", async () => {
    const { source, connect } = manualConnections();
    const child = manualStream();
    const waiting: number[][] = [];
    const converting = convert(source, {
      ...options,
      exited: Promise.resolve(),
      onWaiting: (pids) => waiting.push(pids),
    });
    connect(streamOf(parentLines(100, 10_000)));
    connect(child.stream);
    child.send(childLines(101, { pid: 100, token: 1 }, 14_000, 20_000).slice(0, 5));
    await new Promise((resolve) => setTimeout(resolve, 120));
    assert.deepEqual(waiting, [[101]]);
    assert.deepEqual(source.stops, []);
    child.send([end(20_050, 2)]);
    child.close();
    const { summary } = await converting;
    assert.deepEqual(waiting, [[101]]);
    assert.equal(summary?.complete, true);
  });

  await t.step("the signal stops waiting: open streams are cut short there", async () => {
    const { source, connect } = manualConnections();
    const child = manualStream();
    const controller = new AbortController();
    const converting = convert(source, {
      ...options,
      exited: Promise.resolve(),
      signal: controller.signal,
      onWaiting: () => controller.abort(),
    });
    connect(streamOf(parentLines(100, 10_000)));
    connect(child.stream);
    child.send(childLines(101, { pid: 100, token: 1 }, 14_000, 20_000).slice(0, 5));
    const { summary, warnings, trace } = await converting;
    assert.ok(child.cancelled, "the open stream is cancelled");
    assert.equal(source.stops.length, 1);
    assert.equal(summary?.complete, false);
    assert.deepEqual(summary?.processes?.map((process) => process.complete), [true, false]);
    assert.match(warnings.at(-1)!, /^process 101 \(p101\.py\): the event stream ended without/);
    // What arrived is in the trace.
    assert.ok(slicesOf(trace).some((slice) => slice.name === "work"));
  });
});

Deno.test("convertProcesses reads no stream faster than the trace is written", async () => {
  const pulls = [0, 0];
  /** A stream of `chunks` batches of 500 calls each, made as they are pulled. */
  const lazy = (index: number, pid: number, parent?: { pid: number; token: number }) => {
    let sent = 0;
    let ts = 10_000;
    return new ReadableStream<Uint8Array>({
      pull(controller) {
        pulls[index]!++;
        if (sent === 0) {
          controller.enqueue(
            encoder.encode(
              [hello(pid, ts, parent ? { parent } : {}), ...DEFINITIONS, ""].join("\n"),
            ),
          );
        } else if (sent <= 200) {
          const list: number[][] = [];
          for (let i = 0; i < 500; i++) list.push([0, 1, ts += 10, 0, 1], [2, 1, ts += 10, 0, 0]);
          controller.enqueue(encoder.encode(events(...list) + "\n"));
        } else {
          controller.enqueue(encoder.encode(end(ts + 10, 200 * 1000) + "\n"));
          controller.close();
        }
        sent++;
      },
    }, { highWaterMark: 0 });
  };
  let open = Promise.withResolvers<void>();
  let written = 0;
  const output = new WritableStream<Uint8Array>({
    async write(chunk) {
      await open.promise;
      written += chunk.length;
    },
  });
  const converting = convertProcesses(
    [lazy(0, 100), lazy(1, 101, { pid: 100, token: 0 })],
    output,
  );
  await new Promise((resolve) => setTimeout(resolve, 100));
  // The output takes nothing: each stream was read a few chunks ahead at most.
  assert.ok(pulls[0]! <= 4 && pulls[1]! <= 4, `pulled ${pulls}`);
  open.resolve();
  const summary = await converting;
  assert.deepEqual(pulls, [202, 202]);
  assert.equal(summary?.complete, true);
  assert.deepEqual(summary?.processes?.map((process) => process.events), [200_000, 200_000]);
  assert.ok(written > 2 * 100_000 * 100);
  open = Promise.withResolvers();
});

const NO_VIEWER = viewerIgnored("tests/processes_test.ts");

Deno.test({
  name:
    "convertProcesses writes traces whose arrows Perfetto's trace processor joins across processes",
  ignore: NO_VIEWER,
  fn: async (t) => {
    const dir = await Deno.makeTempDir({ prefix: "panopticon-processes-test-" });
    try {
      for (const format of ["json", "perfetto"] as const) {
        await t.step(format, async () => {
          const path = `${dir}/trace.${format === "json" ? "json" : "pftrace"}`;
          const file = await Deno.open(path, { write: true, create: true, truncate: true });
          // The parent's fork happens inside a generator's first slice, as
          // a flow of its own leaves it: the arrow to the child rides on the
          // fork call, the generator's flow on the generator's slices.
          const gen =
            '{"kind":"code","id":3,"module":"__main__","qualname":"gen","file":"p.py","line":9,"type":"generator"}';
          const parent = [
            hello(100, 10_000),
            ...DEFINITIONS,
            gen,
            events(
              [0, 1, 11_000, 0, 1],
              [0, 1, 11_500, 77, 3],
              [5, 1, 12_000, 0, 1],
              [14, 1, 12_500, 0, 1],
              [6, 1, 13_000, 0, 0],
              [4, 1, 13_200, 77, 0],
              [1, 1, 13_400, 77, 3],
              [2, 1, 13_600, 77, 0],
              [5, 1, 14_000, 0, 1],
              [14, 1, 14_500, 0, 2],
              [6, 1, 15_000, 0, 0],
              [2, 1, 30_000, 0, 0],
            ),
            end(30_100, 12),
          ];
          const summary = await convertProcesses(
            [
              streamOf(parent),
              streamOf(childLines(101, { pid: 100, token: 1 }, 16_000, 20_000)),
              streamOf(childLines(102, { pid: 100, token: 2 }, 17_000, 25_000)),
            ],
            file.writable,
            { format },
          );
          assert.equal(summary?.format, format);
          const { parsed, results } = await query(
            path,
            `select so.name as from_name, po.pid as from_pid, si.name as to_name, pi.pid as to_pid
               from flow f
               join slice so on so.id = f.slice_out
               join thread_track a on so.track_id = a.id join thread ta on ta.utid = a.utid
               join process po on po.upid = ta.upid
               join slice si on si.id = f.slice_in
               join thread_track b on si.track_id = b.id join thread tb on tb.utid = b.utid
               join process pi on pi.upid = tb.upid
               order by si.ts`,
            `select s.name, p.pid, p.name as process from slice s
               join thread_track tt on s.track_id = tt.id join thread using (utid)
               join process p using (upid) order by s.ts`,
            ERROR_STATS,
          );
          assert.ok(parsed);
          const [flows, slices, errors] = results;
          assert.deepEqual(flows, [
            { from_name: "gen", from_pid: "100", to_name: "gen", to_pid: "100" },
            { from_name: "posix.fork", from_pid: "100", to_name: "work", to_pid: "101" },
            { from_name: "posix.fork", from_pid: "100", to_name: "work", to_pid: "102" },
          ]);
          assert.deepEqual(slices!.map((row) => [row.name, row.pid, row.process]), [
            ["main", "100", "python /home/user/p100.py"],
            ["gen", "100", "python /home/user/p100.py"],
            ["posix.fork", "100", "python /home/user/p100.py"],
            ["gen", "100", "python /home/user/p100.py"],
            ["posix.fork", "100", "python /home/user/p100.py"],
            ["work", "101", "python /home/user/p101.py"],
            ["work", "102", "python /home/user/p102.py"],
          ]);
          assert.deepEqual(errors, []);
        });
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("convertProcesses writes a protobuf trace with a track per process and arrows between them", async () => {
  const chunks: Uint8Array[] = [];
  const summary = await convertProcesses(
    [
      streamOf(parentLines(100, 10_000, [1, 2])),
      streamOf(childLines(101, { pid: 100, token: 1 }, 14_000, 20_000)),
      streamOf(childLines(102, { pid: 100, token: 2 }, 16_000, 18_000)),
    ],
    new WritableStream({ write: (chunk) => void chunks.push(chunk) }),
    { format: "perfetto" },
  );
  assert.equal(summary?.format, "perfetto");
  const trace = await readPerfetto(ReadableStream.from(chunks));
  assert.deepEqual(
    JSON.parse(trace.metadata.processes as string).map((p: { pid: number }) => p.pid),
    [100, 101, 102],
  );
  const tracks = [...trace.tracks.values()];
  assert.deepEqual(
    tracks.flatMap((track) => track.process ? [[track.process.pid, track.process.name]] : []),
    [
      [100, "python /home/user/p100.py"],
      [101, "python /home/user/p101.py"],
      [102, "python /home/user/p102.py"],
    ],
  );
  // Each thread's track is under its process's.
  assert.deepEqual(
    tracks.flatMap((track) =>
      track.thread
        ? [[track.thread.tid, track.thread.pid, trace.tracks.get(track.parent!)?.process?.pid]]
        : []
    ),
    [[1, 100, 100], [2, 101, 101], [3, 102, 102]],
  );
  const name = (id: number) => trace.slices[id]!.name;
  assert.deepEqual(
    trace.flows.map((flow) => [name(flow.from), name(flow.to), trace.slices[flow.to]!.tid]),
    [["posix.fork", "work", 2], ["posix.fork", "work", 3]],
  );
});
