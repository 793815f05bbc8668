import { deepEqual, equal, match, ok, rejects } from "node:assert/strict";
import { dirname } from "node:path";
import type { Filters, Target } from "../src/cli.ts";
import type { ConversionSummary } from "../src/convert.ts";
import {
  childArgs,
  childEnvironment,
  type ChildStatus,
  type Convert,
  exitCodeOf,
  filtersVariable,
  resolveEngine,
  RunError,
  type RunOptions,
  runTraced,
  type Spawn,
  type SpawnRequest,
} from "../src/runner.ts";

const PY312 = { path: "python-fake", version: [3, 12, 1] as [number, number, number] };
const PY311 = { path: "python-fake", version: [3, 11, 7] as [number, number, number] };

/** The example stream of docs/protocol.md, with the run's secret in `hello`. */
function exampleStream(secret: string): string {
  return [
    `{"kind":"hello","protocol":1,"pid":4242,"python":"3.12.1","engine":"monitoring","t0":1000,"main_thread":140001,"argv":["gen.py"],"secret":"${secret}"}`,
    `{"kind":"thread","thread":140001,"native_id":4242,"name":"MainThread"}`,
    `{"kind":"code","id":1,"module":"__main__","qualname":"<module>","file":"gen.py","line":1,"type":"function"}`,
    `{"kind":"code","id":2,"module":"__main__","qualname":"numbers","file":"gen.py","line":1,"type":"generator"}`,
    `{"kind":"cfunc","id":1,"name":"print"}`,
    `{"kind":"events","events":[[0,140001,1000,7001,1],[0,140001,1100,7002,2],[4,140001,1200,7002,2],[5,140001,1300,0,1],[6,140001,1400,0,1],[1,140001,1500,7002,2],[2,140001,1600,7002,2],[2,140001,1700,7001,1]]}`,
    `{"kind":"flush","thread":140001,"start":1710,"end":1750,"events":8}`,
    `{"kind":"end","ts":1800,"events":8,"dropped":0,"reason":"exit"}`,
    "",
  ].join("\n");
}

/** What a stand-in converter reports. */
function fakeSummary(): ConversionSummary {
  return {
    complete: true,
    events: 0,
    recorded: 0,
    dropped: 0,
    reason: "exit",
    slices: 0,
    unfinished: 0,
    threads: 0,
    duration: 0,
    pid: 1,
    pythonVersion: "3.12.1",
    engine: "monitoring",
    protocol: 1,
    warnings: [],
    format: "json",
    bytes: 0,
  };
}

/** Connects to the channel the runner gave the child and sends `text`. */
async function send(request: SpawnRequest, text: string): Promise<void> {
  const conn = await Deno.connect({ transport: "unix", path: request.env.PANOPTICON_CHANNEL! });
  const bytes = new TextEncoder().encode(text);
  for (let written = 0; written < bytes.length;) {
    written += await conn.write(bytes.subarray(written));
  }
  conn.close();
}

/** A fake interpreter: `behave` plays the child and resolves with its status. */
function fakeSpawn(behave: (request: SpawnRequest) => Promise<ChildStatus>) {
  const requests: SpawnRequest[] = [];
  const kills: Deno.Signal[] = [];
  const spawn: Spawn = (request) => {
    requests.push(request);
    // Snapshot what the child would see at start-up, before the runner
    // cleans up.
    const status = behave(request);
    return {
      status,
      kill(signal: Deno.Signal = "SIGTERM") {
        kills.push(signal);
      },
    };
  };
  return { spawn, requests, kills };
}

/** The collector of the fake: sends the example stream, then exits. */
const tracedExit = (status: ChildStatus) => async (request: SpawnRequest) => {
  await send(request, exampleStream(request.env.PANOPTICON_SECRET!));
  return status;
};

interface Sandbox {
  dir: string;
  tmp: string;
  script: string;
  output: string;
  options(spawn: Spawn, extra?: Partial<RunOptions>): RunOptions;
  [Symbol.asyncDispose](): Promise<void>;
}

