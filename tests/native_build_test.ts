/**
 * Tests of building the native collector (src/native_build.ts) with the
 * real compiler, on the newest Python present: a cold cache, two builds at
 * once, a broken cache entry, no compiler and no headers; and, end to end,
 * what the command does without a compiler (the Python collector, and one
 * line that says why) and with `--collector native` (an error).
 */
import assert from "node:assert/strict";
import { buildNative, NativeBuildError } from "../src/native_build.ts";
import { probePython, type PythonInfo } from "../src/python.ts";
import { TEST_PYTHONS } from "./_pythons.ts";
import { runPanopticon, tempDir } from "./_run.ts";

const NEWEST = TEST_PYTHONS[TEST_PYTHONS.length - 1]!;
const python: PythonInfo = await probePython(NEWEST.path);
console.log(`native build tests run on Python ${NEWEST.version}`);

/** Loads the module at `path` in the interpreter and calls its clock: it works. */
async function loads(path: string): Promise<boolean> {
  const code = "import sys, _imp\nclass S: name = '_panopticon_native'; origin = sys.argv[1]\n" +
    "m = _imp.create_dynamic(S); _imp.exec_dynamic(m); print(m.now() > 0)";
  const output = await new Deno.Command(python.path, { args: ["-c", code, path], stdout: "piped" })
    .output();
  return new TextDecoder().decode(output.stdout).trim() === "True";
}

const env = (vars: Record<string, string>) => (name: string) => vars[name];
const PATH = Deno.env.get("PATH") ?? "/usr/bin:/bin";

Deno.test("buildNative builds into a cold cache once, then loads from it", async () => {
  const cache = await tempDir();
  try {
    const first = await buildNative(python, { cacheDir: cache.path });
    assert.equal(first.built, true);
    assert.ok(first.path.startsWith(cache.path));
    assert.ok(first.path.endsWith(python.build!.extSuffix));
    assert.ok(await loads(first.path));
    const second = await buildNative(python, { cacheDir: cache.path });
    assert.deepEqual({ ...second, seconds: 0 }, { ...first, built: false, seconds: 0 });
    const manifest = JSON.parse(await Deno.readTextFile(`${first.path}.json`));
    assert.equal(manifest.python, NEWEST.version);
    assert.match(manifest.sha256, /^[0-9a-f]{64}$/);
  } finally {
    await cache.remove();
  }
});

Deno.test("the native collector compiles without a warning on every Python present", async () => {
  // -Wall -Wextra is the house rule; code of one version's engine only
  // (3.12's monitoring) is what a build on another version warns of.
  const cache = await tempDir();
  try {
    const strict = env({ CC: "gcc -Wall -Wextra -Werror", PATH });
    const built = await Promise.all(TEST_PYTHONS.map(async (each) => {
      const module = await buildNative(await probePython(each.path), {
        cacheDir: cache.path,
        getEnv: strict,
      });
      assert.equal(module.built, true);
      return each.version;
    }));
    console.log(`compiled with -Wall -Wextra -Werror for Python ${built.join(", ")}`);
  } finally {
    await cache.remove();
  }
});

Deno.test("buildNative is safe when two runs build at once", async () => {
  const cache = await tempDir();
  try {
    const [a, b] = await Promise.all([
      buildNative(python, { cacheDir: cache.path }),
      buildNative(python, { cacheDir: cache.path }),
    ]);
    assert.equal(a.path, b.path);
    assert.ok(await loads(a.path));
    const left = [...Deno.readDirSync(cache.path)].map((entry) => entry.name).sort();
    assert.equal(left.length, 2, `the module and its manifest, no temporary files: ${left}`);
    assert.equal((await buildNative(python, { cacheDir: cache.path })).built, false);
  } finally {
    await cache.remove();
  }
});

Deno.test("buildNative rebuilds a broken cache entry instead of loading it", async (t) => {
  const breakages: [string, (path: string) => Promise<void>][] = [
    ["a module cut short", async (path) => {
      const bytes = await Deno.readFile(path);
      await Deno.writeFile(path, bytes.subarray(0, bytes.length >> 1));
    }],
    ["a module with one byte changed", async (path) => {
      const bytes = await Deno.readFile(path);
      bytes[bytes.length >> 1] = bytes[bytes.length >> 1]! ^ 0xff;
      await Deno.writeFile(path, bytes);
    }],
    ["a missing manifest", (path) => Deno.remove(`${path}.json`)],
    ["a manifest that is not JSON", (path) => Deno.writeTextFile(`${path}.json`, "{")],
    ["a missing module", (path) => Deno.remove(path)],
  ];
  for (const [name, breakIt] of breakages) {
    await t.step(name, async () => {
      const cache = await tempDir();
      try {
        const built = await buildNative(python, { cacheDir: cache.path });
        await breakIt(built.path);
        const again = await buildNative(python, { cacheDir: cache.path });
        assert.equal(again.built, true, "rebuilt");
        assert.equal(again.path, built.path);
        assert.ok(await loads(again.path));
      } finally {
        await cache.remove();
      }
    });
  }
});

