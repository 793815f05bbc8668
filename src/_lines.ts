/**
 * Splits a byte stream into lines of UTF-8 text and binary frames,
 * incrementally.
 *
 * Private to the protocol decoder: it knows nothing of records, only that
 * a line may be followed by a run of bytes of a length that the line gives
 * (protocol 4), which may hold any byte, newlines included.
 *
 * @module
 */

/**
 * Receives one complete line (without its `\n`) and its 1-based number;
 * returns how many bytes of binary frame follow the line, 0 for none.
 */
export type LineCallback = (text: string, line: number) => number;

/**
 * Receives the binary frame that followed line `line`, whole. The bytes are
 * a view of the chunk or of the splitter's buffer, valid only during the
 * call.
 */
export type FrameCallback = (bytes: Uint8Array, line: number) => void;

/** What a stream left unfinished at its end. */
export type Unfinished =
  /** The text after the last `\n`, and its 1-based line number. */
  | { kind: "line"; text: string; line: number }
  /** A binary frame cut short: `received` of its `length` bytes came. */
  | { kind: "frame"; line: number; received: number; length: number };

/** The byte order mark, which only the stream's first line may start with. */
const BOM = "\uFEFF";
/**
 * How far the bytes are searched for the end of a line before the rest of
 * the chunk is decoded and the text searched: most records' lines are
 * shorter, and after one may come a frame of binary bytes, which would be
 * slow to decode as text (it is mostly not UTF-8).
 */
const SHORT_LINE = 256;

/**
 * An incremental splitter of lines and binary frames.
 *
 * A short line is found in the bytes. Past that, the rest of the chunk is
 * decoded and its newlines are found in the text: `TextDecoder` and a
 * string search run at 20 GB/s here, where a search of the bytes
 * (`Uint8Array.prototype.indexOf`) runs at 4.5 (measured in Deno 2.9.6; a
 * packed stream, of lines a megabyte long, was decoded in half the time).
 * A line that spans chunks is kept as pieces of text, decoded in stream
 * mode, so that a character split between two chunks decodes whole, and
 * joined once at its `\n`.
 *
 * A frame is taken by its byte offset in the chunk, which the text gives:
 * every byte decodes to at most one UTF-16 code unit, so the first `\n`
 * after a newline, at code unit `i`, is byte `i` after it exactly when that
 * byte is a newline; else a character of several bytes came before it,
 * and the bytes are searched. (After a newline the decoder holds no part
 * of a character; before a frame it is flushed.) A frame within one chunk is handed out
 * uncopied; one split across chunks is copied into a buffer that is
 * reused and grows by doubling.
 */
export class LineSplitter {
  #line = 0;
  /**
   * Decodes the lines. At every newline it holds no part of a character,
   * and it is flushed before a frame, whose bytes are never text.
   */
  #decoder = new TextDecoder("utf-8", { ignoreBOM: true });
  /** The pieces of a line that the chunks so far have cut. */
  #pieces: string[] = [];
  /** Whether the decoder may hold the start of a character, from the last piece. */
  #pending = false;
  /** The start of a frame that the chunks so far have cut. */
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
      at = this.#inFrame ? this.#frame(chunk, at, onFrame) : this.#lines(chunk, at, onLine);
    }
  }

  /**
   * Ends the stream. Returns what it cut short: a frame, or a final line
   * without `\n` (which may still be whole), if there is one.
   */
  finish(): Unfinished | undefined {
    if (this.#inFrame) {
      this.#inFrame = false;
      const received = this.#heldLength;
      this.#heldLength = 0;
      return { kind: "frame", line: this.#line, received, length: this.#frameLength };
    }
    // The start of a character that the stream ended in decodes as U+FFFD.
    this.#pieces.push(this.#decoder.decode());
    let text = this.#pieces.join("");
    this.#pieces = [];
    this.#pending = false;
    if (text === "") return undefined;
    if (this.#line === 0 && text.startsWith(BOM)) text = text.slice(1);
    return { kind: "line", text, line: this.#line + 1 };
  }

  /**
   * Hands out the lines of `chunk` from `at`, until its end or a frame;
   * returns the index where it stopped.
   */
  #lines(chunk: Uint8Array, at: number, onLine: LineCallback): number {
    // The text of the chunk from byte `at` on, once a long line made it
    // worth decoding whole; `from` is its code unit where byte `at` is.
    let text: string | undefined;
    let from = 0;
    while (at < chunk.length) {
      let byte: number;
      let line: string;
      const near = text === undefined
        ? chunk.subarray(at, Math.min(chunk.length, at + SHORT_LINE)).indexOf(0x0a)
        : -1;
      if (near >= 0) {
        byte = at + near;
        line = this.#decoder.decode(chunk.subarray(at, byte));
      } else {
        if (text === undefined) {
          text = this.#decoder.decode(chunk.subarray(at), { stream: true });
          from = 0;
        }
        const newline = text.indexOf("\n", from);
        if (newline < 0) {
          this.#piece(text.slice(from), chunk[chunk.length - 1]!);
          return chunk.length;
        }
        // The byte of the newline (see the class's comment).
        byte = at + newline - from;
        if (this.#pending || chunk[byte] !== 0x0a) byte = chunk.indexOf(0x0a, at);
        line = text.slice(from, newline);
        from = newline + 1;
      }
      if (this.#pieces.length > 0) {
        this.#pieces.push(line);
        line = this.#pieces.join("");
        this.#pieces = [];
      }
      this.#pending = false;
      if (++this.#line === 1 && line.startsWith(BOM)) line = line.slice(1);
      at = byte + 1;
      const frame = onLine(line, this.#line);
      if (frame > 0) {
        // What was decoded past the newline is the frame's, not text.
        if (text !== undefined) this.#decoder.decode();
        this.#frameLength = frame;
        this.#inFrame = true;
        return at;
      }
    }
    return at;
  }

  /** Keeps the start of a line that the chunk ends in the middle of. */
  #piece(text: string, lastByte: number): void {
    if (text !== "") this.#pieces.push(text);
    // The decoder may keep the start of a character, which the next chunk
    // ends: its text is then not aligned with its bytes until a newline.
    this.#pending = lastByte >= 0x80;
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

  /** Appends `chunk[start, end)` to the held frame bytes. */
  #hold(chunk: Uint8Array, start: number, end: number): void {
    const needed = this.#heldLength + end - start;
    if (needed > this.#held.length) {
      // Growing with the bytes that came, not with the length a frame
      // claims, keeps a stream cut short from allocating what never arrives.
      const bigger = new Uint8Array(Math.max(needed, 2 * this.#held.length, 4096));
      bigger.set(this.#held.subarray(0, this.#heldLength));
      this.#held = bigger;
    }
    this.#held.set(chunk.subarray(start, end), this.#heldLength);
    this.#heldLength = needed;
  }
}