async function sandbox(): Promise<Sandbox> {
  const dir = await Deno.makeTempDir({ prefix: "panopticon-runner-test-" });
  const tmp = `${dir}/tmp`;
  await Deno.mkdir(tmp);
  const script = `${dir}/app.py`;
  await Deno.writeTextFile(script, "print('hi')\n");
  const output = `${dir}/app.trace.json`;
  return {
    dir,
    tmp,
    script,
    output,
    options: (spawn, extra = {}) => ({
      python: PY312,
      output,
      spawn,
      env: { PATH: "/usr/bin:/bin", HOME: "/home/user" },
      collectorSource: "# the collector\n",
      handleSignals: false,
      tempDir: tmp,
      ...extra,
    }),
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  };
}

async function entries(dir: string): Promise<string[]> {
  return (await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name);
}

async function exists(path: string): Promise<boolean> {
  return await Deno.lstat(path).then(() => true, () => false);
}

function script(path: string, ...args: string[]): Target {
  return { kind: "script", path, args };
}

Deno.test("runTraced() passes the program's exit code through", async (t) => {
  for (const code of [0, 1, 3, 255]) {
    await t.step(`exit ${code}`, async () => {
      await using box = await sandbox();
      const fake = fakeSpawn(tracedExit({ code, signal: null }));
      const result = await runTraced(script(box.script), box.options(fake.spawn));
      equal(result.exitCode, code);
      deepEqual(result.status, { code, signal: null });
      equal(result.engine, "monitoring");
      equal(result.summary.events, 8);
      equal(result.summary.threads, 1);
      equal(result.summary.complete, true);
      const trace = JSON.parse(await Deno.readTextFile(box.output));
      ok(trace !== null && typeof trace === "object", "the output is a JSON trace");
    });
  }
});

Deno.test("runTraced() reports a program killed by a signal as 128 + its number", async (t) => {
  const cases: [ChildStatus, number][] = [
    [{ code: 130, signal: "SIGINT" }, 130],
    [{ code: 137, signal: "SIGKILL" }, 137],
    [{ code: 143, signal: "SIGTERM" }, 143],
    [{ code: 139, signal: "SIGSEGV" }, 139],
  ];
  for (const [status, expected] of cases) {
    await t.step(status.signal!, async () => {
      await using box = await sandbox();
      const fake = fakeSpawn(async (request) => {
        // Killed mid-stream: no `end` record.
        await send(
          request,
          exampleStream(request.env.PANOPTICON_SECRET!).split("\n").slice(0, 6).join("\n") + "\n",
        );
        return status;
      });
      const result = await runTraced(script(box.script), box.options(fake.spawn));
      equal(result.exitCode, expected);
      equal(result.summary.complete, false);
      ok(result.summary.warnings.length > 0, "a cut-short stream is warned about");
    });
  }
});

Deno.test("exitCodeOf() reports what a shell reports", async (t) => {
  const cases: [ChildStatus, string, number][] = [
    [{ code: 0, signal: null }, "linux", 0],
    [{ code: 42, signal: null }, "linux", 42],
    [{ code: 130, signal: "SIGINT" }, "linux", 130],
    [{ code: 138, signal: "SIGUSR1" }, "linux", 138],
    [{ code: 158, signal: "SIGUSR1" }, "darwin", 158],
    [{ code: 1, signal: "SIGBUS" }, "linux", 135],
    [{ code: 1, signal: "SIGBUS" }, "darwin", 138],
  ];
  for (const [status, os, expected] of cases) {
    await t.step(`${status.signal ?? status.code} on ${os}`, () => {
      equal(exitCodeOf(status, os), expected);
    });
  }
});

