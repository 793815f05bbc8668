/**
 * The private channel between the runner and the collector:
 * {@linkcode openChannel} makes a temporary directory only the user can
 * open (mode 0700), listens on a Unix socket inside it, and hands over the
 * one connection the collector makes as a byte stream.
 *
 * @module
 */

/** A listening channel; see {@linkcode openChannel}. */
export interface Channel extends AsyncDisposable {
  /** The private temporary directory (mode 0700) that holds the socket. */
  readonly dir: string;
  /** The Unix socket's path, handed to the collector. */
  readonly path: string;
  /**
   * Waits for the one connection and stops listening.
   *
   * Resolves with the connection's bytes, or with `undefined` when `until`
   * settles first and no connection came (the program exited without its
   * collector ever connecting). Call it once.
   */
  accept(options?: AcceptOptions): Promise<ReadableStream<Uint8Array> | undefined>;
  /** Stops listening and removes the directory. Safe to call again. */
  close(): Promise<void>;
}

/** Options of {@linkcode Channel.accept}. */
export interface AcceptOptions {
  /**
   * Once this settles, a connection that has not come will never come (the
   * child process has exited): stop waiting.
   *
   * @default {undefined} (wait for ever)
   */
  until?: Promise<unknown>;
}

/** Options of {@linkcode openChannel}. */
export interface OpenChannelOptions {
  /**
   * Where the private directory is created.
   *
   * @default {$TMPDIR, or /tmp when that path is too long for a socket}
   */
  tempDir?: string;
}

const SOCKET_NAME = "channel.sock";
// sockaddr_un.sun_path holds 108 bytes on Linux and 104 on macOS, the
// terminating NUL included.
const MAX_SOCKET_PATH = 100;
// The collector's stream starts with `{` (or a blank line); this byte never
// starts it, so the runner's own probe connection is told apart by it.
const PROBE_BYTE = 0;

/**
 * Creates the private directory and listens on a socket inside it.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { openChannel } from "./channel.ts";
 *
 * await using channel = await openChannel();
 * const conn = await Deno.connect({ transport: "unix", path: channel.path });
 * await conn.write(new TextEncoder().encode("hi\n"));
 * conn.close();
 * const stream = await channel.accept();
 * assert.deepEqual(await new Response(stream).text(), "hi\n");
 * ```
 */
export async function openChannel(options: OpenChannelOptions = {}): Promise<Channel> {
  let dir = await Deno.makeTempDir({ prefix: "panopticon-", dir: options.tempDir });
  if (new TextEncoder().encode(`${dir}/${SOCKET_NAME}`).length > MAX_SOCKET_PATH) {
    await Deno.remove(dir);
    dir = await Deno.makeTempDir({ prefix: "panopticon-", dir: "/tmp" });
  }
  try {
    // makeTempDir already uses 0700; say so explicitly, whatever the umask.
    await Deno.chmod(dir, 0o700);
    const path = `${dir}/${SOCKET_NAME}`;
    const listener = Deno.listen({ transport: "unix", path });
    return new ListeningChannel(dir, path, listener);
  } catch (error) {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw error;
  }
}

class ListeningChannel implements Channel {
  #listener: Deno.UnixListener;
  #listening = true;
  #accepting = false;
  #closed = false;

  constructor(
    readonly dir: string,
    readonly path: string,
    listener: Deno.UnixListener,
  ) {
    this.#listener = listener;
  }

  async accept(options: AcceptOptions = {}): Promise<ReadableStream<Uint8Array> | undefined> {
    if (this.#accepting) throw new Error("Channel.accept() can be called only once");
    this.#accepting = true;
    const pending = this.#listener.accept();
    // Closing the listener rejects a pending accept; nobody waits for it then.
    pending.catch(() => {});
    try {
      if (options.until === undefined) return (await pending).readable;
      const settled = options.until.then(() => undefined, () => undefined);
      const first = await Promise.race([pending, settled]);
      if (first !== undefined) return first.readable;
      return await this.#acceptAfterExit(pending);
    } finally {
      this.#stopListening();
    }
  }

  // The child has exited, but its connection may still wait in the listen
  // queue, unaccepted: the exit and the connection are seen by different
  // parts of the event loop. Connect once ourselves: the queue is first in,
  // first out, so the accept yields the child's connection if there is one
  // and our own otherwise, which is told apart by its first byte.
  async #acceptAfterExit(
    pending: Promise<Deno.UnixConn>,
  ): Promise<ReadableStream<Uint8Array> | undefined> {
    try {
      const probe = await Deno.connect({ transport: "unix", path: this.path });
      await probe.write(new Uint8Array([PROBE_BYTE])).catch(() => {});
      probe.close();
    } catch {
      // The listener is gone: nothing can be waiting in its queue either.
    }
    let conn: Deno.UnixConn;
    try {
      conn = await pending;
    } catch {
      return undefined;
    }
    const reader = conn.readable.getReader();
    const first = await reader.read().catch(() => ({ done: true, value: undefined }));
    if (!first.done && first.value?.[0] === PROBE_BYTE) {
      await reader.cancel().catch(() => {});
      return undefined;
    }
    return new ReadableStream<Uint8Array>({
      start(controller) {
        if (first.done) controller.close();
        else if (first.value !== undefined) controller.enqueue(first.value);
      },
      async pull(controller) {
        const { done, value } = await reader.read();
        if (done) controller.close();
        else controller.enqueue(value);
      },
      cancel(reason) {
        return reader.cancel(reason);
      },
    });
  }

  #stopListening(): void {
    if (!this.#listening) return;
    this.#listening = false;
    try {
      this.#listener.close();
    } catch {
      // Already closed.
    }
  }

  async close(): Promise<void> {
    this.#stopListening();
    if (this.#closed) return;
    this.#closed = true;
    await Deno.remove(this.dir, { recursive: true }).catch((error) => {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    });
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
