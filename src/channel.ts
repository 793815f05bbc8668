/**
 * The private channel between the runner and the collector:
 * {@linkcode openChannel} makes a temporary directory only the user can
 * open (mode 0700), listens on a Unix socket inside it, and hands over the
 * connection the collector makes as a byte stream. Other connections can be
 * refused by their first line, see {@linkcode AcceptOptions.admit}.
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
   * Waits for the one connection to admit (see
   * {@linkcode AcceptOptions.admit}) and stops listening; connections still
   * being vetted then are closed.
   *
   * Resolves with the admitted connection's bytes, all of them, or with
   * `undefined` when `until` settles first and no connection made before it
   * is admitted (the program exited without its collector ever connecting),
   * or when the channel is closed meanwhile. Call it once.
   */
  accept(options?: AcceptOptions): Promise<ReadableStream<Uint8Array> | undefined>;
  /**
   * Admits every connection that passes {@linkcode ListenOptions.admit}, one
   * per traced process, until told to stop. Call it once, and not together
   * with {@linkcode Channel.accept}.
   */
  listen(options?: ListenOptions): Listening;
  /** Stops listening and removes the directory. Safe to call again. */
  close(): Promise<void>;
}

/** Options of {@linkcode Channel.listen}: as {@linkcode AcceptOptions}, without `until`. */
export type ListenOptions = Omit<AcceptOptions, "until">;

