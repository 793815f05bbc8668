/**
 * The protobuf wire format, as much of it as Perfetto's trace needs: a
 * builder for messages written off the hot path, varint helpers for the
 * writer's hot path, and a reader of fields.
 *
 * Numbers are JavaScript numbers: exact up to 2^53, which every timestamp,
 * id and count of a Panopticon trace stays below.
 *
 * @module
 */

/** The wire types of the protobuf encoding that Perfetto's messages use. */
export const WireType = { Varint: 0, Fixed64: 1, Bytes: 2, Fixed32: 5 } as const;
/** One of {@linkcode WireType}'s values (3 and 4, groups, are not used). */
export type WireType = number;

const encoder = new TextEncoder();
const TWO_32 = 0x100000000;

/** The bytes a varint of `n` (a non-negative integer below 2^53) takes. */
export function varintSize(n: number): number {
  let size = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

/**
 * Writes `n`, a non-negative integer below 2^53, as a varint at `at`;
 * returns the index after it. Small values, the common case, take the
 * integer path.
 */
export function writeVarint(out: Uint8Array, at: number, n: number): number {
  if (n < 0x80) {
    out[at] = n;
    return at + 1;
  }
  if (n < 0x4000) {
    out[at] = (n & 0x7f) | 0x80;
    out[at + 1] = n >>> 7;
    return at + 2;
  }
  while (n >= 0x80000000) {
    // Beyond 31 bits, `>>>` and `|` would truncate: divide instead.
    const q = Math.floor(n / 128);
    out[at++] = (n - q * 128) | 0x80;
    n = q;
  }
  while (n >= 0x80) {
    out[at++] = (n & 0x7f) | 0x80;
    n >>>= 7;
  }
  out[at++] = n;
  return at;
}

/**
 * Builds one message: fields are appended in the order they are given.
 * For the writer's rare packets (descriptors, interned data, metadata); the
 * packets of slices are written byte by byte instead.
 */
export class ProtoWriter {
  #buffer = new Uint8Array(64);
  #length = 0;

  /** The bytes written so far. */
  get length(): number {
    return this.#length;
  }

  /** Appends a varint field; `value` is a non-negative integer below 2^53, or a boolean. */
  varint(field: number, value: number | boolean): this {
    this.#tag(field, WireType.Varint);
    this.#varint(typeof value === "boolean" ? Number(value) : value);
    return this;
  }

  /**
   * Appends an `int64` field: negative values take ten bytes, as two's
   * complement.
   */
  int64(field: number, value: number): this {
    if (value >= 0) return this.varint(field, value);
    this.#tag(field, WireType.Varint);
    let big = BigInt.asUintN(64, BigInt(value));
    const out = this.#reserve(10);
    for (let i = 0; i < 9; i++) {
      out[this.#length++] = Number(big & 0x7fn) | 0x80;
      big >>= 7n;
    }
    out[this.#length++] = Number(big);
    return this;
  }

  /** Appends a `double` field. */
  double(field: number, value: number): this {
    this.#tag(field, WireType.Fixed64);
    const out = this.#reserve(8);
    new DataView(out.buffer).setFloat64(this.#length, value, true);
    this.#length += 8;
    return this;
  }

  /** Appends a `fixed64` field; `value` is a non-negative integer below 2^53. */
  fixed64(field: number, value: number): this {
    this.#tag(field, WireType.Fixed64);
    const out = this.#reserve(8);
    const view = new DataView(out.buffer);
    view.setUint32(this.#length, value % TWO_32, true);
    view.setUint32(this.#length + 4, Math.floor(value / TWO_32), true);
    this.#length += 8;
    return this;
  }

  /** Appends a string field, as UTF-8. */
  string(field: number, value: string): this {
    return this.bytes(field, encoder.encode(value));
  }

  /** Appends a length-delimited field. */
  bytes(field: number, value: Uint8Array): this {
    this.#tag(field, WireType.Bytes);
    this.#varint(value.length);
    this.#reserve(value.length).set(value, this.#length);
    this.#length += value.length;
    return this;
  }

  /** Appends a nested message. */
  message(field: number, value: ProtoWriter): this {
    return this.bytes(field, value.finish());
  }

  /** The message's bytes (a view: do not write after taking it). */
  finish(): Uint8Array {
    return this.#buffer.subarray(0, this.#length);
  }

  #tag(field: number, wire: WireType): void {
    this.#varint(field * 8 + wire);
  }

  #varint(n: number): void {
    this.#length = writeVarint(this.#reserve(10), this.#length, n);
  }

  #reserve(bytes: number): Uint8Array {
    if (this.#length + bytes > this.#buffer.length) {
      const bigger = new Uint8Array(Math.max(this.#buffer.length * 2, this.#length + bytes));
      bigger.set(this.#buffer.subarray(0, this.#length));
      this.#buffer = bigger;
    }
    return this.#buffer;
  }
}

/** The wire bytes did not decode: cut short, or not protobuf. */
export class ProtoDecodeError extends Error {
  constructor(message: string, readonly offset: number) {
    super(`${message} at byte ${offset}`);
    this.name = "ProtoDecodeError";
  }
}

/**
 * Reads the fields of one message in order. After {@linkcode ProtoReader.next}
 * returns true, `field` and `wire` describe the field, and its value is read
 * with the method for its type, or skipped by calling `next` again.
 */
export class ProtoReader {
  /** The field number of the current field. */
  field = 0;
  /** The wire type of the current field. */
  wire: WireType = WireType.Varint;
  #at: number;
  #end: number;
  #valueAt = 0;
  #consumed = true;
  readonly #view: DataView;

  /** Reads `bytes[start, end)`; offsets in errors add `base`. */
  constructor(
    readonly bytes: Uint8Array,
    start = 0,
    end = bytes.length,
    readonly base = 0,
  ) {
    this.#at = start;
    this.#end = end;
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  /** Moves to the next field; false at the end of the message. */
  next(): boolean {
    if (!this.#consumed) this.#skip();
    if (this.#at >= this.#end) return false;
    const tag = this.#readVarint();
    this.field = Math.floor(tag / 8);
    this.wire = tag % 8;
    if (this.field === 0) this.#fail("a field number of 0");
    this.#valueAt = this.#at;
    this.#consumed = false;
    return true;
  }

  /** The current varint field as an unsigned number (exact below 2^53). */
  uint(): number {
    this.#expect(WireType.Varint);
    this.#consumed = true;
    return this.#readVarint();
  }

  /** The current varint field as an `int64` (two's complement). */
  int(): number {
    this.#expect(WireType.Varint);
    this.#consumed = true;
    const start = this.#at;
    const value = this.#readVarint();
    // A ten-byte varint has its 64th bit set: a negative int64.
    if (this.#at - start < 10) return value;
    let big = 0n;
    for (let i = this.#at - 1; i >= start; i--) big = (big << 7n) | BigInt(this.bytes[i]! & 0x7f);
    return Number(BigInt.asIntN(64, big));
  }

  /** The current varint field as a boolean. */
  bool(): boolean {
    return this.uint() !== 0;
  }

  /** The current `double` field. */
  double(): number {
    this.#expect(WireType.Fixed64);
    this.#consumed = true;
    this.#need(8);
    const value = this.#view.getFloat64(this.#at, true);
    this.#at += 8;
    return value;
  }

  /** The current `fixed64` field as a number (exact below 2^53). */
  fixed64(): number {
    this.#expect(WireType.Fixed64);
    this.#consumed = true;
    this.#need(8);
    const value = this.#view.getUint32(this.#at, true) +
      this.#view.getUint32(this.#at + 4, true) * TWO_32;
    this.#at += 8;
    return value;
  }

  /** The current length-delimited field's bytes, as `[start, end)` of `bytes`. */
  span(): [number, number] {
    this.#expect(WireType.Bytes);
    this.#consumed = true;
    const length = this.#readVarint();
    this.#need(length);
    const start = this.#at;
    this.#at += length;
    return [start, this.#at];
  }

  /** The current length-delimited field as a reader of its fields. */
  message(): ProtoReader {
    const [start, end] = this.span();
    return new ProtoReader(this.bytes, start, end, this.base);
  }

  /** The current length-delimited field as UTF-8 text. */
  string(): string {
    const [start, end] = this.span();
    return decoder.decode(this.bytes.subarray(start, end));
  }

  /** The offset of the current field's value, counted from the stream's start. */
  get offset(): number {
    return this.base + this.#valueAt;
  }

  /**
   * The values of a repeated scalar field, packed (one length-delimited
   * field) or not (this one value): varints, or fixed64 when `fixed`.
   */
  repeated(fixed: boolean): number[] {
    if (this.wire !== WireType.Bytes) return [fixed ? this.fixed64() : this.uint()];
    const inner = this.message();
    const values: number[] = [];
    while (inner.#at < inner.#end) {
      if (fixed) {
        inner.#need(8);
        values.push(
          inner.#view.getUint32(inner.#at, true) +
            inner.#view.getUint32(inner.#at + 4, true) * TWO_32,
        );
        inner.#at += 8;
      } else {
        values.push(inner.#readVarint());
      }
    }
    return values;
  }

  #skip(): void {
    this.#consumed = true;
    switch (this.wire) {
      case WireType.Varint:
        this.#readVarint();
        return;
      case WireType.Fixed64:
        this.#need(8);
        this.#at += 8;
        return;
      case WireType.Bytes:
        this.span();
        return;
      case WireType.Fixed32:
        this.#need(4);
        this.#at += 4;
        return;
      default:
        this.#fail(`wire type ${this.wire} (groups are not used)`);
    }
  }

  #expect(wire: WireType): void {
    if (this.wire !== wire) {
      this.#fail(`field ${this.field} has wire type ${this.wire}, expected ${wire}`);
    }
  }

  #need(bytes: number): void {
    if (this.#at + bytes > this.#end) this.#fail("a field that runs past the end of its message");
  }

  #readVarint(): number {
    const bytes = this.bytes;
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.#at >= this.#end) this.#fail("a varint cut off by the end of its message");
      const byte = bytes[this.#at++]!;
      value += (byte & 0x7f) * scale;
      if (byte < 0x80) return value;
      scale *= 128;
    }
    return this.#fail("a varint longer than ten bytes");
  }

  #fail(what: string): never {
    throw new ProtoDecodeError(`malformed protobuf: ${what}`, this.base + this.#at);
  }
}

const decoder = new TextDecoder();
