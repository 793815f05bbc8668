/**
 * The collector's own pieces checked against the standard library and the
 * shared fixtures, in every interpreter present (tests/programs/
 * collector_checks.py does the work): the opcodes collector.py hard-codes,
 * both glob matchers (Python and C) against `fnmatch.fnmatchcase`, its
 * JSON writer against `json.loads`, and the native encoder against the
 * batch frames of tests/fixtures/native.stream, which the TypeScript
 * decoder is tested against too.
 */
import assert from "node:assert/strict";
import { buildNative } from "../src/native_build.ts";
import { probePython } from "../src/python.ts";
import { TEST_PYTHONS } from "./_pythons.ts";

const ROOT = new URL("..", import.meta.url).pathname;

console.log(`collector checks run on Python ${TEST_PYTHONS.map((p) => p.version).join(", ")}`);

for (const python of TEST_PYTHONS) {
  Deno.test(`the collector's pieces agree with the standard library on Python ${python.version}`, async (t) => {
    const native = await buildNative(await probePython(python.path));
    const output = await new Deno.Command(python.path, {
      args: [
        `${ROOT}tests/programs/collector_checks.py`,
        `${ROOT}collector.py`,
        native.path,
        `${ROOT}tests/fixtures`,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.ok(output.success, new TextDecoder().decode(output.stderr));
    const failures: Record<string, string[]> = JSON.parse(new TextDecoder().decode(output.stdout));
    for (const check of ["opcodes", "glob", "json", "batch"]) {
      await t.step(check, () => assert.deepEqual(failures[check], []));
    }
  });
}
