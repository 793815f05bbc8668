/**
 * Following processes: the event streams of every traced process of a run,
 * one trace. {@linkcode convertProcesses} reads the streams as they come
 * (the collector of each Python process connects on its own, see
 * `docs/protocol.md`, "Processes"), runs a frame-state machine per stream
 * into one writer, and joins each child process to the slice that started
 * it with an arrow.
 *
 * @module
 */

import { type ConversionSummary, type ConvertOptions, teeSink } from "./convert.ts";
import { checkMaxDepth, countingIds, FrameStateMachine, type TraceIds } from "./frames.ts";
import {
  decodeRecord,
  type HelloRecord,
  NdjsonDecoder,
  ProtocolError,
  type ProtocolRecord,
} from "./protocol.ts";
import {
  openTraceWriter,
  TRACE_FORMATS,
  type TraceFormat,
  type TraceWriter,
} from "./trace_format.ts";
import type {
  AsyncSlice,
  FlowArrow,
  Mark,
  ProcessInfo,
  ProcessSummary,
  Slice,
  ThreadInfo,
  TraceSink,
  TraceSummary,
} from "./trace_model.ts";

/**
 * The streams of a run's processes, one per process, as they connect: what
 * `Channel.listen()` gives.
 */
export interface ProcessStreams {
  /** Each process's stream of bytes, in the order they were admitted. Ends once `stop` has taken effect. */
  readonly connections:
    | ReadableStream<ReadableStream<Uint8Array>>
    | AsyncIterable<ReadableStream<Uint8Array>>;
  /**
   * Told once no process is left that could still connect: the first
   * process has exited, every stream has ended and no child recently
   * started is still to connect (see
   * {@linkcode ConvertProcessesOptions.grace}).
   */
  stop?(): void;
}

/**
 * What {@linkcode convertProcesses} reads: the streams of a run as they
 * come, or a given set of streams (a recording of each process).
 */
export type ProcessesInput =
  | ProcessStreams
  | Iterable<ReadableStream<Uint8Array>>
  | AsyncIterable<ReadableStream<Uint8Array>>;

/** Options of {@linkcode convertProcesses}. */
export interface ConvertProcessesOptions extends ConvertOptions {
  /**
   * Settles when the run's first process has exited. Until then, more
   * processes may connect.
   *
   * @default {undefined} (it has exited: the input holds every stream)
   */
  exited?: Promise<unknown>;
  /**
   * Stops waiting for the streams still open: they are cut short there
   * (converted as far as they arrived, and marked incomplete), no more are
   * taken, and the trace is written.
   *
   * @default {undefined}
   */
  signal?: AbortSignal;
  /**
   * Told once, with their pids, when streams are still open `grace`
   * milliseconds after the first process exited: processes that the
   * program left running.
   *
   * @default {undefined}
   */
  onWaiting?: (pids: number[]) => void;
  /**
   * How long, in milliseconds, a child whose start (its parent's `spawn`
   * event) was just seen may take to connect before the conversion stops
   * waiting for it (a program that is not Python never connects), and how
   * long after the first process exited `onWaiting` is told.
   *
   * @default {1000}
   */
  grace?: number;
}

const noop = () => {};
const now = () => performance.now();
/**
 * How long a spawn waits for its child's `hello` before it is forgotten:
 * a program spawned that is not Python never connects, and a run may start
 * any number of them.
 */
const FORGET_SPAWN_MS = 60_000;

