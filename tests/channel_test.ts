import { deepEqual, equal, ok, rejects, throws } from "node:assert/strict";
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

/** Admits a connection whose first line is `{"secret":"right"}`. */
function admitRight(line: Uint8Array): string | undefined {
  return new TextDecoder().decode(line) === '{"secret":"right"}' ? undefined : "a wrong secret";
}

async function connect(path: string, text?: string): Promise<Deno.UnixConn> {
  const conn = await Deno.connect({ transport: "unix", path });
  if (text !== undefined) await conn.write(encoder.encode(text));
  return conn;
}

/** Whether the other end closed `conn` (a read finds the end, or fails). */
async function closedByPeer(conn: Deno.UnixConn): Promise<boolean> {
  return await conn.read(new Uint8Array(16)).then((n) => n === null, () => true);
}

Deno.test("Channel.accept() refuses a connection that `admit` refuses and admits the right one", async () => {
  await using channel = await openChannel();
  const refused: string[] = [];
  const accepting = channel.accept({ admit: admitRight, onRefused: (r) => refused.push(r) });
  const rogue = await connect(channel.path, '{"secret":"wrong"}\n{"kind":"x"}\n');
  const right = await connect(channel.path, '{"secret":"right"}\n{"kind":"y"}\n');
  right.close();
  const stream = await accepting;
  ok(stream !== undefined);
  equal(await new Response(stream).text(), '{"secret":"right"}\n{"kind":"y"}\n');
  deepEqual(refused, ["a wrong secret"]);
  ok(await closedByPeer(rogue), "the refused connection is closed");
  rogue.close();
});

Deno.test("Channel.accept() admits past a connection that stays silent", async () => {
  await using channel = await openChannel();
  const refused: string[] = [];
  const accepting = channel.accept({ admit: admitRight, onRefused: (r) => refused.push(r) });
  const silent = await connect(channel.path);
  await new Promise((resolve) => setTimeout(resolve, 20));
  const right = await connect(channel.path, '{"secret":"right"}\n');
  right.close();
  const stream = await accepting;
  ok(stream !== undefined, "the silent connection holds up nothing");
  equal(await new Response(stream).text(), '{"secret":"right"}\n');
  deepEqual(refused, ["its first line had not come when the channel stopped listening"]);
  ok(await closedByPeer(silent), "the silent connection is closed");
  silent.close();
});

Deno.test("Channel.accept() streams every byte of the admitted connection, its first line included", async () => {
  await using channel = await openChannel();
  const body = Array.from({ length: 5000 }, (_, i) => `{"kind":"line","n":${i}}\n`).join("");
  const writing = (async () => {
    // The first line comes in pieces, the last one with the start of the body.
    const conn = await connect(channel.path, '{"secret":');
    await new Promise((resolve) => setTimeout(resolve, 20));
    await conn.write(encoder.encode('"right"'));
    await new Promise((resolve) => setTimeout(resolve, 20));
    const rest = encoder.encode(`}\n${body}`);
    for (let written = 0; written < rest.length;) {
      written += await conn.write(rest.subarray(written));
    }
    conn.close();
  })();
  const stream = await channel.accept({ admit: admitRight });
  ok(stream !== undefined);
  equal(await new Response(stream).text(), `{"secret":"right"}\n${body}`);
  await writing;
});

Deno.test("Channel.accept() refuses a connection without a whole first line", async (t) => {
  const cases: [string, string, string][] = [
    [
      "a line longer than maxFirstLine",
      `{"secret":"${"x".repeat(100)}"}\n`,
      "longer than 64 bytes",
    ],
    ["a line longer than maxFirstLine, unfinished", "x".repeat(65), "longer than 64 bytes"],
    ["a closed connection", "", "closed before its first line ended"],
    ["a line cut short", '{"secret":"ri', "closed before its first line ended"],
  ];
  for (const [name, sent, reason] of cases) {
    await t.step(name, async () => {
      await using channel = await openChannel();
      const refused: string[] = [];
      const accepting = channel.accept({
        admit: () => undefined,
        onRefused: (r) => refused.push(r),
        maxFirstLine: 64,
      });
      const rogue = await connect(channel.path, sent);
      if (sent.endsWith("\n") || sent === "" || !sent.startsWith("x")) rogue.close();
      const right = await connect(channel.path, '{"secret":"right"}\n');
      right.close();
      equal(await new Response(await accepting).text(), '{"secret":"right"}\n');
      equal(refused.length, 1);
      ok(refused[0]!.includes(reason), refused[0]);
      if (sent.startsWith("x")) rogue.close();
    });
  }
});