Deno.test("runTraced() gives the child the collector's environment", async () => {
  await using box = await sandbox();
  let seen: { sitecustomize: string; dirMode: number; socketIsSocket: boolean } | undefined;
  const fake = fakeSpawn(async (request) => {
    const dir = request.env.PYTHONPATH!.split(":")[0]!;
    seen = {
      sitecustomize: await Deno.readTextFile(`${dir}/sitecustomize.py`),
      dirMode: (await Deno.stat(dir)).mode! & 0o777,
      socketIsSocket: (await Deno.lstat(request.env.PANOPTICON_CHANNEL!)).isSocket === true,
    };
    return tracedExit({ code: 0, signal: null })(request);
  });
  let secretSeen: string | undefined;
  const convert: Convert = async (input, output, options) => {
    secretSeen = options?.secret;
    await input.cancel();
    await output.close();
    return fakeSummary();
  };
  await runTraced(
    script(box.script, "--flag", "x"),
    box.options(fake.spawn, {
      convert,
      engine: "setprofile",
      env: {
        PATH: "/usr/bin",
        PYTHONPATH: "/user/lib:/more",
        PANOPTICON_CHANNEL: "/stale/socket",
        PANOPTICON_SECRET: "stale",
        PANOPTICON_ENGINE: "stale",
        PANOPTICON_SPAWN: "41:7",
      },
    }),
  );
  const request = fake.requests[0]!;
  equal(request.program, "python-fake");
  deepEqual(request.args, [box.script, "--flag", "x"]);
  const dir = dirname(request.env.PANOPTICON_CHANNEL!);
  ok(dir.startsWith(`${box.tmp}/panopticon-`), dir);
  deepEqual(request.env, {
    PATH: "/usr/bin",
    PYTHONPATH: `${dir}:/user/lib:/more`,
    PANOPTICON_PYTHONPATH: "/user/lib:/more",
    PANOPTICON_CHANNEL: `${dir}/channel.sock`,
    PANOPTICON_SECRET: request.env.PANOPTICON_SECRET,
    PANOPTICON_ENGINE: "setprofile",
    PANOPTICON_ROOT: "1",
    PANOPTICON_FOLLOW: "0",
  });
  match(request.env.PANOPTICON_SECRET!, /^[0-9a-f]{64}$/);
  equal(secretSeen, request.env.PANOPTICON_SECRET);
  deepEqual(seen, { sitecustomize: "# the collector\n", dirMode: 0o700, socketIsSocket: true });
  deepEqual(await entries(box.tmp), [], "the private directory is removed");
});

Deno.test("childEnvironment() sets PYTHONPATH and PANOPTICON_PYTHONPATH", async (t) => {
  const settings = {
    dir: "/tmp/p",
    socket: "/tmp/p/channel.sock",
    secret: "s",
    engine: "auto" as const,
  };
  const cases: [string, Record<string, string>, Record<string, string>][] = [
    ["no PYTHONPATH", { HOME: "/h" }, { PYTHONPATH: "/tmp/p" }],
    ["a PYTHONPATH", { PYTHONPATH: "/a:/b" }, {
      PYTHONPATH: "/tmp/p:/a:/b",
      PANOPTICON_PYTHONPATH: "/a:/b",
    }],
    // "/tmp/p:" would put the current directory on sys.path.
    ["an empty PYTHONPATH", { PYTHONPATH: "" }, {
      PYTHONPATH: "/tmp/p",
      PANOPTICON_PYTHONPATH: "",
    }],
    ["a stale PANOPTICON_PYTHONPATH", { PANOPTICON_PYTHONPATH: "/old" }, { PYTHONPATH: "/tmp/p" }],
  ];
  for (const [name, base, expected] of cases) {
    await t.step(name, () => {
      const env = childEnvironment(base, settings);
      equal(env.PYTHONPATH, expected.PYTHONPATH);
      equal(env.PANOPTICON_PYTHONPATH, expected.PANOPTICON_PYTHONPATH);
      equal(env.PANOPTICON_CHANNEL, "/tmp/p/channel.sock");
      equal(env.PANOPTICON_SECRET, "s");
      equal(env.PANOPTICON_ENGINE, "auto");
      if (base.HOME) equal(env.HOME, base.HOME);
    });
  }
});

