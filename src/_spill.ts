/**
 * A store of fixed-size slice records that is written forwards and read
 * backwards, for the summary's second pass (see `summary.ts`): chunks in
 * memory up to a limit, then a temporary file, unlinked as soon as it is
 * open so that nothing is left behind if the process dies.
 *
 * @module
 */

/** The fields of a record: 6 doubles (48 bytes). */
export const RECORD_FIELDS = 6;
/** Records in a chunk: 96 KB, about what a read or write takes at once. */
const CHUNK_RECORDS = 2048;
const CHUNK_BYTES = CHUNK_RECORDS * RECORD_FIELDS * 8;

/** Options of {@linkcode RecordSpill}. */
export interface RecordSpillOptions {
  /**
   * The most records kept in memory; past it, every chunk goes to a
   * temporary file.
   *
   * @default {262144} (12 MB)
   */
  memoryRecords?: number;
  /**
   * Where the temporary file is made.
   *
   * @default {the system's temporary directory}
   */
  tempDir?: string;
}

/**
 * Records of {@linkcode RECORD_FIELDS} doubles, appended with
 * {@linkcode RecordSpill.append}, then read last first with
 * {@linkcode RecordSpill.chunksBackwards}.
 */
export class RecordSpill {
  readonly #memoryChunks: number;
  readonly #tempDir: string | undefined;
  /** Full chunks still in memory, oldest first. */
  #chunks: Float64Array[] = [];
  #current = new Float64Array(CHUNK_RECORDS * RECORD_FIELDS);
  #at = 0;
  #file: Deno.FsFile | undefined;
  /** Full chunks in the file. */
  #fileChunks = 0;
  #count = 0;

  constructor(options: RecordSpillOptions = {}) {
    const records = options.memoryRecords ?? 262144;
    this.#memoryChunks = Math.max(0, Math.floor(records / CHUNK_RECORDS));
    this.#tempDir = options.tempDir;
  }

  /** How many records were appended. */
  get count(): number {
    return this.#count;
  }

  /** Whether the records went to a temporary file. */
  get spilled(): boolean {
    return this.#file !== undefined;
  }

  /** Appends one record. */
  append(a: number, b: number, c: number, d: number, e: number, f: number): void {
    const chunk = this.#current;
    let at = this.#at;
    chunk[at++] = a;
    chunk[at++] = b;
    chunk[at++] = c;
    chunk[at++] = d;
    chunk[at++] = e;
    chunk[at++] = f;
    this.#count++;
    if (at === chunk.length) {
      this.#full(chunk);
      at = 0;
    }
    this.#at = at;
  }

  #full(chunk: Float64Array): void {
    if (this.#file === undefined && this.#chunks.length < this.#memoryChunks) {
      this.#chunks.push(chunk);
      this.#current = new Float64Array(CHUNK_RECORDS * RECORD_FIELDS);
      return;
    }
    if (this.#file === undefined) {
      const path = Deno.makeTempFileSync({ dir: this.#tempDir, prefix: "panopticon-summary-" });
      this.#file = Deno.openSync(path, { read: true, write: true });
      // Unlinked at once: the file lives as long as it is open, and no longer.
      Deno.removeSync(path);
      for (const old of this.#chunks) this.#write(old);
      this.#chunks = [];
    }
    this.#write(chunk);
  }

  #write(chunk: Float64Array): void {
    const bytes = new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    for (let at = 0; at < bytes.length;) at += this.#file!.writeSync(bytes.subarray(at));
    this.#fileChunks++;
  }

  /**
   * The records, newest chunk first: each chunk holds `records` records,
   * to be read from the last to the first. A chunk's array is valid until
   * the next one is asked for.
   */
  *chunksBackwards(): Generator<{ values: Float64Array; records: number }> {
    if (this.#at > 0) yield { values: this.#current, records: this.#at / RECORD_FIELDS };
    for (let i = this.#chunks.length - 1; i >= 0; i--) {
      yield { values: this.#chunks[i]!, records: CHUNK_RECORDS };
    }
    const file = this.#file;
    if (file === undefined) return;
    const values = new Float64Array(CHUNK_RECORDS * RECORD_FIELDS);
    const bytes = new Uint8Array(values.buffer);
    for (let i = this.#fileChunks - 1; i >= 0; i--) {
      file.seekSync(i * CHUNK_BYTES, Deno.SeekMode.Start);
      for (let at = 0; at < CHUNK_BYTES;) {
        const read = file.readSync(bytes.subarray(at));
        if (read === null) throw new Error("the summary's temporary file was cut short");
        at += read;
      }
      yield { values, records: CHUNK_RECORDS };
    }
  }

  /** Frees the records and closes the temporary file. */
  close(): void {
    this.#chunks = [];
    this.#at = 0;
    this.#file?.close();
    this.#file = undefined;
  }
}
