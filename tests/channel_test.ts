import { equal, ok, rejects } from "node:assert/strict";
import { openChannel } from "../src/channel.ts";

const encoder = new TextEncoder();

async function exists(path: string): Promise<boolean> {
  return await Deno.lstat(path).then(() => true, () => false);
}

Deno.test("openChannel() makes a private directory with the socket inside", async () => {
  const channel = await openChannel();
  try {
    const info = await Deno.stat(channel.dir);
    ok(info.isDirectory);
    equal(info.mode! & 0o777, 0o700);
    equal(channel.path, `${channel.dir}/channel.sock`);
    ok((await Deno.lstat(channel.path)).isSocket);
  } finally {
    await channel.close();
  }
  equal(await exists(channel.dir), false, "close() removes the directory");
  await channel.close(); // a second close is harmless
});

Deno.test("Channel.accept() streams the bytes of one connection", async () => {
  await using channel = await openChannel();
  const lines = Array.from({ length: 2000 }, (_, i) => `{"kind":"line","n":${i}}\n`).join("");
  const writing = (async () => {
    const conn = await Deno.connect({ transport: "unix", path: channel.path });
    await conn.write(encoder.encode(lines.slice(0, 10)));
    await new Promise((resolve) => setTimeout(resolve, 20));
    const rest = encoder.encode(lines.slice(10));
    for (let written = 0; written < rest.length;) {
      written += await conn.write(rest.subarray(written));
    }
    conn.close();
  })();
  const stream = await channel.accept();
  ok(stream !== undefined);
  equal(await new Response(stream).text(), lines);
  await writing;
});

Deno.test("Channel.accept() stops listening after the first connection", async () => {
  await using channel = await openChannel();
  const first = await Deno.connect({ transport: "unix", path: channel.path });
  const stream = await channel.accept();
  ok(stream !== undefined);
  await rejects(Deno.connect({ transport: "unix", path: channel.path }));
  first.close();
  equal(await new Response(stream).text(), "");
});

Deno.test("Channel.accept() gives up once `until` settles without a connection", async (t) => {
  await t.step("a resolved `until`", async () => {
    await using channel = await openChannel();
    equal(await channel.accept({ until: Promise.resolve({ code: 0 }) }), undefined);
  });
  await t.step("a rejected `until`", async () => {
    await using channel = await openChannel();
    equal(await channel.accept({ until: Promise.reject(new Error("gone")) }), undefined);
  });
  await t.step("a later `until`", async () => {
    await using channel = await openChannel();
    const until = new Promise((resolve) => setTimeout(resolve, 50));
    equal(await channel.accept({ until }), undefined);
  });
});

Deno.test("Channel.accept() still finds a connection made before `until` settled", async (t) => {
  // The child connected, wrote and exited, and the exit is seen first.
  for (const payload of ["", '{"kind":"hello"}\n', "\n\n{}\n"]) {
    await t.step(JSON.stringify(payload), async () => {
      await using channel = await openChannel();
      const conn = await Deno.connect({ transport: "unix", path: channel.path });
      if (payload !== "") await conn.write(encoder.encode(payload));
      conn.close();
      const stream = await channel.accept({ until: Promise.resolve() });
      ok(stream !== undefined, "the connection is not lost");
      equal(await new Response(stream).text(), payload);
    });
  }
});

Deno.test("Channel.accept() can be called only once", async () => {
  await using channel = await openChannel();
  const first = channel.accept({ until: Promise.resolve() });
  await rejects(channel.accept(), /only once/);
  equal(await first, undefined);
});

Deno.test("openChannel() falls back to /tmp when the socket path would be too long", async () => {
  const base = await Deno.makeTempDir();
  const deep = `${base}/${"d".repeat(120)}`;
  await Deno.mkdir(deep);
  try {
    await using channel = await openChannel({ tempDir: deep });
    ok(channel.dir.startsWith("/tmp/panopticon-"), channel.dir);
    const conn = await Deno.connect({ transport: "unix", path: channel.path });
    conn.close();
    ok(await channel.accept() !== undefined);
  } finally {
    await Deno.remove(base, { recursive: true });
  }
});