/** Filters with the defaults, and `changes`. */
function filters(changes: Partial<Filters>): Filters {
  return { include: [], exclude: [], excludeStdlib: false, cCalls: true, ...changes };
}

Deno.test("filtersVariable() encodes the filters one setting a line", async (t) => {
  const cases: [string, Filters | undefined, string | undefined][] = [
    ["no filters", undefined, undefined],
    ["filters that filter nothing", filters({}), undefined],
    [
      "--include",
      filters({ include: ["module:myapp.*", "file:*/src/*.py"] }),
      "include module:myapp.*\ninclude file:*/src/*.py",
    ],
    ["--exclude", filters({ exclude: ["function:Handler.*"] }), "exclude function:Handler.*"],
    ["--exclude-stdlib", filters({ excludeStdlib: true }), "exclude-stdlib"],
    ["--no-c-calls", filters({ cCalls: false }), "no-c-calls"],
    [
      "a pattern with quotes, a backslash, spaces and non-ASCII",
      filters({ include: ['file:*/"quoted" \\dir/*.py', "function:caf\u00e9"] }),
      'include file:*/"quoted" \\dir/*.py\ninclude function:caf\u00e9',
    ],
    [
      "everything",
      filters({ include: ["module:a"], exclude: ["module:b"], excludeStdlib: true, cCalls: false }),
      "include module:a\nexclude module:b\nexclude-stdlib\nno-c-calls",
    ],
  ];
  for (const [name, given, expected] of cases) {
    await t.step(name, () => equal(filtersVariable(given), expected));
  }
});

Deno.test("childEnvironment() sets PANOPTICON_FILTERS only when a filter is given", async (t) => {
  const settings = {
    dir: "/tmp/p",
    socket: "/tmp/p/channel.sock",
    secret: "s",
    engine: "auto" as const,
  };
  const cases: [string, Record<string, string>, Filters | undefined, string | undefined][] = [
    ["no filters", { HOME: "/h" }, undefined, undefined],
    [
      "no filters, a stale variable",
      { PANOPTICON_FILTERS: '{"include":["x"]}' },
      undefined,
      undefined,
    ],
    ["empty filters, a stale variable", { PANOPTICON_FILTERS: "stale" }, filters({}), undefined],
    [
      "filters, a stale variable",
      { PANOPTICON_FILTERS: "stale" },
      filters({ excludeStdlib: true, cCalls: false }),
      "exclude-stdlib\nno-c-calls",
    ],
  ];
  for (const [name, base, given, expected] of cases) {
    await t.step(name, () => {
      const env = childEnvironment(base, { ...settings, filters: given });
      equal(env.PANOPTICON_FILTERS, expected);
      equal("PANOPTICON_FILTERS" in env, expected !== undefined);
    });
  }
});

Deno.test("childEnvironment() sets PANOPTICON_MAX_EVENTS only when there is a limit", async (t) => {
  const settings = {
    dir: "/tmp/p",
    socket: "/tmp/p/channel.sock",
    secret: "s",
    engine: "auto" as const,
  };
  await t.step("a limit", () => {
    equal(
      childEnvironment({}, { ...settings, maxEvents: 1_000_000 }).PANOPTICON_MAX_EVENTS,
      "1000000",
    );
  });
  await t.step("no limit, a stale variable", () => {
    const env = childEnvironment({ PANOPTICON_MAX_EVENTS: "5" }, settings);
    equal("PANOPTICON_MAX_EVENTS" in env, false);
  });
});