Deno.test("buildNative says what is missing", async (t) => {
  await t.step("no compiler on PATH and no CC", async () => {
    const cache = await tempDir();
    try {
      await assert.rejects(
        buildNative(python, { cacheDir: cache.path, getEnv: env({ PATH: "/nonexistent" }) }),
        (error) => {
          assert.ok(error instanceof NativeBuildError);
          assert.equal(error.problem, "no-compiler");
          assert.match(error.message, /^no C compiler \(set CC, or put cc, gcc or clang on PATH/);
          return true;
        },
      );
    } finally {
      await cache.remove();
    }
  });
  await t.step("a CC that is not there", async () => {
    const cache = await tempDir();
    try {
      await assert.rejects(
        buildNative(python, { cacheDir: cache.path, getEnv: env({ CC: "/nonexistent/cc" }) }),
        (error) =>
          error instanceof NativeBuildError && /cannot run the C compiler/.test(error.message),
      );
    } finally {
      await cache.remove();
    }
  });
  await t.step("no Python.h", async () => {
    const cache = await tempDir();
    try {
      const headless = { ...python, build: { ...python.build!, include: cache.path } };
      await assert.rejects(
        buildNative(headless, { cacheDir: cache.path, getEnv: env({ PATH }) }),
        (error) => {
          assert.ok(error instanceof NativeBuildError);
          assert.equal(error.problem, "no-headers");
          assert.match(
            error.message,
            /no Python\.h in .*install them \(python3\.\d+-dev or python3-dev/,
          );
          return true;
        },
      );
    } finally {
      await cache.remove();
    }
  });
  await t.step("a source that does not compile, quoting the compiler", async () => {
    const cache = await tempDir();
    try {
      await assert.rejects(
        buildNative(python, { cacheDir: cache.path, source: "this is not C;\n" }),
        (error) => {
          assert.ok(error instanceof NativeBuildError);
          assert.equal(error.problem, "failed");
          assert.match(error.message, /the C compiler .* failed on the native collector.*error/);
          return true;
        },
      );
    } finally {
      await cache.remove();
    }
  });
  await t.step("a free-threaded or unknown build", async () => {
    for (
      const other of [
        { ...python, build: { ...python.build!, freeThreaded: true } },
        { ...python, build: undefined },
        { ...python, implementation: "pypy" },
      ]
    ) {
      await assert.rejects(
        buildNative(other),
        (error) => error instanceof NativeBuildError && error.problem === "unsupported",
      );
    }
  });
});

/** The command, with no compiler on PATH and a cold cache. */
async function withoutCompiler(args: string[]) {
  const dir = await tempDir();
  try {
    await Deno.mkdir(`${dir.path}/bin`);
    await Deno.writeTextFile(`${dir.path}/hello.py`, "print('hello')\n");
    const outcome = await runPanopticon(
      ["--python", python.path, ...args, `${dir.path}/hello.py`],
      {
        cwd: dir.path,
        env: { PATH: `${dir.path}/bin`, CC: "", XDG_CACHE_HOME: `${dir.path}/cache` },
      },
    );
    const trace = await Deno.readTextFile(`${dir.path}/trace.json`).then(
      JSON.parse,
      () => undefined,
    );
    return { outcome, trace };
  } finally {
    await dir.remove();
  }
}

Deno.test("without a compiler the run goes on with the Python collector, and says why", async () => {
  const { outcome, trace } = await withoutCompiler(["-o", "trace.json"]);
  assert.equal(outcome.code, 0, outcome.stderr);
  assert.equal(outcome.stdout, "hello\n");
  const lines = outcome.stderr.split("\n");
  assert.match(
    lines[0]!,
    /^panopticon: the native collector cannot be built: no C compiler \(set CC, or put cc, gcc or clang on PATH.*\); recording with the Python collector, which slows the program down several times more/,
  );
  assert.match(outcome.stderr, /^panopticon: wrote trace\.json \(.*\) — .*python collector/m);
  assert.equal(trace?.otherData?.collector, "python");
});

Deno.test("--collector native without a compiler is a clear error", async () => {
  const { outcome, trace } = await withoutCompiler(["--collector", "native", "-o", "trace.json"]);
  assert.equal(outcome.code, 1);
  assert.equal(outcome.stdout, "", "the program did not run");
  assert.match(
    outcome.stderr,
    /^error: --collector native: the native collector cannot be built: no C compiler/,
  );
  assert.equal(trace, undefined);
});

Deno.test("panopticon build-native builds ahead of time and reports what it found", async () => {
  const dir = await tempDir();
  try {
    const run = (vars: Record<string, string>) =>
      runPanopticon(["build-native", "--python", python.path], {
        env: { XDG_CACHE_HOME: `${dir.path}/cache`, ...vars },
      });
    const built = await run({});
    assert.equal(built.code, 0, built.stderr);
    assert.match(
      built.stdout,
      new RegExp(
        `^panopticon: native collector for Python ${NEWEST.version.replaceAll(".", "\\.")} ` +
          `\\(.*\\): built in [\\d.]+ s with \\S+, headers from \\S+: ${dir.path}/cache/panopticon/`,
      ),
    );
    const again = await run({ PATH: "/nonexistent" });
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /: already built \(with /, "no compiler needed once built");
    const cold = await runPanopticon(["build-native", "--python", python.path], {
      env: { XDG_CACHE_HOME: `${dir.path}/other`, PATH: "/nonexistent", CC: "" },
    });
    assert.equal(cold.code, 1);
    assert.match(
      cold.stderr,
      /^error: cannot build the native collector for Python .*: no C compiler .*; without it, Panopticon records with its Python collector$/m,
    );
  } finally {
    await dir.remove();
  }
});