/**
 * Converts the streams of a run's processes into one trace (Catapult JSON,
 * or with `format: "perfetto"` Perfetto protobuf, gzipped with `gzip`):
 * one process (a track group) per pid, threads and flows numbered across
 * them, one time axis from the first process's `t0`, and an arrow from the
 * slice that started each child (its parent's `spawn` event) to the child's
 * first slice.
 *
 * The first process is the one whose `hello` has no `parent` (else, failing
 * that, the one that began first); no other stream is read further than its
 * `hello` before that one's has come. The streams are read concurrently,
 * and none faster than the output is written. A stream of a child cut short
 * marks only that process incomplete, with a warning that names it
 * (`process 1234 (worker.py): …`), and so does a child's stream that breaks
 * the protocol; the first process's broken stream rejects the conversion,
 * as {@linkcode convert} does.
 *
 * For streams that come as processes connect ({@linkcode ProcessStreams}),
 * it tells `stop` once the first process has exited (`exited`), every
 * stream has ended, and no child whose start was seen in the last `grace`
 * milliseconds is still to connect. Streams still open `grace` after the
 * first process exited are reported to `onWaiting`; `signal` stops waiting
 * for them.
 *
 * Resolves with the summary: the first process's at the top level
 * (`complete` only if every process's stream is), and every process in
 * `processes`; or with `undefined`, the output untouched, when no stream
 * came at all.
 *
 * @example Two processes, the second started by the first
 * ```ts
 * import { convertProcesses } from "@panopticon/panopticon";
 * import assert from "node:assert/strict";
 *
 * const stream = (lines: string[]) =>
 *   ReadableStream.from([new TextEncoder().encode(lines.join("\n") + "\n")]);
 * const hello = (pid: number, extra: string) =>
 *   `{"kind":"hello","protocol":4,"pid":${pid},"python":"3.13.0","engine":"monitoring","t0":1000,"main_thread":1,"thread_ids":"serial","argv":["app.py"]${extra}}`;
 * const parent = stream([
 *   hello(7, ""),
 *   '{"kind":"cfunc","id":1,"name":"posix.fork"}',
 *   '{"kind":"events","events":[[5,1,2000,0,1],[14,1,2500,0,1],[6,1,3000,0,0]]}',
 *   '{"kind":"end","ts":9000,"events":3,"dropped":0,"reason":"exit"}',
 * ]);
 * const child = stream([
 *   hello(8, ',"parent":{"pid":7,"token":1}'),
 *   '{"kind":"code","id":1,"module":"__main__","qualname":"work","file":"app.py","line":3,"type":"function"}',
 *   '{"kind":"events","events":[[0,1,4000,0,1],[2,1,8000,0,0]]}',
 *   '{"kind":"end","ts":8500,"events":2,"dropped":0,"reason":"exit"}',
 * ]);
 * let text = "";
 * const decoder = new TextDecoder();
 * const summary = await convertProcesses(
 *   [parent, child],
 *   new WritableStream({ write: (chunk) => void (text += decoder.decode(chunk, { stream: true })) }),
 * );
 * assert.equal(summary?.complete, true);
 * assert.deepEqual(summary?.processes?.map((process) => process.pid), [7, 8]);
 * const events = JSON.parse(text).traceEvents;
 * const fork = events.find((event: { name: string }) => event.name === "posix.fork");
 * const work = events.find((event: { name: string }) => event.name === "work");
 * assert.deepEqual([fork.pid, fork.flow_out, work.pid, work.ts, work.flow_in], [7, true, 8, 3, true]);
 * // The arrow from the fork to the child's first slice.
 * assert.equal(fork.bind_id, work.bind_id);
 * ```
 */
export async function convertProcesses(
  input: ProcessesInput,
  output: WritableStream<Uint8Array>,
  options: ConvertProcessesOptions = {},
): Promise<ConversionSummary | undefined> {
  // Checked before the output is locked, so that a bad option leaves it untouched.
  const maxDepth = checkMaxDepth(options.maxDepth);
  const grace = options.grace ?? 1000;
  if (!(grace >= 0)) throw new RangeError(`grace must be a number of ms, got ${String(grace)}`);
  const format = options.format ?? "json";
  if (!TRACE_FORMATS.includes(format)) {
    throw new RangeError(
      `format must be one of ${TRACE_FORMATS.join(", ")}, got ${String(format)}`,
    );
  }
  return await new Conversion(input, output, options, { maxDepth, grace, format }).run();
}