Deno.test("runTraced() passes --max-events to the collector and the format to the converter", async () => {
  await using box = await sandbox();
  const fake = fakeSpawn(tracedExit({ code: 0, signal: null }));
  let convertOptions: Record<string, unknown> | undefined;
  const convert: Convert = async (input, output, options) => {
    convertOptions = { ...options };
    await input.cancel();
    await output.close();
    return fakeSummary();
  };
  await runTraced(
    script(box.script),
    box.options(fake.spawn, { convert, maxEvents: 500, format: "perfetto", gzip: true }),
  );
  equal(fake.requests[0]!.env.PANOPTICON_MAX_EVENTS, "500");
  deepEqual(convertOptions, {
    secret: fake.requests[0]!.env.PANOPTICON_SECRET,
    format: "perfetto",
    gzip: true,
  });
});

Deno.test("runTraced() passes the filters to the collector and the depth to the converter", async (t) => {
  const cases: [string, Partial<RunOptions>, string | undefined, number | undefined][] = [
    [
      "every filter and a depth",
      {
        filters: {
          include: ["module:myapp.*", "file:*/src/*.py"],
          exclude: ["function:Handler.*"],
          excludeStdlib: true,
          cCalls: false,
        },
        maxDepth: 3,
      },
      "include module:myapp.*\ninclude file:*/src/*.py\nexclude function:Handler.*\nexclude-stdlib\nno-c-calls",
      3,
    ],
    [
      "--exclude-stdlib alone",
      { filters: filters({ excludeStdlib: true }) },
      "exclude-stdlib",
      undefined,
    ],
    ["a depth alone", { maxDepth: 1 }, undefined, 1],
    ["no filter", {}, undefined, undefined],
  ];
  for (const [name, extra, variable, maxDepth] of cases) {
    await t.step(name, async () => {
      await using box = await sandbox();
      const fake = fakeSpawn(tracedExit({ code: 0, signal: null }));
      let convertOptions: Record<string, unknown> | undefined;
      const convert: Convert = async (input, output, options) => {
        convertOptions = { ...options };
        await input.cancel();
        await output.close();
        return fakeSummary();
      };
      await runTraced(
        script(box.script),
        box.options(fake.spawn, {
          convert,
          env: { PATH: "/usr/bin", PANOPTICON_FILTERS: '{"include":["stale"]}' },
          ...extra,
        }),
      );
      const env = fake.requests[0]!.env;
      const dir = dirname(env.PANOPTICON_CHANNEL!);
      const expected: Record<string, string> = {
        PATH: "/usr/bin",
        PYTHONPATH: dir,
        PANOPTICON_CHANNEL: `${dir}/channel.sock`,
        PANOPTICON_SECRET: env.PANOPTICON_SECRET!,
        PANOPTICON_ENGINE: "auto",
        PANOPTICON_ROOT: "1",
        PANOPTICON_FOLLOW: "0",
      };
      if (variable !== undefined) expected.PANOPTICON_FILTERS = variable;
      deepEqual(env, expected, "the stale value is gone, the new one exact");
      deepEqual(convertOptions, {
        secret: env.PANOPTICON_SECRET,
        ...(maxDepth === undefined ? {} : { maxDepth }),
      });
    });
  }
});

Deno.test("childArgs() passes the user's arguments unchanged", async (t) => {
  const cases: [Target, string[]][] = [
    [script("app.py", "-o", "x"), ["app.py", "-o", "x"]],
    [script("-odd.py", "a"), ["--", "-odd.py", "a"]],
    [script("-", "a"), ["-", "a"]],
    [{ kind: "code", code: "print(1)", args: ["a", "-b"] }, ["-c", "print(1)", "a", "-b"]],
    [{ kind: "module", module: "http.server", args: ["8000"] }, ["-m", "http.server", "8000"]],
  ];
  for (const [target, expected] of cases) {
    await t.step(JSON.stringify(target), () => deepEqual(childArgs(target), expected));
  }
});

