/**
 * Opening a trace in the Perfetto UI in one command: the trace is served
 * on the loopback interface, to the UI only, until the UI has fetched it
 * ({@linkcode serveTrace}), and the browser is pointed at the UI with the
 * trace's address ({@linkcode viewTrace}).
 *
 * ui.perfetto.dev fetches a trace given in its `url` parameter, and its
 * content security policy lets it fetch from `http://127.0.0.1:9001` only
 * (the port of Perfetto's own trace processor), with CORS: the response
 * must allow its origin.
 *
 * @module
 */

import { basename } from "node:path";

/** The port ui.perfetto.dev may fetch traces from. */
export const VIEW_PORT = 9001;

/** The Perfetto UI. */
export const PERFETTO_UI = "https://ui.perfetto.dev";

/** The port is in use: `owner` says by what, when it could be told. */
export class PortTakenError extends Error {
  constructor(readonly port: number, readonly owner: string | undefined) {
    super(
      `port ${port} on 127.0.0.1 is taken${owner === undefined ? "" : ` by ${owner}`}: ` +
        `the Perfetto UI fetches traces from that port only, so stop ${
          owner === undefined ? "what listens there" : "it"
        }${
          owner === undefined ? ` (lsof -i :${port} or ss -ltnp tells what that is)` : ""
        } and try again`,
    );
    this.name = "PortTakenError";
  }
}

/** Options of {@linkcode serveTrace}. */
export interface ServeTraceOptions {
  /**
   * The port, on 127.0.0.1; 0 lets the system choose.
   *
   * @default {9001}
   */
  port?: number;
  /**
   * The origin whose pages may read the trace (CORS).
   *
   * @default {"https://ui.perfetto.dev"}
   */
  allowOrigin?: string;
  /**
   * Told of each request: its method, path and the status it got.
   *
   * @default {undefined}
   */
  onRequest?: (request: { method: string; path: string; status: number }) => void;
}

/** A trace being served: see {@linkcode serveTrace}. */
export interface TraceServer {
  /** Where the trace is: `http://127.0.0.1:9001/NAME`. */
  readonly url: string;
  /** The port it listens on. */
  readonly port: number;
  /** Resolves when a client has read the whole file. */
  readonly fetched: Promise<void>;
  /** Stops serving (what is being sent is finished first); resolves once stopped. */
  close(): Promise<void>;
}

/**
 * Serves the file at `path` on `http://127.0.0.1:PORT/NAME`, NAME being
 * its base name (characters other than letters, digits, `.`, `_` and `-`
 * made `_`), until {@linkcode TraceServer.close}.
 *
 * Only that path is served, to a `GET` (or `HEAD`) whose `Host` is the
 * server itself (`127.0.0.1:PORT` or `localhost:PORT`, so that a name that
 * resolves to 127.0.0.1 cannot be used to read it from a web page), and
 * only to `allowOrigin` among cross-site requests of a browser (with a
 * CORS header for it, and an answer to a preflight, private network
 * access included); everything else gets a 4xx and no byte of the file.
 * The file is read when it is asked for, not before.
 *
 * @throws {PortTakenError} when the port is in use.
 *
 * @example
 * ```ts
 * import { serveTrace } from "@panopticon/panopticon";
 * import assert from "node:assert/strict";
 *
 * const path = await Deno.makeTempFile({ suffix: ".json" });
 * await Deno.writeTextFile(path, '{"traceEvents":[]}');
 * const server = await serveTrace(path, { port: 0 });
 * const response = await fetch(server.url, { headers: { origin: "https://ui.perfetto.dev" } });
 * assert.equal(response.headers.get("access-control-allow-origin"), "https://ui.perfetto.dev");
 * assert.equal(await response.text(), '{"traceEvents":[]}');
 * await server.fetched;
 * assert.equal((await fetch(new URL("/other", server.url))).status, 404);
 * await server.close();
 * await Deno.remove(path);
 * ```
 */