/**
 * The arrow between a spawn and the child it started: its flow id, which
 * the spawner's slice and the child's first slice both carry.
 */
interface Link {
  key: string;
  flow: number;
  /** When the parent's spawn was seen (ms, wall clock of decoding), or -1. */
  spawnedAt: number;
  /** Whether the child's hello named it. */
  claimed: boolean;
}

/** One process's stream, as it is followed. */
class Follower {
  hello: HelloRecord | undefined;
  machine: FrameStateMachine | undefined;
  summary: TraceSummary | undefined;
  /** The name on its track group, and its place among them. */
  name = "";
  sortIndex = 0;
  /** Its main thread's id, the first it was given. */
  mainTid = 0;
  /** Its stream broke the protocol: cut there, and its warnings say so, not more. */
  broken = false;
  ended = false;
  readonly endedSignal = Promise.withResolvers<void>();
  cutRequested = false;
  readonly cutSignal = Promise.withResolvers<void>();

  constructor(readonly index: number, readonly reader: ReadableStreamDefaultReader<Uint8Array>) {}

  /** `process 1234 (worker.py)`, for warnings. */
  get label(): string {
    const hello = this.hello;
    if (hello === undefined) return `the stream of connection ${this.index + 1}`;
    const program = hello.argv[0]?.split("/").pop() || "python";
    return `process ${hello.pid} (${program})`;
  }

  /** Stops reading: the stream is converted as far as it arrived. */
  cut(): void {
    if (this.cutRequested) return;
    this.cutRequested = true;
    this.reader.cancel().catch(noop);
    this.cutSignal.resolve();
  }
}

/** One conversion of {@linkcode convertProcesses}. */
class Conversion {
  readonly #source: ProcessStreams;
  readonly #output: WritableStream<Uint8Array>;
  readonly #options: ConvertProcessesOptions;
  readonly #maxDepth: number;
  readonly #grace: number;
  readonly #format: TraceFormat;
  #writer: TraceWriter | undefined;
  /** The writer, or the writer and the `tee` option's sink. */
  #sink: TraceSink | undefined;
  readonly #ids: TraceIds = countingIds();
  readonly #warnings: string[] = [];

  readonly #followers: Follower[] = [];
  /** How many of them have not ended. */
  #open = 0;
  /** The followers whose machine has been made, in that order. */
  readonly #appeared: Follower[] = [];
  /** The places given among the trace's processes. */
  #places = 0;
  #root: Follower | undefined;
  #origin: number | undefined;
  readonly #originKnown = Promise.withResolvers<void>();

  /** The arrows by `pid:token`, until both ends have been named. */
  readonly #links = new Map<string, Link>();
  /** Links by the time of their spawn, some of them since claimed: see #forget. */
  #unclaimed: Link[] = [];

  #exitedAt: number | undefined;
  #connectionsEnded = false;
  #stopped = false;
  #aborted = false;
  #noticed = false;
  #finished = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #failure: { error: unknown } | undefined;
  readonly #failed = Promise.withResolvers<never>();

  constructor(
    input: ProcessesInput,
    output: WritableStream<Uint8Array>,
    options: ConvertProcessesOptions,
    checked: { maxDepth: number; grace: number; format: TraceFormat },
  ) {
    this.#source = "connections" in input
      ? input
      : { connections: toAsyncIterable(input as Iterable<ReadableStream<Uint8Array>>) };
    this.#output = output;
    this.#options = options;
    this.#maxDepth = checked.maxDepth;
    this.#grace = checked.grace;
    this.#format = checked.format;
  }

