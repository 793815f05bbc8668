/**
 * Splits a byte stream into lines and binary frames, incrementally.
 *
 * Private to the protocol decoder: it knows nothing of records, only that
 * a line may be followed by a run of bytes of a length that the line gives
 * (protocol 4), which may hold any byte, newlines included.
 *
 * @module
 */

/**
 * Receives one complete line (its bytes, without the `\n`) and its 1-based
 * number; returns how many bytes of binary frame follow the line, 0 for
 * none. The bytes may be a view of the splitter's buffer or of the chunk:
 * they are valid only during the call.
 */
export type LineCallback = (bytes: Uint8Array, line: number) => number;

/**
 * Receives the binary frame that followed line `line`, whole. The bytes are
 * a view of the chunk or of the splitter's buffer, valid only during the
 * call.
 */
export type FrameCallback = (bytes: Uint8Array, line: number) => void;

/** What a stream left unfinished at its end. */
export type Unfinished =
  /** The bytes after the last `\n`, and their 1-based line number. */
  | { kind: "line"; bytes: Uint8Array; line: number }
  /** A binary frame cut short: `received` of its `length` bytes came. */
  | { kind: "frame"; line: number; received: number; length: number };

/**
 * An incremental splitter of lines and binary frames.
 *
 * Newlines are found in the bytes (`indexOf`, which V8 runs as a fast
 * search), and a line or frame that lies in one chunk is handed out as a
 * view of it, uncopied. Only one split across chunks is copied, into a
 * buffer that is reused and grows by doubling: joining the pieces once
 * keeps a line that spans many chunks linear in its length.
 */
export class LineSplitter {
  #line = 0;
  /** The start of a line, or of a frame, that the chunks so far have cut. */
  #held = new Uint8Array(0);
  #heldLength = 0;
  /** The bytes of frame still to come after the current line; 0 outside a frame. */
  #frameLength = 0;
  #inFrame = false;

  /** How many complete lines have been handed out so far. */
  get line(): number {
    return this.#line;
  }

  /** Feeds one chunk, calling `onLine` and `onFrame` for every line and frame it completes. */
  push(chunk: Uint8Array, onLine: LineCallback, onFrame: FrameCallback): void {
    let at = 0;
    while (at < chunk.length) {
      if (this.#inFrame) {
        at = this.#frame(chunk, at, onFrame);
        continue;
      }
      const newline = chunk.indexOf(0x0a, at);
      if (newline < 0) {
        this.#hold(chunk, at, chunk.length);
        return;
      }
      let bytes: Uint8Array;
      if (this.#heldLength > 0) {
        this.#hold(chunk, at, newline);
        bytes = this.#held.subarray(0, this.#heldLength);
        this.#heldLength = 0;
      } else {
        bytes = chunk.subarray(at, newline);
      }
      at = newline + 1;
      this.#frameLength = onLine(bytes, ++this.#line);
      this.#inFrame = this.#frameLength > 0;
    }
  }

  /**
   * Ends the stream. Returns what it cut short: a frame, or a final line
   * without `\n` (which may still be whole), if there is one.
   */
  finish(): Unfinished | undefined {
    const length = this.#heldLength;
    this.#heldLength = 0;
    if (this.#inFrame) {
      this.#inFrame = false;
      return { kind: "frame", line: this.#line, received: length, length: this.#frameLength };
    }
    if (length === 0) return undefined;
    return { kind: "line", bytes: this.#held.subarray(0, length), line: this.#line + 1 };
  }

  /** Takes frame bytes from `chunk` at `at`; returns the index after them. */
  #frame(chunk: Uint8Array, at: number, onFrame: FrameCallback): number {
    const missing = this.#frameLength - this.#heldLength;
    const available = chunk.length - at;
    if (available < missing) {
      this.#hold(chunk, at, chunk.length);
      return chunk.length;
    }
    const end = at + missing;
    let bytes: Uint8Array;
    if (this.#heldLength > 0) {
      this.#hold(chunk, at, end);
      bytes = this.#held.subarray(0, this.#heldLength);
      this.#heldLength = 0;
    } else {
      // The whole frame is in this chunk: no copy.
      bytes = chunk.subarray(at, end);
    }
    this.#inFrame = false;
    onFrame(bytes, this.#line);
    return end;
  }

  /** Appends `chunk[start, end)` to the held bytes. */
  #hold(chunk: Uint8Array, start: number, end: number): void {
    const needed = this.#heldLength + end - start;
    if (needed > this.#held.length) {
      // Doubling keeps a long line linear; growing with the bytes that
      // came, not with the length a frame claims, keeps a stream cut short
      // from allocating what never arrives.
      const bigger = new Uint8Array(Math.max(needed, 2 * this.#held.length, 4096));
      bigger.set(this.#held.subarray(0, this.#heldLength));
      this.#held = bigger;
    }
    this.#held.set(chunk.subarray(start, end), this.#heldLength);
    this.#heldLength = needed;
  }
}
