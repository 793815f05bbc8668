/**
 * Splits a UTF-8 byte stream into lines, incrementally.
 *
 * Private to the protocol decoder: it knows nothing of records.
 *
 * @module
 */

/** Receives one complete line (without its `\n`) and its 1-based number. */
export type LineCallback = (text: string, line: number) => void;

/** The unterminated text left at the end of a stream, with its line number. */
export interface PartialLine {
  /** The text after the last `\n`. */
  text: string;
  /** Its 1-based line number. */
  line: number;
}

/**
 * An incremental line splitter.
 *
 * Bytes go through one `TextDecoder` in stream mode, so a multi-byte
 * character split across two chunks decodes whole. A line that spans many
 * chunks is kept as a list of pieces and joined once, when its `\n` arrives:
 * appending to one string and searching it for `\n` on every chunk would be
 * quadratic in the line's length.
 */
export class LineSplitter {
  #decoder = new TextDecoder("utf-8");
  #pieces: string[] = [];
  #line = 0;

  /** How many complete lines have been handed out so far. */
  get line(): number {
    return this.#line;
  }

  /** Feeds one chunk, calling `onLine` for every line it completes. */
  push(chunk: Uint8Array, onLine: LineCallback): void {
    this.#split(this.#decoder.decode(chunk, { stream: true }), onLine);
  }

  /**
   * Ends the stream. Returns the final line when the stream did not end
   * with `\n` and that line holds more than whitespace.
   */
  finish(): PartialLine | undefined {
    const tail = this.#decoder.decode();
    if (tail !== "") this.#pieces.push(tail);
    const text = this.#pieces.join("");
    this.#pieces = [];
    if (text.trim() === "") return undefined;
    return { text, line: this.#line + 1 };
  }

  #split(text: string, onLine: LineCallback): void {
    let newline = text.indexOf("\n");
    if (newline < 0) {
      if (text !== "") this.#pieces.push(text);
      return;
    }
    let first = text.slice(0, newline);
    if (this.#pieces.length > 0) {
      this.#pieces.push(first);
      first = this.#pieces.join("");
      this.#pieces = [];
    }
    onLine(first, ++this.#line);
    let start = newline + 1;
    while ((newline = text.indexOf("\n", start)) >= 0) {
      onLine(text.slice(start, newline), ++this.#line);
      start = newline + 1;
    }
    if (start < text.length) this.#pieces.push(text.slice(start));
  }
}