/** What {@linkcode Channel.listen} gives: the connections, and a way to stop. */
export interface Listening {
  /**
   * The admitted connections, each as the stream of all its bytes, in the
   * order their first lines were judged. Ends once listening has stopped
   * and no connection is left being vetted.
   */
  readonly connections: ReadableStream<ReadableStream<Uint8Array>>;
  /**
   * No connection but those already made will come (every process that
   * could connect has exited): stop listening once they have all been
   * accepted. Safe to call again.
   */
  stop(): void;
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
  /**
   * Vets a connection by its first line (without the newline): returns
   * `undefined` to admit it, or the reason to refuse it. Without even asking,
   * a connection is refused when it ends before a newline or when its first
   * line is longer than `maxFirstLine`. Connections are read concurrently,
   * so one that stays silent holds up none of the others.
   *
   * @default {undefined} (the first connection is admitted, unread)
   */
  admit?: (firstLine: Uint8Array) => string | undefined;
  /**
   * Told why, each time a connection is refused (and closed). A connection
   * still being vetted when another is admitted, or when `until` has settled
   * and the queue is drained, is refused too; but one accepted after `until`
   * settled is merely closed, since it may be the channel's own probe.
   *
   * @default {undefined}
   */
  onRefused?: (reason: string) => void;
  /**
   * The longest first line, in bytes, `admit` is asked about.
   *
   * @default {16 MiB}
   */
  maxFirstLine?: number;
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
// The collector's first line is its `hello`, which carries the program's
// argv: up to ARG_MAX (2 MiB by default on Linux), and up to six times that
// once JSON has escaped every non-ASCII byte as `\uXXXX`.
const MAX_FIRST_LINE = 16 * 1024 * 1024;
// Once the program has exited, the first line of a connection it made is
// already buffered and read at once; a connection still silent this long
// after the probe (see #drain) is not the program's.
const LATE_LINE_MS = 1000;
const NEWLINE = 0x0a;

/** What vetting a connection found; see {@linkcode vet}. */
type Verdict =
  | { stream: ReadableStream<Uint8Array> }
  | { refused: string }
  | { probe: true };

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
 * const stream = await channel.accept({
 *   admit: (line) => new TextDecoder().decode(line) === "hi" ? undefined : "no greeting",
 * });
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
  // What the runner's own probe connection sends (see #drain): a NUL, which
  // never starts the collector's stream, and a random token, so that no
  // other connection passes for the probe.
  #probe = new TextEncoder().encode(`\0${crypto.randomUUID()}`);

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
    const { until, admit, onRefused } = options;
    const maxFirstLine = options.maxFirstLine ?? MAX_FIRST_LINE;
    const admitted = Promise.withResolvers<ReadableStream<Uint8Array> | undefined>();
    // The connections being vetted, each with the end of its vetting.
    const candidates = new Map<Deno.UnixConn, Promise<void>>();
    let probing = false;
    // Accepted once the probe may come (see #drain): one of these may be
    // the probe, not yet told apart.
    const mayBeProbe = new Set<Deno.UnixConn>();
    const refuse = (conn: Deno.UnixConn, reason: string) => {
      candidates.delete(conn);
      closeQuietly(conn);
      onRefused?.(reason);
    };
    const consider = (conn: Deno.UnixConn) => {
      const vetting = vet(conn, { admit, maxFirstLine, probing, probe: this.#probe })
        .then((verdict) => {
          if (!candidates.has(conn)) return; // Given up on meanwhile.
          if ("stream" in verdict) {
            candidates.delete(conn);
            admitted.resolve(verdict.stream);
          } else if ("refused" in verdict) {
            refuse(conn, verdict.refused);
          } else {
            // Our probe: every connection made before it has been accepted.
            candidates.delete(conn);
            closeQuietly(conn);
            this.#stopListening();
          }
        })
        .catch((error) => admitted.reject(error));
      candidates.set(conn, vetting);
      if (probing) mayBeProbe.add(conn);
    };

    (async () => {
      try {
        for (;;) consider(await this.#listener.accept());
      } catch (error) {
        if (this.#listening) return admitted.reject(error);
      }
      // Listening has stopped: only a connection being vetted can still be
      // admitted.
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise((resolve) => timer = setTimeout(resolve, LATE_LINE_MS));
      await Promise.race([Promise.allSettled(candidates.values()), late]);
      clearTimeout(timer);
      admitted.resolve(undefined);
    })();
    until?.finally(() => {
      probing = true;
      return this.#drain();
    }).catch(() => {});

    try {
      return await admitted.promise;
    } finally {
      this.#stopListening();
      for (const conn of candidates.keys()) {
        if (!mayBeProbe.has(conn)) {
          refuse(conn, "its first line had not come when the channel stopped listening");
        } else {
          candidates.delete(conn);
          closeQuietly(conn);
        }
      }
    }
  }

  listen(options: ListenOptions = {}): Listening {
    if (this.#accepting) throw new Error("Channel.listen() can be called only once");
    this.#accepting = true;
    const { admit, onRefused } = options;
    const maxFirstLine = options.maxFirstLine ?? MAX_FIRST_LINE;
    let queue!: ReadableStreamDefaultController<ReadableStream<Uint8Array>>;
    const connections = new ReadableStream<ReadableStream<Uint8Array>>({
      start: (controller) => void (queue = controller),
    });
    const candidates = new Map<Deno.UnixConn, Promise<void>>();
    let probing = false;
    const consider = (conn: Deno.UnixConn) => {
      const vetting = vet(conn, { admit, maxFirstLine, probing, probe: this.#probe })
        .then((verdict) => {
          if (!candidates.delete(conn)) return; // Given up on (and closed) meanwhile.
          if ("stream" in verdict) {
            queue.enqueue(verdict.stream);
          } else if ("refused" in verdict) {
            closeQuietly(conn);
            onRefused?.(verdict.refused);
          } else {
            // Our probe: every connection made before it has been accepted.
            closeQuietly(conn);
            this.#stopListening();
          }
        });
      candidates.set(conn, vetting);
    };

    (async () => {
      try {
        for (;;) consider(await this.#listener.accept());
      } catch (error) {
        if (this.#listening) {
          this.#stopListening();
          onRefused?.(`the channel stopped listening: ${error}`);
        }
      }
      // Listening has stopped: the connections being vetted may still be
      // admitted, if their first lines come soon.
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise((resolve) => timer = setTimeout(resolve, LATE_LINE_MS));
      await Promise.race([Promise.allSettled(candidates.values()), late]);
      clearTimeout(timer);
      for (const conn of [...candidates.keys()]) {
        candidates.delete(conn);
        closeQuietly(conn);
        onRefused?.("its first line had not come when the channel stopped listening");
      }
      queue.close();
    })();

    return {
      connections,
      stop: () => {
        if (probing) return;
        probing = true;
        this.#drain().catch(() => {});
      },
    };
  }

  // The child has exited, but its connection may still wait in the listen
  // queue, unaccepted: the exit and the connection are seen by different
  // parts of the event loop. Connect once ourselves: the queue is first in,
  // first out, so once our own connection is accepted (and told apart by
  // what it sends), every connection the child made has been; listening
  // stops then.
  async #drain(): Promise<void> {
    if (!this.#listening) return;
    try {
      const probe = await Deno.connect({ transport: "unix", path: this.path });
      await probe.write(this.#probe).catch(() => {});
      probe.close();
    } catch {
      // The listener is gone: nothing can be waiting in its queue either.
      this.#stopListening();
    }
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

/** What {@linkcode vet} needs besides the connection. */
interface VetOptions {
  admit: AcceptOptions["admit"];
  maxFirstLine: number;
  /** The probe may come: read even without `admit`. */
  probing: boolean;
  /** What the probe sends. */
  probe: Uint8Array;
}

/**
 * Reads a connection's first line and judges it: the probe, refused, or
 * admitted with a stream of all its bytes.
 */
async function vet(conn: Deno.UnixConn, options: VetOptions): Promise<Verdict> {
  const { admit, maxFirstLine, probing, probe } = options;
  if (admit === undefined && !probing) return { stream: conn.readable };
  const reader = conn.readable.getReader();
  let head: Uint8Array;
  try {
    const { bytes, lineEnd, ended } = await readFirstLine(reader, maxFirstLine);
    head = bytes;
    if (ended && sameBytes(bytes, probe)) return { probe: true };
    if (admit !== undefined) {
      if (lineEnd < 0) {
        return {
          refused: ended
            ? "it closed before its first line ended"
            : `its first line is longer than ${maxFirstLine} bytes`,
        };
      }
      const reason = admit(bytes.subarray(0, lineEnd));
      if (reason !== undefined) return { refused: reason };
    }
  } catch (error) {
    return { refused: `vetting it failed: ${error instanceof Error ? error.message : error}` };
  }
  return {
    stream: new ReadableStream<Uint8Array>({
      start(controller) {
        if (head.length > 0) controller.enqueue(head);
      },
      async pull(controller) {
        const { done, value } = await reader.read();
        if (done) controller.close();
        else controller.enqueue(value);
      },
      cancel(reason) {
        return reader.cancel(reason);
      },
    }),
  };
}

/**
 * Reads until the first newline, the end of the stream, or past `max`
 * bytes. `bytes` may go on after the line; `lineEnd` is the newline's
 * offset, or -1 when no line of at most `max` bytes came.
 */
async function readFirstLine(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  max: number,
): Promise<{ bytes: Uint8Array; lineEnd: number; ended: boolean }> {
  const chunks: Uint8Array[] = [];
  let length = 0;
  let lineEnd = -1;
  let ended = false;
  while (lineEnd < 0 && length <= max) {
    const { done, value } = await reader.read();
    if (done) {
      ended = true;
      break;
    }
    const newline = value.indexOf(NEWLINE);
    if (newline >= 0) lineEnd = length + newline;
    chunks.push(value);
    length += value.length;
  }
  const bytes = new Uint8Array(length);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.length;
  }
  return { bytes, lineEnd: lineEnd > max ? -1 : lineEnd, ended };
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i]);
}

function closeQuietly(conn: Deno.UnixConn): void {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}