export async function serveTrace(
  path: string,
  options: ServeTraceOptions = {},
): Promise<TraceServer> {
  const info = await Deno.stat(path);
  if (!info.isFile) throw new Error(`"${path}" is not a file`);
  const name = servedName(path);
  const allowOrigin = options.allowOrigin ?? PERFETTO_UI;
  const requested = options.port ?? VIEW_PORT;
  let port = requested;
  let resolveFetched!: () => void;
  const fetched = new Promise<void>((resolve) => resolveFetched = resolve);
  const cors = {
    "access-control-allow-origin": allowOrigin,
    "vary": "Origin",
  };

  const respond = (request: Request): Response | Promise<Response> => {
    const url = new URL(request.url);
    const status = (code: number, text: string, headers: HeadersInit = {}) =>
      new Response(`${text}\n`, { status: code, headers: { ...cors, ...headers } });
    const host = request.headers.get("host");
    if (host !== `127.0.0.1:${port}` && host !== `localhost:${port}`) {
      return status(421, "this server answers to 127.0.0.1 only");
    }
    if (url.pathname !== `/${name}`) return status(404, "not found");
    const origin = request.headers.get("origin");
    const site = request.headers.get("sec-fetch-site");
    // A browser's cross-site request comes from a page: only the UI's may
    // have the file. A request typed in the address bar, or made by a
    // program, has no such site.
    const crossSite = site === "cross-site" || site === "same-site";
    if ((origin !== null && origin !== allowOrigin) || (crossSite && origin !== allowOrigin)) {
      return status(403, `only ${allowOrigin} may fetch this trace`);
    }
    if (request.method === "OPTIONS") {
      const asked = request.headers.get("access-control-request-headers");
      return new Response(null, {
        status: 204,
        headers: {
          ...cors,
          "access-control-allow-methods": "GET, HEAD",
          ...(asked === null ? {} : { "access-control-allow-headers": asked }),
          "access-control-allow-private-network": "true",
          "access-control-max-age": "60",
        },
      });
    }
    if (request.method !== "GET" && request.method !== "HEAD") {
      return status(405, "only GET", { allow: "GET, HEAD, OPTIONS" });
    }
    return sendFile(request.method === "HEAD");
  };

  const sendFile = async (head: boolean): Promise<Response> => {
    const file = await Deno.open(path);
    const size = (await file.stat()).size;
    const headers = {
      ...cors,
      "content-type": name.endsWith(".json") ? "application/json" : "application/octet-stream",
      "content-length": String(size),
      "cache-control": "no-store",
      "access-control-allow-private-network": "true",
    };
    if (head) {
      file.close();
      return new Response(null, { headers });
    }
    // Fetched once the last byte has been read off the file for the client
    // (the server need not ask the file for its end after Content-Length
    // bytes); closing the server then waits for them to be sent.
    let sent = 0;
    const body = file.readable.pipeThrough(
      new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, controller) {
          controller.enqueue(chunk);
          sent += chunk.length;
          if (sent >= size) resolveFetched();
        },
        flush: () => {
          if (sent >= size) resolveFetched();
        },
      }),
    );
    return new Response(body, { headers });
  };

  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve({
      hostname: "127.0.0.1",
      port: requested,
      onListen: () => {},
      onError: () => new Response("internal error\n", { status: 500 }),
    }, async (request) => {
      const response = await respond(request);
      options.onRequest?.({
        method: request.method,
        path: new URL(request.url).pathname,
        status: response.status,
      });
      return response;
    });
  } catch (error) {
    if (error instanceof Deno.errors.AddrInUse) {
      throw new PortTakenError(requested, await portOwner(requested));
    }
    throw error;
  }
  port = server.addr.port;
  let closing: Promise<void> | undefined;
  return {
    url: `http://127.0.0.1:${port}/${name}`,
    port,
    fetched,
    close: () => closing ??= server.shutdown(),
  };
}

/** The name a trace is served under: its base name, with only URL-safe characters. */
export function servedName(path: string): string {
  const name = basename(path).replace(/[^A-Za-z0-9._-]/g, "_");
  return name === "" || name === "." || name === ".." ? "trace" : name;
}

/** The Perfetto UI's address that opens the trace at `url`. */
export function viewUrl(url: string, ui: string = PERFETTO_UI): string {
  return `${ui}/#!/?url=${url}`;
}

/**
 * What listens on a TCP port of this machine, when it can be told: on
 * Linux from `/proc` (the socket's inode, then the process that holds it),
 * else from `lsof`.
 */