  async run(): Promise<ConversionSummary | undefined> {
    const { exited, signal } = this.#options;
    const onExit = () => {
      this.#exitedAt = now();
      // Then the notice may be due, and the first process, if it never said
      // hello, is the one that began first.
      this.#schedule(this.#grace);
      this.#check();
    };
    if (exited === undefined) onExit();
    else exited.then(onExit, onExit);
    const onAbort = () => this.#abort();
    if (signal?.aborted) onAbort();
    else signal?.addEventListener("abort", onAbort, { once: true });
    // `#failed` rejects only when it wins the race: keep it from being unhandled otherwise.
    this.#failed.promise.catch(noop);
    try {
      const admitting = this.#admit().catch((error) => this.#fail(error));
      await Promise.race([admitting, this.#failed.promise]);
      if (this.#failure !== undefined) throw this.#failure.error;
      return await this.#finish();
    } catch (error) {
      this.#fail(error);
      if (this.#writer !== undefined) await this.#writer.abort(error).catch(noop);
      else if (!this.#output.locked) await this.#output.abort(error).catch(noop);
      throw error;
    } finally {
      this.#finished = true;
      clearTimeout(this.#timer);
      signal?.removeEventListener("abort", onAbort);
    }
  }

  /** Takes every stream as it comes, then waits for all of them to be converted. */
  async #admit(): Promise<void> {
    const loops: Promise<void>[] = [];
    const iterator = this.#source.connections[Symbol.asyncIterator]();
    for (let next = await iterator.next(); !next.done; next = await iterator.next()) {
      if (this.#failure !== undefined) {
        await next.value.cancel().catch(noop);
        continue;
      }
      loops.push(this.#follow(next.value, loops.length));
      this.#check();
    }
    this.#connectionsEnded = true;
    this.#check();
    await Promise.all(loops);
  }

  /** Follows one process's stream to its end; fails the conversion only for the first process's. */
  async #follow(stream: ReadableStream<Uint8Array>, index: number): Promise<void> {
    const follower = new Follower(index, stream.getReader());
    this.#followers.push(follower);
    this.#open++;
    const late = this.#aborted;
    try {
      await this.#read(follower, late);
    } catch (error) {
      this.#broke(follower, error);
    } finally {
      // Its machine's buffers go: a run may start any number of processes.
      follower.machine = undefined;
      follower.ended = true;
      this.#open--;
      follower.endedSignal.resolve();
      this.#check();
    }
  }

  async #read(follower: Follower, late: boolean): Promise<void> {
    const { chunks, line } = await readFirstLine(follower.reader);
    // Taken after waiting stopped: what it sent so far (its hello) is all there is.
    if (late) follower.cut();
    if (line === undefined) {
      throw new ProtocolError(
        1,
        'expected a "hello" record, got the end of the stream (the collector sent nothing)',
      );
    }
    const hello = decodeRecord(line, 1);
    if (hello?.kind !== "hello") {
      throw new ProtocolError(
        1,
        `expected a "hello" record first, got ${
          hello === undefined ? "a blank line" : `"${hello.kind}"`
        }`,
      );
    }
    const secret = this.#options.secret;
    if (secret !== undefined && hello.secret !== secret) {
      throw new ProtocolError(1, "the event stream did not present this run's secret");
    }
    follower.hello = hello;
    if (hello.parent === undefined && this.#root === undefined) {
      this.#setRoot(follower);
    } else {
      this.#check();
      await Promise.race([this.#originKnown.promise, follower.cutSignal.promise]);
      if (this.#origin === undefined) this.#chooseRoot(true);
    }
    // The same pid again: the process replaced itself (exec), and its earlier
    // stream has ended or is about to. Its end says which.
    const earlier = this.#followers.findLast((other) =>
      other.index < follower.index && other.hello?.pid === hello.pid
    );
    if (earlier !== undefined) {
      await Promise.race([earlier.endedSignal.promise, follower.cutSignal.promise]);
    }
    const machine = follower.machine ??
      this.#start(follower, earlier?.summary?.reason === "exec" ? earlier : undefined);

    const decoder = new NdjsonDecoder({ onWarning: this.#warner(follower) });
    const onRecord = (record: ProtocolRecord, at: number) => machine.push(record, at);
    const writer = this.#writer!;
    for (const chunk of chunks) decoder.push(chunk, onRecord);
    await writer.ready();
    while (!follower.cutRequested) {
      const { done, value } = await follower.reader.read();
      if (done) break;
      decoder.push(value, onRecord);
      await writer.ready();
    }
    decoder.finish(onRecord);
    follower.summary = machine.end();
  }

  /** The first process has said hello: it sets trace time zero. */
  #setRoot(follower: Follower): void {
    this.#root = follower;
    this.#origin = follower.hello!.t0;
    // Announced first, before any stream that waits for the origin goes on.
    this.#start(follower, undefined);
    this.#originKnown.resolve();
  }

  /**
   * No stream came from a first process (its collector never connected,
   * or the streams are of children only): the one that began first stands
   * in for it.
   */
  #chooseRoot(force: boolean): void {
    if (this.#root !== undefined) return;
    // Unless time is up, the streams still to say hello are waited for.
    if (!force && this.#followers.some((other) => !other.ended && other.hello === undefined)) {
      return;
    }
    let first: Follower | undefined;
    for (const follower of this.#followers) {
      const t0 = follower.hello?.t0;
      if (t0 !== undefined && (first === undefined || t0 < first.hello!.t0)) first = follower;
    }
    if (first !== undefined) this.#setRoot(first);
  }

  /** Makes the machine of a stream whose hello has come, writing into the shared writer. */
  #start(follower: Follower, predecessor: Follower | undefined): FrameStateMachine {
    const hello = follower.hello!;
    if (this.#writer === undefined) {
      this.#writer = openTraceWriter(this.#output, {
        format: this.#format,
        gzip: this.#options.gzip ?? false,
      });
      const tee = this.#options.tee;
      this.#sink = tee === undefined ? this.#writer : teeSink(this.#writer, tee);
    }
    const inherited = predecessor?.mainTid ?? 0;
    const ids: TraceIds = {
      thread: () => {
        // The main thread of a program that an exec replaced goes on.
        const tid = follower.mainTid === 0 && inherited !== 0 ? inherited : this.#ids.thread();
        if (follower.mainTid === 0) follower.mainTid = tid;
        return tid;
      },
      flow: () => this.#ids.flow(),
    };
    const parent = hello.parent;
    const machine = new FrameStateMachine(new ProcessSink(this.#sink!, follower, predecessor), {
      onWarning: this.#warner(follower),
      maxDepth: this.#maxDepth,
      origin: this.#origin,
      ids,
      spawnFlow: (token) => this.#spawned(hello.pid, token),
      parentFlow: parent !== undefined && parent.token !== 0
        ? this.#claimed(parent.pid, parent.token)
        : 0,
    });
    follower.machine = machine;
    follower.sortIndex = predecessor?.sortIndex ?? ++this.#places;
    this.#appeared.push(follower);
    return machine;
  }

  #warner(follower: Follower): (message: string) => void {
    return (message) => {
      if (follower.broken) return;
      const text = follower === this.#root ? message : `${follower.label}: ${message}`;
      this.#warnings.push(text);
      this.#options.onWarning?.(text);
    };
  }

  /** A stream failed: the first process's fails the conversion, another's is cut there. */
  #broke(follower: Follower, error: unknown): void {
    if (
      !(error instanceof ProtocolError) || follower === this.#root ||
      (this.#root === undefined && follower.index === 0)
    ) {
      this.#fail(error);
      return;
    }
    follower.cut();
    this.#warner(follower)(
      `its event stream is broken at ${error.message}: the trace holds what came before`,
    );
    follower.broken = true;
    try {
      if (follower.machine !== undefined && follower.summary === undefined) {
        follower.summary = follower.machine.end();
      }
    } catch {
      // Nothing more can be made of it.
    }
  }

  #fail(error: unknown): void {
    if (this.#failure !== undefined) return;
    this.#failure = { error };
    this.#failed.reject(error);
    for (const follower of this.#followers) follower.cut();
    this.#stop();
  }

  // --- arrows between processes ---------------------------------------------

  /** The link of `pid`'s spawn `token`, or a new one when `side` of it is taken. */
  #link(pid: number, token: number, side: "spawned" | "claimed"): Link {
    const key = `${pid}:${token}`;
    let link = this.#links.get(key);
    // Taken already: tokens count from 1 again in a program that an exec started.
    if (link === undefined || (side === "spawned" ? link.spawnedAt >= 0 : link.claimed)) {
      link = { key, flow: this.#ids.flow(), spawnedAt: -1, claimed: false };
      this.#links.set(key, link);
    }
    return link;
  }

  /** A spawn of `pid`: the flow id its spawner's slice carries. */
  #spawned(pid: number, token: number): number {
    this.#forget();
    const link = this.#link(pid, token, "spawned");
    link.spawnedAt = now();
    if (link.claimed) this.#unlink(link);
    else this.#unclaimed.push(link);
    return link.flow;
  }

  /** A child's hello names its parent's spawn: the flow id its first slice carries. */
  #claimed(pid: number, token: number): number {
    const link = this.#link(pid, token, "claimed");
    link.claimed = true;
    if (link.spawnedAt >= 0) this.#unlink(link);
    return link.flow;
  }

  /** Forgets spawns whose child has not come in a minute: a program that is not Python. */
  #forget(): void {
    const queue = this.#unclaimed;
    let drop = 0;
    const before = now() - FORGET_SPAWN_MS;
    while (drop < queue.length) {
      const link = queue[drop]!;
      if (!link.claimed && link.spawnedAt >= before) break;
      if (!link.claimed) this.#unlink(link);
      drop++;
    }
    if (drop > 0) this.#unclaimed = queue.slice(drop);
  }

