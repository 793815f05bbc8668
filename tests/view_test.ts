import assert from "node:assert/strict";
import {
  PortTakenError,
  servedName,
  serveTrace,
  systemBrowser,
  viewTrace,
  viewUrl,
} from "../src/view.ts";

const UI = "https://ui.perfetto.dev";

async function traceFile(name = "run.json", text = '{"traceEvents":[]}\n') {
  const dir = await Deno.makeTempDir({ prefix: "panopticon-view-" });
  const path = `${dir}/${name}`;
  await Deno.writeTextFile(path, text);
  return { path, remove: () => Deno.remove(dir, { recursive: true }) };
}

/** A raw HTTP/1.1 request, for headers fetch() does not let a caller set (Host). */
async function rawRequest(port: number, head: string): Promise<string> {
  const connection = await Deno.connect({ hostname: "127.0.0.1", port });
  await connection.write(new TextEncoder().encode(`${head}\r\nConnection: close\r\n\r\n`));
  let text = "";
  const decoder = new TextDecoder();
  for await (const chunk of connection.readable) text += decoder.decode(chunk, { stream: true });
  return text;
}

const settled = (promise: Promise<unknown>) =>
  Promise.race([
    promise.then(() => true),
    new Promise((resolve) => setTimeout(resolve, 50, false)),
  ]);

Deno.test("serveTrace() serves the file to the UI's origin, once, and nothing else", async (t) => {
  const file = await traceFile("run.json", "x".repeat(200_000));
  const requests: string[] = [];
  const server = await serveTrace(file.path, {
    port: 0,
    onRequest: ({ method, path, status }) => requests.push(`${method} ${path} ${status}`),
  });
  try {
    assert.equal(server.url, `http://127.0.0.1:${server.port}/run.json`);

    await t.step("another path: 404", async () => {
      const response = await fetch(new URL("/status", server.url), { headers: { origin: UI } });
      assert.equal(response.status, 404);
      assert.equal(await response.text(), "not found\n");
    });
    await t.step("another host name: 421, even for the file", async () => {
      const port = server.port;
      const reply = await rawRequest(
        port,
        `GET /run.json HTTP/1.1\r\nHost: rebound.example:${port}`,
      );
      assert.match(reply, /^HTTP\/1\.1 421 /);
      assert.ok(!reply.includes("xxxx"));
    });
    await t.step("another origin, or a cross-site page without one: 403", async () => {
      const other = await fetch(server.url, { headers: { origin: "https://evil.example" } });
      assert.equal(other.status, 403);
      assert.match(await other.text(), /only https:\/\/ui\.perfetto\.dev may fetch this trace/);
      const noCors = await fetch(server.url, { headers: { "sec-fetch-site": "cross-site" } });
      assert.equal(noCors.status, 403);
      await noCors.body?.cancel();
    });
    await t.step("a preflight, private network access included", async () => {
      const response = await fetch(server.url, {
        method: "OPTIONS",
        headers: {
          origin: UI,
          "access-control-request-method": "GET",
          "access-control-request-private-network": "true",
        },
      });
      assert.equal(response.status, 204);
      assert.equal(response.headers.get("access-control-allow-origin"), UI);
      assert.equal(response.headers.get("access-control-allow-private-network"), "true");
      assert.match(response.headers.get("access-control-allow-methods")!, /GET/);
    });
    await t.step("HEAD and POST do not count as fetching it", async () => {
      const head = await fetch(server.url, { method: "HEAD", headers: { origin: UI } });
      assert.equal(head.status, 200);
      assert.equal(head.headers.get("content-length"), "200000");
      const post = await fetch(server.url, { method: "POST", headers: { origin: UI } });
      assert.equal(post.status, 405);
      await post.body?.cancel();
      assert.equal(await settled(server.fetched), false);
    });
    await t.step("a GET from the UI gets the file's bytes, and the server knows", async () => {
      const response = await fetch(server.url, { headers: { origin: UI } });
      assert.equal(response.status, 200);
      assert.equal(response.headers.get("access-control-allow-origin"), UI);
      assert.equal(await response.text(), "x".repeat(200_000));
      assert.equal(await settled(server.fetched), true);
    });
    await t.step("it listens on the loopback interface only", async () => {
      const address = Deno.networkInterfaces().find((i) =>
        i.family === "IPv4" && !i.address.startsWith("127.")
      );
      if (address === undefined) {
        console.log("  no interface but loopback here: nothing else to try to connect to");
        return;
      }
      await assert.rejects(
        Deno.connect({ hostname: address.address, port: server.port }),
        Deno.errors.ConnectionRefused,
      );
    });
  } finally {
    await server.close();
    await file.remove();
  }
  assert.deepEqual(requests, [
    "GET /status 404",
    "GET /run.json 421",
    "GET /run.json 403",
    "GET /run.json 403",
    "OPTIONS /run.json 204",
    "HEAD /run.json 200",
    "POST /run.json 405",
    "GET /run.json 200",
  ]);
  await assert.rejects(fetch(server.url), TypeError, "closed: connections are refused");
});