export async function portOwner(port: number): Promise<string | undefined> {
  try {
    const inodes = new Set<string>();
    for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
      const text = await Deno.readTextFile(table).catch(() => "");
      for (const line of text.split("\n").slice(1)) {
        const fields = line.trim().split(/\s+/);
        const local = fields[1];
        // State 0A is LISTEN.
        if (local === undefined || fields[3] !== "0A") continue;
        if (parseInt(local.split(":")[1] ?? "", 16) === port) inodes.add(fields[9] ?? "");
      }
    }
    if (inodes.size > 0) {
      for await (const entry of Deno.readDir("/proc")) {
        if (!/^\d+$/.test(entry.name)) continue;
        let fds: AsyncIterable<Deno.DirEntry>;
        try {
          fds = Deno.readDir(`/proc/${entry.name}/fd`);
          for await (const fd of fds) {
            const target = await Deno.readLink(`/proc/${entry.name}/fd/${fd.name}`).catch(() => "");
            const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1];
            if (inode !== undefined && inodes.has(inode)) {
              const command = (await Deno.readTextFile(`/proc/${entry.name}/cmdline`))
                .split("\0").filter(Boolean).join(" ");
              return `process ${entry.name}${command ? ` (${shorten(command)})` : ""}`;
            }
          }
        } catch {
          // Another user's process, or one that has just exited.
        }
      }
      return "a process this user cannot see";
    }
  } catch {
    // No /proc: ask lsof.
  }
  try {
    const output = await new Deno.Command("lsof", {
      args: ["-nP", `-iTCP:${port}`, "-sTCP:LISTEN", "-Fpc"],
      stdout: "piped",
      stderr: "null",
    }).output();
    const text = new TextDecoder().decode(output.stdout);
    const pid = /^p(\d+)$/m.exec(text)?.[1];
    const command = /^c(.+)$/m.exec(text)?.[1];
    if (pid !== undefined) return `process ${pid}${command ? ` (${command})` : ""}`;
  } catch {
    // No lsof either.
  }
  return undefined;
}

function shorten(text: string): string {
  return text.length > 100 ? `${text.slice(0, 97)}...` : text;
}

/** How a browser was started, or why it was not. */
export type BrowserResult = { opened: true } | { opened: false; reason: string };

/** Starts a browser at `url`. */
export type OpenBrowser = (url: string) => Promise<BrowserResult>;

/**
 * Starts the user's browser at `url` with `xdg-open` (or `open` on macOS),
 * unless there is nowhere to show it: no `DISPLAY` or `WAYLAND_DISPLAY` on
 * Linux, which is also how an SSH session without X forwarding looks.
 *
 * @example
 * ```ts
 * import { systemBrowser } from "@panopticon/panopticon";
 * import assert from "node:assert/strict";
 *
 * const overSsh = systemBrowser({ SSH_CONNECTION: "10.0.0.2 50000 10.0.0.1 22" }, "linux");
 * assert.deepEqual(await overSsh("https://ui.perfetto.dev"), {
 *   opened: false,
 *   reason: "this is an SSH session without a display",
 * });
 * ```
 */
export function systemBrowser(
  env: Record<string, string | undefined> = Deno.env.toObject(),
  os: string = Deno.build.os,
): OpenBrowser {
  return async (url) => {
    const darwin = os === "darwin";
    if (!darwin && !env["DISPLAY"] && !env["WAYLAND_DISPLAY"]) {
      return {
        opened: false,
        reason: env["SSH_CONNECTION"] || env["SSH_CLIENT"] || env["SSH_TTY"]
          ? "this is an SSH session without a display"
          : "there is no display (DISPLAY and WAYLAND_DISPLAY are not set)",
      };
    }
    const command = darwin ? "open" : "xdg-open";
    try {
      const { code } = await new Deno.Command(command, {
        args: [url],
        stdin: "null",
        stdout: "null",
        stderr: "null",
      }).output();
      return code === 0
        ? { opened: true }
        : { opened: false, reason: `${command} failed (exit status ${code})` };
    } catch (error) {
      return {
        opened: false,
        reason: error instanceof Deno.errors.NotFound
          ? `${command} is not installed`
          : `${command} could not run: ${error instanceof Error ? error.message : error}`,
      };
    }
  };
}

/** Options of {@linkcode viewTrace}. */
export interface ViewTraceOptions extends ServeTraceOptions {
  /**
   * Starts the browser; `false` only prints the address.
   *
   * @default {systemBrowser()}
   */
  open?: OpenBrowser | false;
  /**
   * Prints a line for the user.
   *
   * @default {console.error, after "panopticon: "}
   */
  print?: (line: string) => void;
  /**
   * Stops waiting: the trace is not served any longer.
   *
   * @default {undefined} (Ctrl-C, SIGINT, stops it)
   */
  signal?: AbortSignal;
  /**
   * The UI's address.
   *
   * @default {"https://ui.perfetto.dev"}
   */
  ui?: string;
  /**
   * The user and host for the `ssh -L` line.
   *
   * @default {$USER and this machine's host name}
   */
  sshTarget?: string;
}