  #unlink(link: Link): void {
    if (this.#links.get(link.key) === link) this.#links.delete(link.key);
  }

  /** How long until no unclaimed spawn is recent, in ms; 0 when none is. */
  #recentSpawnWait(at: number): number {
    const queue = this.#unclaimed;
    for (let i = queue.length - 1; i >= 0; i--) {
      const link = queue[i]!;
      if (at - link.spawnedAt >= this.#grace) return 0;
      if (!link.claimed) return link.spawnedAt + this.#grace - at;
    }
    return 0;
  }

  // --- when to stop -------------------------------------------------------------

  /** Tells the input to stop, when the time has come; and whether streams are waited for. */
  #check(): void {
    if (this.#finished || this.#exitedAt === undefined) return;
    const at = now();
    const late = at - this.#exitedAt >= this.#grace;
    if (this.#origin === undefined && (late || this.#connectionsEnded || this.#aborted)) {
      this.#chooseRoot(late || this.#aborted);
    }
    if (this.#open > 0) {
      if (late && !this.#noticed && !this.#aborted) {
        this.#noticed = true;
        const pids = this.#followers.flatMap((follower) =>
          !follower.ended && follower.hello ? [follower.hello.pid] : []
        );
        this.#options.onWaiting?.(pids);
      } else if (!late) {
        // A timer may fire a little before its time: look again then.
        this.#schedule(this.#grace - (at - this.#exitedAt));
      }
      return;
    }
    if (this.#stopped) return;
    // The first process's stream may still be on its way through the
    // channel, and a child it started just before it exited after it.
    if (this.#root === undefined && !late && !this.#aborted) return;
    const wait = this.#recentSpawnWait(at);
    if (wait > 0 && !this.#aborted) {
      this.#schedule(wait);
      return;
    }
    this.#stop();
  }

  #schedule(ms: number): void {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#check(), Math.ceil(ms));
  }

