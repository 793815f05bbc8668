/**
 * The source text of the lines that `--lines` records (op 19), looked up
 * on the converter's side: the collector sends only line numbers, so that
 * its hot path writes a varint and nothing else.
 *
 * Each file is read once, whole, the first time one of its lines is asked
 * for, and kept split into lines: the converter's memory for this grows
 * with the files of the selected code, never with the events.
 *
 * @module
 */

/** Reads a file's bytes, or throws: `Deno.readFileSync` unless a test says otherwise. */
export type FileReader = (path: string) => Uint8Array;

/**
 * The lines of source files, by file and line number.
 *
 * @example
 * ```ts
 * import { SourceLines } from "./source_lines.ts";
 * import assert from "node:assert/strict";
 *
 * const files = { "/app/a.py": "def f():\n    return 1\n" };
 * const source = new SourceLines(
 *   "/app",
 *   (path) => new TextEncoder().encode(files[path as keyof typeof files]),
 * );
 * assert.equal(source.text("a.py", 2), "return 1");
 * assert.equal(source.text("a.py", 9), "");
 * ```
 */
export class SourceLines {
  readonly #cwd: string | undefined;
  readonly #read: FileReader;
  /** Each file's lines, or `null` for a file that cannot be read. */
  readonly #files = new Map<string, string[] | null>();
  readonly #decoder = new TextDecoder();

  /**
   * `cwd` resolves relative file names (the program's directory at start-up,
   * from the `hello`: Python 3.8 names the script as it was given).
   */
  constructor(cwd?: string, read: FileReader = Deno.readFileSync) {
    this.#cwd = cwd;
    this.#read = read;
  }

  /**
   * Line `line` (1-based) of `file`, without its indentation or line end;
   * `""` when the file cannot be read (`<string>`, a file since removed, no
   * permission) or is shorter.
   */
  text(file: string, line: number): string {
    let lines = this.#files.get(file);
    if (lines === undefined) {
      lines = this.#load(file);
      this.#files.set(file, lines);
    }
    return lines?.[line - 1]?.trim() ?? "";
  }

  #load(file: string): string[] | null {
    // Code made at run time (`<string>`, `<frozen ...>`) has no file.
    if (file === "" || file.startsWith("<")) return null;
    const path = file.startsWith("/") || this.#cwd === undefined ? file : `${this.#cwd}/${file}`;
    try {
      return this.#decoder.decode(this.#read(path)).split(/\r\n|\r|\n/);
    } catch {
      return null;
    }
  }
}