/**
 * Opens the trace at `path` in the Perfetto UI: serves it
 * ({@linkcode serveTrace}), starts the browser at the UI with its address
 * and prints that address; without a browser, prints what to do instead,
 * over SSH with an `ssh -L` tunnel. Resolves with `fetched` once the UI has
 * fetched the trace, or `stopped` on Ctrl-C (or `signal`).
 *
 * @throws {PortTakenError} when the port is taken.
 *
 * @example With a stand-in for the browser, which fetches as the UI does
 * ```ts
 * import { viewTrace } from "@panopticon/panopticon";
 * import assert from "node:assert/strict";
 *
 * const path = await Deno.makeTempFile({ suffix: ".json" });
 * await Deno.writeTextFile(path, '{"traceEvents":[]}');
 * const lines: string[] = [];
 * const outcome = await viewTrace(path, {
 *   port: 0,
 *   print: (line) => lines.push(line),
 *   open: async (address) => {
 *     const url = address.slice(address.indexOf("url=") + 4);
 *     void fetch(url, { headers: { origin: "https://ui.perfetto.dev" } }).then((r) => r.text());
 *     return { opened: true };
 *   },
 * });
 * assert.equal(outcome, "fetched");
 * assert.match(lines[0]!, /^opened https:\/\/ui\.perfetto\.dev\/#!\/\?url=http:\/\/127\.0\.0\.1:\d+\//);
 * await Deno.remove(path);
 * ```
 */
export async function viewTrace(
  path: string,
  options: ViewTraceOptions = {},
): Promise<"fetched" | "stopped"> {
  const print = options.print ?? ((line: string) => console.error(`panopticon: ${line}`));
  const server = await serveTrace(path, options);
  const address = viewUrl(server.url, options.ui);
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  let listening = false;
  if (options.signal === undefined) {
    try {
      Deno.addSignalListener("SIGINT", onSignal);
      listening = true;
    } catch {
      // No signals here.
    }
  } else {
    options.signal.addEventListener("abort", onSignal, { once: true });
  }
  try {
    const open = options.open === undefined ? systemBrowser() : options.open;
    const result: BrowserResult = open === false
      ? { opened: false, reason: "--no-open" }
      : await open(address);
    if (result.opened) {
      print(`opened ${address}`);
      print(
        `serving ${path} on ${server.url} until the UI has fetched it (Ctrl-C to stop); ` +
          "if the browser asks whether ui.perfetto.dev may connect to devices on your local " +
          "network, allow it: that is how it fetches the trace from this machine",
      );
    } else {
      const target = options.sshTarget ?? sshTarget();
      print(
        `${
          result.reason === "--no-open" ? "" : `cannot start a browser (${result.reason}): `
        }open this address in a browser: ${address}`,
      );
      print(
        `on another machine, first run there: ssh -L ${server.port}:127.0.0.1:${server.port} ` +
          `${target}, then open the address in its browser`,
      );
      print(`serving ${path} on ${server.url} until the UI has fetched it (Ctrl-C to stop)`);
    }
    const stopped = new Promise<"stopped">((resolve) => {
      if (stop.signal.aborted) resolve("stopped");
      stop.signal.addEventListener("abort", () => resolve("stopped"), { once: true });
    });
    const outcome = await Promise.race([server.fetched.then(() => "fetched" as const), stopped]);
    print(outcome === "fetched" ? "the UI has the trace; no longer serving it" : "stopped serving");
    return outcome;
  } finally {
    if (listening) Deno.removeSignalListener("SIGINT", onSignal);
    options.signal?.removeEventListener("abort", onSignal);
    await server.close();
  }
}

/** `user@host` for the `ssh -L` line. */
function sshTarget(): string {
  const user = Deno.env.get("USER") ?? Deno.env.get("LOGNAME");
  let host = "HOST";
  try {
    host = Deno.hostname();
  } catch {
    // Not permitted: the placeholder says what goes there.
  }
  return user ? `${user}@${host}` : host;
}