  #stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#source.stop?.();
  }

  /** Stops waiting: what is open is cut short, and the input stops. */
  #abort(): void {
    if (this.#aborted || this.#finished) return;
    this.#aborted = true;
    for (const follower of this.#followers) follower.cut();
    if (this.#origin === undefined) this.#chooseRoot(true);
    this.#stop();
  }

  // --- the end ------------------------------------------------------------------

  async #finish(): Promise<ConversionSummary | undefined> {
    const root = this.#root;
    const writer = this.#writer;
    if (root === undefined || writer === undefined || root.summary === undefined) {
      if (writer !== undefined) await writer.abort().catch(noop);
      return undefined;
    }
    const processes = this.#appeared.map(processSummary);
    const summary: TraceSummary = {
      ...root.summary,
      complete: processes.every((process) => process.complete),
      processes,
    };
    (this.#sink ?? writer).finish(summary);
    await writer.close();
    return { ...summary, warnings: this.#warnings, format: this.#format, bytes: writer.bytes };
  }
}

/** What a machine of one stream sends, passed on to the shared writer with the process's pid. */
class ProcessSink implements TraceSink {
  readonly #follower: Follower;
  readonly #predecessor: Follower | undefined;
  readonly #writer: TraceSink;
  #pid = 0;

  constructor(writer: TraceSink, follower: Follower, predecessor: Follower | undefined) {
    this.#writer = writer;
    this.#follower = follower;
    this.#predecessor = predecessor;
  }

  process(process: ProcessInfo): void {
    const follower = this.#follower;
    const predecessor = this.#predecessor;
    this.#pid = process.pid;
    follower.name = predecessor === undefined
      ? process.name
      : `${predecessor.name} → ${process.name}`;
    this.#writer.process({ ...process, name: follower.name, sortIndex: follower.sortIndex });
  }

  thread(thread: ThreadInfo): void {
    thread.pid = this.#pid;
    this.#writer.thread(thread);
  }

  slice(slice: Slice): void {
    this.#writer.slice(slice);
  }

  mark(mark: Mark): void {
    mark.pid = this.#pid;
    this.#writer.mark?.(mark);
  }

  // Their thread ids are numbered across the streams, which places them.
  asyncSlice(slice: AsyncSlice): void {
    this.#writer.asyncSlice?.(slice);
  }

  flowArrow(arrow: FlowArrow): void {
    this.#writer.flowArrow?.(arrow);
  }

  finish(): void {
    // The trace ends once, with every process's summary.
  }
}

function processSummary(follower: Follower): ProcessSummary {
  const hello = follower.hello!;
  const summary = follower.summary;
  const process: ProcessSummary = {
    pid: hello.pid,
    argv: hello.argv,
    parent: hello.parent ?? null,
    complete: !follower.broken && summary?.complete === true,
    reason: summary?.reason,
    events: summary?.events ?? 0,
    slices: summary?.slices ?? 0,
    dropped: summary?.dropped ?? 0,
    threads: summary?.threads ?? 0,
  };
  if (summary?.limited !== undefined) process.limited = summary.limited;
  return process;
}

/**
 * Reads until the first newline, or the end: every chunk read, and the
 * first line's text (without its newline), or `undefined` if no line ended.
 */
async function readFirstLine(
  reader: ReadableStreamDefaultReader<Uint8Array>,
): Promise<{ chunks: Uint8Array[]; line: string | undefined }> {
  const chunks: Uint8Array[] = [];
  const decoder = new TextDecoder();
  let line = "";
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return { chunks, line: undefined };
    chunks.push(value);
    const newline = value.indexOf(0x0a);
    if (newline >= 0) {
      line += decoder.decode(value.subarray(0, newline));
      return { chunks, line };
    }
    line += decoder.decode(value, { stream: true });
  }
}

async function* toAsyncIterable<T>(items: Iterable<T> | AsyncIterable<T>): AsyncIterable<T> {
  yield* items;
}