Deno.test("Channel.accept() vets the connections made before `until` settled", async (t) => {
  // The child connected, wrote and exited, and the exit is seen first.
  await t.step("a refused connection, then the right one", async () => {
    await using channel = await openChannel();
    (await connect(channel.path, '{"secret":"wrong"}\n')).close();
    (await connect(channel.path, '{"secret":"right"}\n{}\n')).close();
    const refused: string[] = [];
    const stream = await channel.accept({
      until: Promise.resolve(),
      admit: admitRight,
      onRefused: (r) => refused.push(r),
    });
    ok(stream !== undefined, "the right connection is not lost");
    equal(await new Response(stream).text(), '{"secret":"right"}\n{}\n');
    // Accepted after `until` settled, the wrong one is reported only if its
    // line is read before the right one is admitted (in practice, always):
    // otherwise it is closed like a probe.
    ok(refused.length <= 1 && refused.every((r) => r === "a wrong secret"), String(refused));
  });
  await t.step("a refused connection alone", async () => {
    await using channel = await openChannel();
    (await connect(channel.path, '{"secret":"wrong"}\n')).close();
    const refused: string[] = [];
    const stream = await channel.accept({
      until: Promise.resolve(),
      admit: admitRight,
      onRefused: (r) => refused.push(r),
    });
    equal(stream, undefined);
    deepEqual(refused, ["a wrong secret"]);
  });
  await t.step("a connection that passes itself off as the probe", async () => {
    await using channel = await openChannel();
    (await connect(channel.path, "\0")).close();
    (await connect(channel.path, '{"secret":"right"}\n')).close();
    const stream = await channel.accept({ until: Promise.resolve(), admit: admitRight });
    equal(await new Response(stream).text(), '{"secret":"right"}\n');
  });
  await t.step("a silent connection", async () => {
    await using channel = await openChannel();
    const silent = await connect(channel.path);
    const stream = await channel.accept({ until: Promise.resolve(), admit: admitRight });
    equal(stream, undefined, "given up on once the queue is drained");
    ok(await closedByPeer(silent), "the silent connection is closed");
    silent.close();
  });
});

Deno.test("Channel.accept() can be called only once", async () => {
  await using channel = await openChannel();
  const first = channel.accept({ until: Promise.resolve() });
  await rejects(channel.accept(), /only once/);
  equal(await first, undefined);
});

Deno.test("Channel.listen() admits one connection per process, until stopped", async () => {
  await using channel = await openChannel();
  const refused: string[] = [];
  const listening = channel.listen({ admit: admitRight, onRefused: (r) => refused.push(r) });
  const reader = listening.connections.getReader();
  (await connect(channel.path, '{"secret":"right"}\nfirst\n')).close();
  const first = await reader.read();
  equal(await new Response(first.value).text(), '{"secret":"right"}\nfirst\n');
  // Still listening: a later process (a child of the first) connects too.
  (await connect(channel.path, '{"secret":"wrong"}\n')).close();
  (await connect(channel.path, '{"secret":"right"}\nsecond\n')).close();
  const second = await reader.read();
  equal(await new Response(second.value).text(), '{"secret":"right"}\nsecond\n');
  // Made before stop(): accepted, though stop() comes before it is read.
  const third = await connect(channel.path, '{"secret":"right"}\nthird\n');
  listening.stop();
  listening.stop(); // harmless
  third.close();
  const last = await reader.read();
  equal(await new Response(last.value).text(), '{"secret":"right"}\nthird\n');
  equal((await reader.read()).done, true, "the connections end once listening has stopped");
  deepEqual(refused, ["a wrong secret"]);
  await rejects(Deno.connect({ transport: "unix", path: channel.path }), "no longer listening");
});

Deno.test("Channel.listen() gives up on a silent connection once stopped", async () => {
  await using channel = await openChannel();
  const refused: string[] = [];
  const listening = channel.listen({ admit: admitRight, onRefused: (r) => refused.push(r) });
  const silent = await connect(channel.path);
  listening.stop();
  const all = await Array.fromAsync(listening.connections);
  equal(all.length, 0);
  deepEqual(refused, ["its first line had not come when the channel stopped listening"]);
  ok(await closedByPeer(silent), "the silent connection is closed");
  silent.close();
});

Deno.test("Channel.listen() and accept() are for one use", async () => {
  await using channel = await openChannel();
  const listening = channel.listen();
  throws(() => channel.listen(), /only once/);
  await rejects(channel.accept(), /only once/);
  listening.stop();
  equal((await Array.fromAsync(listening.connections)).length, 0);
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