Deno.test("resolveEngine() picks by version and refuses monitoring before 3.12", async (t) => {
  await t.step("auto", () => {
    equal(resolveEngine("auto", [3, 12, 0]), "monitoring");
    equal(resolveEngine("auto", [3, 13, 0]), "monitoring");
    equal(resolveEngine("auto", [3, 11, 7]), "setprofile");
    equal(resolveEngine("auto", [3, 8, 18]), "setprofile");
  });
  await t.step("explicit", () => {
    equal(resolveEngine("setprofile", [3, 13, 0]), "setprofile");
    equal(resolveEngine("monitoring", [3, 12, 1]), "monitoring");
  });
  await t.step("monitoring on 3.11", async () => {
    await using box = await sandbox();
    const fake = fakeSpawn(tracedExit({ code: 0, signal: null }));
    await rejects(
      runTraced(
        script(box.script),
        box.options(fake.spawn, { python: PY311, engine: "monitoring" }),
      ),
      /^RunError: the monitoring engine needs Python 3\.12 or newer \(this is Python 3\.11\.7\): use --engine setprofile or --engine auto$/,
    );
    equal(fake.requests.length, 0);
  });
});

Deno.test("runTraced() reports a collector that never connects", async (t) => {
  const cases: [string, ChildStatus, RegExp, number][] = [
    [
      "the program succeeded",
      { code: 0, signal: null },
      /^the program ran but the Panopticon collector never connected \(is PYTHONPATH ignored, e\.g\. python -I or -E\?\); no trace was written$/,
      1,
    ],
    [
      "the program failed",
      { code: 2, signal: null },
      /^the program exited with status 2 before the Panopticon collector connected; no trace was written$/,
      2,
    ],
    [
      "the program was killed",
      { code: 137, signal: "SIGKILL" },
      /^the program exited with status 137 before/,
      137,
    ],
  ];
  for (const [name, status, message, exitCode] of cases) {
    await t.step(name, async () => {
      await using box = await sandbox();
      const fake = fakeSpawn(async () => {
        await new Promise((resolve) => setTimeout(resolve, 20));
        return status;
      });
      await rejects(runTraced(script(box.script), box.options(fake.spawn)), (error: unknown) => {
        ok(error instanceof RunError);
        match(error.message, message);
        equal(error.exitCode, exitCode);
        return true;
      });
      equal(await exists(box.output), false, "no empty trace file is left");
      deepEqual(await entries(box.tmp), [], "the private directory is removed");
    });
  }
});

Deno.test("runTraced() keeps the program's status when the trace cannot be written", async (t) => {
  for (const [code, expected] of [[0, 1], [5, 5]] as const) {
    await t.step(`exit ${code}`, async () => {
      await using box = await sandbox();
      const fake = fakeSpawn(async (request) => {
        // The hello gets the stream past the channel; the converter fails.
        const hello = exampleStream(request.env.PANOPTICON_SECRET!).split("\n")[0]!;
        await send(request, `${hello}\nnot json\n`);
        return { code, signal: null };
      });
      await rejects(runTraced(script(box.script), box.options(fake.spawn)), (error: unknown) => {
        ok(error instanceof RunError);
        match(
          error.message,
          /^could not write the trace to .*app\.trace\.json: the collector's event stream is broken at line 2: expected a JSON object/,
        );
        equal(error.exitCode, expected);
        return true;
      });
      equal(await exists(box.output), false, "no broken trace file is left");
      deepEqual(await entries(box.tmp), [], "the private directory is removed");
    });
  }
});

