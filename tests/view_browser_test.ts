/**
 * `panopticon view` with a real browser: a headless Chromium opens the
 * address `viewTrace` gives it, in a page of the Perfetto UI's origin
 * (`_chromium.ts`), which fetches the served trace as the UI does. Where
 * Chromium or playwright-core cannot be had, the test is ignored and says
 * why (`.ci/run` installs Chromium).
 */
import assert from "node:assert/strict";
import { toCatapult } from "../src/convert.ts";
import { viewTrace } from "../src/view.ts";
import type { PageResult } from "./_chromium.ts";

const DRIVER = new URL("./_chromium.ts", import.meta.url).pathname;

function driver(args: string[]): Deno.Command {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--no-lock", "--quiet", DRIVER, ...args],
    stdout: "piped",
    stderr: "piped",
  });
}

const check = driver(["--check"]).outputSync();
const missing = check.code === 0
  ? undefined
  : new TextDecoder().decode(check.stdout).trim() || new TextDecoder().decode(check.stderr).trim();
if (missing !== undefined) {
  console.log(
    `view_browser_test.ts: IGNORED, not passed: no headless Chromium to open the trace in: ${missing}`,
  );
}

async function sha256(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

Deno.test({
  name: "viewTrace() serves a real Chromium page of ui.perfetto.dev the trace's bytes, then exits",
  ignore: missing !== undefined,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "panopticon-view-browser-" });
    try {
      // A gzipped JSON trace: bytes of every value, as the UI gets them.
      const fixture = await Deno.open(new URL("./fixtures/threads.ndjson", import.meta.url));
      const path = `${dir}/threads.trace.json.gz`;
      const gzip = toCatapult(fixture.readable)
        .pipeThrough(new TextEncoderStream())
        .pipeThrough(new CompressionStream("gzip"));
      await Deno.writeFile(path, gzip);
      const bytes = await Deno.readFile(path);

      let page: Promise<Deno.CommandOutput> | undefined;
      const lines: string[] = [];
      const requests: string[] = [];
      const outcome = await viewTrace(path, {
        port: 0,
        print: (line) => lines.push(line),
        onRequest: ({ method, path, status }) => requests.push(`${method} ${path} ${status}`),
        open: (address) => {
          page = driver([address]).output();
          return Promise.resolve({ opened: true });
        },
      });
      assert.equal(outcome, "fetched", lines.join("\n"));
      const output = await page!;
      const text = new TextDecoder().decode(output.stdout);
      assert.equal(output.code, 0, `${text}${new TextDecoder().decode(output.stderr)}`);
      const result = JSON.parse(text) as PageResult;
      assert.equal(result.error, undefined);
      assert.deepEqual(
        [result.status, result.length, result.sha256],
        [200, bytes.length, await sha256(bytes)],
      );
      // Nothing else is served: not another path, not to another host name.
      assert.equal(result.otherPath, 404);
      assert.equal(result.otherHost, 421, `the server saw: ${requests.join(", ")}`);
      // And the server is gone.
      const url = /on (http:\/\/127\.0\.0\.1:\d+\/\S+) until/.exec(lines.join("\n"))![1]!;
      await assert.rejects(fetch(url), TypeError);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
