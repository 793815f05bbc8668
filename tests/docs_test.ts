/**
 * Keeps `docs/python-api.md` runnable: its complete example is the program
 * `tests/e2e_api_test.ts` checks, and its short example at the top runs,
 * under the command and in a plain `python` process, with the names it
 * leaves undefined filled in. On the newest Python present.
 */
import assert from "node:assert/strict";
import { oldestAndNewest } from "./_pythons.ts";
import { runPanopticon, runPython, tempDir } from "./_run.ts";
import { readTrace, slices } from "./_trace.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const PAGE = await Deno.readTextFile(`${ROOT}docs/python-api.md`);
const PYTHON = oldestAndNewest().at(-1)!;

/** The page's Python code blocks, in order. */
function pythonBlocks(markdown: string): string[] {
  return [...markdown.matchAll(/^```python\n([\s\S]*?)^```$/gm)].map((match) => match[1]!);
}

/** What the short example leaves undefined. */
const PRELUDE = `\
def handle_request():
    return sum([3, 5, 8])

k = "cart:42"
q = [1, 2, 3]
`;

async function writeProgram(dir: string, code: string): Promise<string> {
  const module = await runPanopticon(["python-module"]);
  assert.equal(module.code, 0, module.stderr);
  await Deno.writeTextFile(`${dir}/panopticon.py`, module.stdout);
  const program = `${dir}/example.py`;
  // `import panopticon` first, as in the page; then the missing names.
  await Deno.writeTextFile(
    program,
    code.replace("import panopticon\n", `import panopticon\n\n${PRELUDE}`),
  );
  return program;
}

Deno.test("docs/python-api.md: the complete example is tests/programs/api/checkout.py", async () => {
  const blocks = pythonBlocks(PAGE);
  const program = await Deno.readTextFile(`${ROOT}tests/programs/api/checkout.py`);
  // The file adds a docstring line that says where it comes from.
  const withoutDocstring = program.replace(/^""".*"""\n/, "");
  assert.ok(blocks.includes(withoutDocstring), "the page's example and checkout.py differ");
});

Deno.test(`docs/python-api.md: the short example runs (Python ${PYTHON.version})`, async (t) => {
  const [short] = pythonBlocks(PAGE);
  assert.ok(short?.includes("panopticon.trace(") && short.includes("@panopticon.traced("));

  await t.step("under the command: the block, the counter, the instant and the span", async () => {
    const dir = await tempDir();
    try {
      const program = await writeProgram(dir.path, short!);
      const output = `${dir.path}/t.json`;
      const outcome = await runPanopticon(["--python", PYTHON.path, "-o", output, program], {
        cwd: dir.path,
      });
      assert.equal(outcome.code, 0, outcome.stderr);
      const trace = await readTrace(output);
      assert.equal(slices(trace, "handle_request").length, 1);
      assert.equal(slices(trace, "phase 2").length, 1);
      const marks = trace.traceEvents.filter((e) =>
        e.ph === "i" || (e.ph === "C" && e.cat !== "cpu")
      );
      assert.deepEqual(marks.map((m) => [m.name, m.args]), [
        ["cache miss", { key: "cart:42" }],
        ["queue depth", { value: 3 }],
      ]);
    } finally {
      await dir.remove();
    }
  });

  await t.step("in a plain python process: the block's trace", async () => {
    const dir = await tempDir();
    try {
      const program = await writeProgram(dir.path, short!);
      await Deno.mkdir(`${dir.path}/bin`);
      await Deno.writeTextFile(
        `${dir.path}/bin/panopticon`,
        `#!/bin/sh\nexec "${Deno.execPath()}" run -A "${ROOT}main.ts" "$@"\n`,
        { mode: 0o755 },
      );
      const outcome = await runPython(PYTHON.path, [program], {
        cwd: dir.path,
        env: { PATH: `${dir.path}/bin:${Deno.env.get("PATH") ?? ""}` },
      });
      assert.equal(outcome.code, 0, outcome.stderr);
      const trace = await readTrace(`${dir.path}/checkout.json`);
      assert.equal(slices(trace, "handle_request").length, 1);
      assert.equal(slices(trace, "sum").length, 1);
    } finally {
      await dir.remove();
    }
  });
});