Deno.test("runTraced() checks the script and the output before the program runs", async (t) => {
  const cases: [string, (box: Sandbox) => [Target, Partial<RunOptions>], RegExp][] = [
    [
      "a missing script",
      (box) => [script(`${box.dir}/missing.py`), {}],
      /^cannot open the script ".*missing\.py": No such file or directory$/,
    ],
    [
      "a directory without __main__.py",
      (box) => [script(box.tmp), {}],
      /^cannot run the script ".*": it is a directory with no __main__\.py$/,
    ],
    [
      "an output in a missing directory",
      (box) => [script(box.script), { output: `${box.dir}/nowhere/t.json` }],
      /^cannot write the trace to ".*nowhere\/t\.json": the directory ".*nowhere" does not exist$/,
    ],
    [
      "an output that is a directory",
      (box) => [script(box.script), { output: box.tmp }],
      /^cannot write the trace to ".*tmp": it is a directory$/,
    ],
    [
      "an output that is the script",
      (box) => [script(box.script), { output: box.script }],
      /^the trace would overwrite the script ".*app\.py": choose another file with --output$/,
    ],
  ];
  for (const [name, setup, message] of cases) {
    await t.step(name, async () => {
      await using box = await sandbox();
      const fake = fakeSpawn(tracedExit({ code: 0, signal: null }));
      const [target, extra] = setup(box);
      await rejects(runTraced(target, box.options(fake.spawn, extra)), (error: unknown) => {
        ok(error instanceof RunError);
        match(error.message, message);
        equal(error.exitCode, undefined, "the program did not run");
        return true;
      });
      equal(fake.requests.length, 0, "the program is not started");
      equal(await Deno.readTextFile(box.script), "print('hi')\n");
      deepEqual(await entries(box.tmp), []);
    });
  }

  await t.step("a directory with __main__.py runs", async () => {
    await using box = await sandbox();
    const fake = fakeSpawn(tracedExit({ code: 0, signal: null }));
    const app = `${box.dir}/appdir`;
    await Deno.mkdir(app);
    await Deno.writeTextFile(`${app}/__main__.py`, "");
    equal((await runTraced(script(app), box.options(fake.spawn))).exitCode, 0);
  });

  await t.step("an existing output is replaced", async () => {
    await using box = await sandbox();
    await Deno.writeTextFile(box.output, "x".repeat(100_000));
    const fake = fakeSpawn(tracedExit({ code: 0, signal: null }));
    await runTraced(script(box.script), box.options(fake.spawn));
    JSON.parse(await Deno.readTextFile(box.output));
  });
});

Deno.test("runTraced() reports an interpreter that cannot be started", async () => {
  await using box = await sandbox();
  const spawn: Spawn = () => {
    throw new Deno.errors.NotFound("Failed to spawn 'python-fake': entity not found");
  };
  await rejects(
    runTraced(script(box.script), box.options(spawn)),
    /^RunError: cannot run "python-fake": No such file or directory$/,
  );
  deepEqual(await entries(box.tmp), []);
  equal(await exists(box.output), false);
});

/**
 * Runs a test script of this directory in a process of its own (for the
 * signals it sends), asserts that it succeeded, and returns what it printed
 * on stdout, parsed as JSON.
 */
async function runScript(script: string, ...args: string[]): Promise<unknown> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL(script, import.meta.url).pathname, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(output.stderr);
  deepEqual({ code: output.code, signal: output.signal }, { code: 0, signal: null }, stderr);
  return JSON.parse(new TextDecoder().decode(output.stdout));
}

Deno.test("runTraced() survives SIGINT and forwards SIGTERM and SIGHUP while the program runs", async () => {
  // In a process of its own: `deno test` itself stops at a SIGINT.
  deepEqual(await runScript("./_runner_signals.ts"), {
    kills: ["SIGTERM", "SIGHUP"],
    // The fake program never connected: the run ends in a clear error,
    // with the program's status, after the signals.
    error: "the program exited with status 130 before the Panopticon collector connected; " +
      "no trace was written",
    exitCode: 130,
    left: ["app.py"],
  });
});

