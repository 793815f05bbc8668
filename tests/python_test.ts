import { deepEqual, equal, match, ok, rejects } from "node:assert/strict";
import { findPython, MINIMUM_VERSION, probePython, PythonError } from "../src/python.ts";

const noEnv = () => undefined;

function pyenvPython(prefix: string): string | undefined {
  try {
    const root = new TextDecoder().decode(
      new Deno.Command("pyenv", { args: ["root"], stdout: "piped", stderr: "null" })
        .outputSync().stdout,
    ).trim();
    for (const entry of Deno.readDirSync(`${root}/versions`)) {
      if (entry.name.startsWith(prefix)) return `${root}/versions/${entry.name}/bin/python`;
    }
  } catch {
    // No pyenv here.
  }
  return undefined;
}

/** Writes an executable shell script into a fresh directory. */
async function fakeInterpreter(body: string): Promise<{ path: string; dir: string }> {
  const dir = await Deno.makeTempDir({ prefix: "panopticon-python-test-" });
  const path = `${dir}/python`;
  await Deno.writeTextFile(path, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
  return { path, dir };
}

async function rejectsWith(promise: Promise<unknown>, message: RegExp): Promise<void> {
  await rejects(promise, (error: unknown) => {
    ok(error instanceof PythonError, `not a PythonError: ${error}`);
    match(error.message, message);
    return true;
  });
}

Deno.test("findPython() finds python3 on PATH and probes it", async () => {
  const python = await findPython({ getEnv: noEnv });
  equal(python.path, "python3");
  equal(python.version.length, 3);
  ok(python.version[0] === 3 && python.version[1] >= MINIMUM_VERSION[1]);
  equal(python.implementation, "cpython");
  ok(python.executable.startsWith("/"), python.executable);
});

Deno.test("findPython() prefers --python, then PANOPTICON_PYTHON", async (t) => {
  const other = pyenvPython("3.8") ?? "python3";
  const env = (name: string) => name === "PANOPTICON_PYTHON" ? other : undefined;

  await t.step("PANOPTICON_PYTHON over PATH", async () => {
    equal((await findPython({ getEnv: env })).path, other);
  });
  await t.step("--python over PANOPTICON_PYTHON", async () => {
    equal((await findPython({ python: "python3", getEnv: env })).path, "python3");
  });
  await t.step("an empty PANOPTICON_PYTHON is unset", async () => {
    const empty = (name: string) => name === "PANOPTICON_PYTHON" ? "" : undefined;
    equal((await findPython({ getEnv: empty })).path, "python3");
  });
  await t.step("a chosen interpreter that is missing is an error, not a fallback", async () => {
    const missing = (name: string) =>
      name === "PANOPTICON_PYTHON" ? "/nonexistent/python" : undefined;
    await rejectsWith(findPython({ getEnv: missing }), /^cannot run "\/nonexistent\/python"/);
  });
});

Deno.test("findPython() tries each name on PATH in turn", async (t) => {
  await t.step("skips a missing name", async () => {
    const python = await findPython({
      getEnv: noEnv,
      candidates: ["panopticon-no-such-python", "python3"],
    });
    equal(python.path, "python3");
  });
  await t.step("says what to do when none is found", async () => {
    await rejectsWith(
      findPython({ getEnv: noEnv, candidates: ["panopticon-no-such-python"] }),
      /^Cannot find a Python interpreter \(tried panopticon-no-such-python on PATH\): pass --python to choose one$/,
    );
  });
});

Deno.test("probePython() rejects what it cannot use", async (t) => {
  await t.step("a missing path", async () => {
    await rejectsWith(
      probePython("/nonexistent/python"),
      /^cannot run "\/nonexistent\/python": No such file or directory$/,
    );
  });
  await t.step("a name not on PATH", async () => {
    await rejectsWith(
      probePython("panopticon-no-such-python"),
      /^cannot run "panopticon-no-such-python": not found on PATH$/,
    );
  });
  await t.step("a directory", async () => {
    await rejectsWith(probePython("/tmp"), /^cannot run "\/tmp": it is a directory$/);
  });
  await t.step("a file that is not executable", async () => {
    const dir = await Deno.makeTempDir();
    try {
      await Deno.writeTextFile(`${dir}/python`, "", { mode: 0o644 });
      await rejectsWith(probePython(`${dir}/python`), /: Permission denied$/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
  await t.step("an executable that is not Python (/bin/echo)", async () => {
    await rejectsWith(
      probePython("/bin/echo"),
      /^"\/bin\/echo" does not look like a Python interpreter: it answered: .*print\(json\.dumps/,
    );
  });
  await t.step("an interpreter that fails at start-up, quoting it", async () => {
    const fake = await fakeInterpreter("echo 'Fatal Python error: init_fs_encoding' >&2\nexit 1");
    try {
      await rejectsWith(
        probePython(fake.path),
        /does not look like a Python interpreter: it exited with status 1: Fatal Python error: init_fs_encoding$/,
      );
    } finally {
      await Deno.remove(fake.dir, { recursive: true });
    }
  });
  await t.step("an interpreter killed by a signal", async () => {
    const fake = await fakeInterpreter("kill -SEGV $$");
    try {
      await rejectsWith(
        probePython(fake.path),
        /it was killed by SIGSEGV and printed nothing$/,
      );
    } finally {
      await Deno.remove(fake.dir, { recursive: true });
    }
  });
  await t.step("an interpreter that never answers", async () => {
    const fake = await fakeInterpreter("exec sleep 10");
    try {
      await rejectsWith(
        probePython(fake.path, { timeoutMs: 300 }),
        /did not answer within 0.3s: is it a Python interpreter\?$/,
      );
    } finally {
      await Deno.remove(fake.dir, { recursive: true });
    }
  });
  await t.step("a fake Python 3.7", async () => {
    const fake = await fakeInterpreter(`echo '[[3, 7, 16], "cpython", "/x/python3.7"]'`);
    try {
      await rejectsWith(
        probePython(fake.path),
        /^Python 3\.7\.16 is too old: panopticon needs Python 3\.8 or newer/,
      );
    } finally {
      await Deno.remove(fake.dir, { recursive: true });
    }
  });
});

Deno.test("probePython() rejects a real interpreter older than 3.8", async (t) => {
  for (
    const [prefix, version] of [["3.7", /3\.7\.\d+/], ["3.6", /3\.6\.\d+/], [
      "2.7",
      /2\.7\.\d+/,
    ]] as const
  ) {
    const path = pyenvPython(prefix);
    await t.step({
      name: `Python ${prefix}`,
      ignore: path === undefined,
      fn: async () => {
        await rejectsWith(
          probePython(path!),
          new RegExp(
            `^Python ${version.source} is too old: panopticon needs Python 3\\.8 or newer`,
          ),
        );
      },
    });
  }
});

Deno.test("probePython() reads a wrapper's chatter before the answer", async () => {
  const fake = await fakeInterpreter(
    `echo "pyenv: activating"\necho '[[3, 12, 1], "cpython", "/opt/py/bin/python3.12"]'`,
  );
  try {
    deepEqual(await probePython(fake.path), {
      path: fake.path,
      version: [3, 12, 1],
      implementation: "cpython",
      executable: "/opt/py/bin/python3.12",
    });
  } finally {
    await Deno.remove(fake.dir, { recursive: true });
  }
});

Deno.test("probePython() ignores the user's PYTHONPATH and sitecustomize", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/sitecustomize.py`, "print('noise')\nraise SystemExit(3)\n");
    const before = Deno.env.get("PYTHONPATH");
    Deno.env.set("PYTHONPATH", dir);
    try {
      const python = await probePython("python3");
      equal(python.version[0], 3);
    } finally {
      if (before === undefined) Deno.env.delete("PYTHONPATH");
      else Deno.env.set("PYTHONPATH", before);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