Deno.test("serveTrace() says what holds a port that is taken", async () => {
  const file = await traceFile();
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const port = (listener.addr as Deno.NetAddr).port;
    await assert.rejects(serveTrace(file.path, { port }), (error: unknown) => {
      assert.ok(error instanceof PortTakenError);
      assert.equal(error.port, port);
      // This very process holds it, which /proc tells on Linux.
      if (Deno.build.os === "linux") {
        assert.match(error.owner ?? "", new RegExp(`^process ${Deno.pid} \\(.*deno`));
      }
      assert.match(error.message, new RegExp(`^port ${port} on 127\\.0\\.0\\.1 is taken by `));
      return true;
    });
  } finally {
    listener.close();
    await file.remove();
  }
});

Deno.test("servedName() and viewUrl() make an address the UI takes as it is", () => {
  assert.equal(servedName("/tmp/my run (2).json.gz"), "my_run__2_.json.gz");
  assert.equal(servedName("a/b/trace.pftrace"), "trace.pftrace");
  assert.equal(
    viewUrl("http://127.0.0.1:9001/run.json"),
    "https://ui.perfetto.dev/#!/?url=http://127.0.0.1:9001/run.json",
  );
});

Deno.test("viewTrace() opens the browser, waits for the fetch, and stops", async (t) => {
  const file = await traceFile("app.trace.json");
  try {
    await t.step("with a browser: prints the address, ends once the UI has the trace", async () => {
      const lines: string[] = [];
      const opened: string[] = [];
      const done = viewTrace(file.path, {
        port: 0,
        print: (line) => lines.push(line),
        open: (url) => {
          opened.push(url);
          // The UI fetches what the address names.
          const traceUrl = new URL(url).hash.replace(/^#!\/\?url=/, "");
          fetch(traceUrl, { headers: { origin: UI } }).then((r) => r.text());
          return Promise.resolve({ opened: true });
        },
      });
      assert.equal(await done, "fetched");
      assert.match(
        opened[0]!,
        /^https:\/\/ui\.perfetto\.dev\/#!\/\?url=http:\/\/127\.0\.0\.1:\d+\/app\.trace\.json$/,
      );
      assert.equal(lines[0], `opened ${opened[0]}`);
      assert.match(lines[1]!, /until the UI has fetched it \(Ctrl-C to stop\)/);
      assert.equal(lines.at(-1), "the UI has the trace; no longer serving it");
    });
    await t.step("without one: the address, and the ssh -L line; stops on a signal", async () => {
      const lines: string[] = [];
      const stop = new AbortController();
      const done = viewTrace(file.path, {
        port: 0,
        print: (line) => lines.push(line),
        open: () =>
          Promise.resolve({ opened: false, reason: "this is an SSH session without a display" }),
        sshTarget: "ada@build-7",
        signal: stop.signal,
      });
      while (lines.length < 3) await new Promise((resolve) => setTimeout(resolve, 5));
      stop.abort();
      assert.equal(await done, "stopped");
      assert.match(
        lines[0]!,
        /^cannot start a browser \(this is an SSH session without a display\): open this address in a browser: https:\/\/ui\.perfetto\.dev\/#!\/\?url=http:\/\/127\.0\.0\.1:(\d+)\/app\.trace\.json$/,
      );
      const port = /127\.0\.0\.1:(\d+)/.exec(lines[0]!)![1];
      assert.equal(
        lines[1],
        `on another machine, first run there: ssh -L ${port}:127.0.0.1:${port} ada@build-7, then open the address in its browser`,
      );
      assert.equal(lines.at(-1), "stopped serving");
    });
  } finally {
    await file.remove();
  }
});

Deno.test("systemBrowser() knows when there is nowhere to show a browser", async (t) => {
  await t.step("no display", async () => {
    assert.deepEqual(await systemBrowser({}, "linux")("https://ui.perfetto.dev"), {
      opened: false,
      reason: "there is no display (DISPLAY and WAYLAND_DISPLAY are not set)",
    });
  });
  await t.step("over SSH", async () => {
    const env = { SSH_CONNECTION: "10.0.0.2 50000 10.0.0.1 22" };
    assert.deepEqual(await systemBrowser(env, "linux")("https://ui.perfetto.dev"), {
      opened: false,
      reason: "this is an SSH session without a display",
    });
  });
});