Deno.test("runTraced() refuses a connection without this run's secret and reports it", async (t) => {
  const cases: [string, string | undefined, string][] = [
    ["a wrong secret", exampleStream("0".repeat(64)), "it presented another secret, or none"],
    [
      "no secret",
      exampleStream("").replace(',"secret":""', ""),
      "it presented another secret, or none",
    ],
    [
      "not a hello",
      '{"kind":"end","ts":1,"events":0,"dropped":0,"reason":"exit"}\n',
      "its first record is not a hello",
    ],
    ["not JSON", "GET / HTTP/1.0\r\n\r\n", "its first line is not JSON"],
    ["no first line", "", "it closed before its first line ended"],
    [
      "silent, held open",
      undefined,
      "its first line had not come when the channel stopped listening",
    ],
  ];
  for (const [name, text, reason] of cases) {
    await t.step(name, async () => {
      await using box = await sandbox();
      let rogue: Deno.UnixConn | undefined;
      const fake = fakeSpawn(async (request) => {
        // Another process connects first; then the program's collector.
        if (text === undefined) {
          rogue = await Deno.connect({ transport: "unix", path: request.env.PANOPTICON_CHANNEL! });
          await new Promise((resolve) => setTimeout(resolve, 20));
        } else {
          await send(request, text);
        }
        return tracedExit({ code: 0, signal: null })(request);
      });
      const result = await runTraced(script(box.script), box.options(fake.spawn));
      rogue?.close();
      equal(result.exitCode, 0);
      equal(result.summary.events, 8, "the program's own stream is converted");
      equal(result.summary.complete, true);
      deepEqual(result.summary.warnings, [
        `refused a connection to the event channel that did not present this run's secret (${reason})`,
      ]);
      deepEqual(await entries(box.tmp), [], "the private directory is removed");
    });
  }

  await t.step("only a rogue connection", async () => {
    await using box = await sandbox();
    const fake = fakeSpawn(async (request) => {
      await send(request, exampleStream("0".repeat(64)));
      return { code: 0, signal: null };
    });
    await rejects(runTraced(script(box.script), box.options(fake.spawn)), (error: unknown) => {
      ok(error instanceof RunError);
      equal(
        error.message,
        "the program ran but the Panopticon collector never connected " +
          "(is PYTHONPATH ignored, e.g. python -I or -E?); no trace was written; " +
          "refused a connection to the event channel that did not present this run's secret " +
          "(it presented another secret, or none)",
      );
      equal(error.exitCode, 1);
      return true;
    });
    equal(await exists(box.output), false);
    deepEqual(await entries(box.tmp), []);
  });
});

Deno.test("runTraced() removes its private directory when the program is killed by a signal", async (t) => {
  // In a process of its own: SIGTERM is sent to Panopticon itself.
  const cases: [string, Deno.Signal, number][] = [
    ["SIGTERM sent to Panopticon, passed on to the program", "SIGTERM", 143],
    ["SIGKILL sent to the program", "SIGKILL", 137],
  ];
  for (const [name, signal, exitCode] of cases) {
    await t.step(name, async () => {
      deepEqual(await runScript("./_runner_killed.ts", signal), {
        exitCode,
        signal,
        // Killed with its connection open: the trace is cut short.
        complete: false,
        left: [],
      });
    });
  }
});

Deno.test("runTraced() runs a real interpreter with the user's arguments", async () => {
  await using box = await sandbox();
  // A stand-in collector: reports what the program will see, as one line.
  const collector = `
import json, os, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(os.environ.pop("PANOPTICON_CHANNEL"))
s.sendall((json.dumps({"kind": "hello", "argv": sys.argv,
  "secret": os.environ.pop("PANOPTICON_SECRET"),
  "engine": os.environ.pop("PANOPTICON_ENGINE")}) + "\\n").encode())
s.close()
`;
  let received = "";
  const convert: Convert = async (input, output) => {
    received = await new Response(input).text();
    await output.close();
    return fakeSummary();
  };
  await Deno.writeTextFile(box.script, "import sys\nsys.exit(int(sys.argv[1]))\n");
  const result = await runTraced(script(box.script, "7", "-o"), {
    python: { path: "python3", version: [3, 11, 0] },
    output: box.output,
    collectorSource: collector,
    convert,
    tempDir: box.tmp,
    handleSignals: false,
  });
  equal(result.exitCode, 7);
  const seen = JSON.parse(received);
  deepEqual(seen.argv, [box.script, "7", "-o"]);
  match(seen.secret, /^[0-9a-f]{64}$/);
  equal(seen.engine, "auto");
  deepEqual(await entries(box.tmp), []);
});
