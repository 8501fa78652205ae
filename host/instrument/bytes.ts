// Strict LEB128 reading and growable writing. Strict, because `instrument` re-encodes some numbers:
// an over-long or over-wide LEB the spec calls malformed must be refused here, not silently canonicalised
// into a module V8 would then accept.
import { InstrumentError } from './errors.ts';

export class ByteReader {
  pos: number;
  /** Function being read, for error messages. */
  functionIndex: number | undefined = undefined;

  constructor(
    readonly buf: Uint8Array,
    start = 0,
    public end = buf.length,
  ) {
    this.pos = start;
  }

  fail(reason: string, offset = this.pos): never {
    throw new InstrumentError('FTW_BAD_MODULE', reason, offset, this.functionIndex);
  }

  atEnd(): boolean {
    return this.pos >= this.end;
  }

  u8(): number {
    if (this.pos >= this.end) this.fail('unexpected end');
    return this.buf[this.pos++]!;
  }

  /** Unsigned LEB128, at most 5 bytes, the unused bits of the fifth byte zero. */
  u32(): number {
    const start = this.pos;
    let result = 0;
    let shift = 0;
    for (let i = 0; i < 5; i++) {
      if (this.pos >= this.end) this.fail('unexpected end in integer', start);
      const b = this.buf[this.pos++]!;
      if (i === 4 && (b & 0xf0) !== 0) this.fail('integer too large (u32)', start);
      result += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return result;
      shift += 7;
    }
    return this.fail('integer representation too long (u32)', start);
  }

  /** Signed LEB128 of `bits` width (32, 33 or 64): checks length and the unused bits, returns nothing. */
  skipSigned(bits: 32 | 33 | 64): void {
    const start = this.pos;
    const maxBytes = Math.ceil(bits / 7);
    for (let i = 0; i < maxBytes; i++) {
      if (this.pos >= this.end) this.fail('unexpected end in integer', start);
      const b = this.buf[this.pos++]!;
      if ((b & 0x80) === 0) {
        if (i === maxBytes - 1) {
          // Bits above `bits` in the last byte must all equal the sign bit.
          const used = bits - 7 * i; // value bits carried by this byte
          const rest = b >> (used - 1); // sign bit and above
          const allOnes = (1 << (8 - used)) - 1; // as many ones as `rest` has bits
          if (rest !== 0 && rest !== allOnes) this.fail(`integer too large (s${bits})`, start);
        }
        return;
      }
    }
    this.fail(`integer representation too long (s${bits})`, start);
  }

  /** Signed LEB128 up to 33 bits, as a number (block types). */
  s33(): number {
    const start = this.pos;
    let result = 0;
    let shift = 0;
    for (let i = 0; i < 5; i++) {
      if (this.pos >= this.end) this.fail('unexpected end in integer', start);
      const b = this.buf[this.pos++]!;
      result += (b & 0x7f) * 2 ** shift;
      shift += 7;
      if ((b & 0x80) === 0) {
        if (i === 4) {
          const rest = b >> 4;
          if (rest !== 0 && rest !== 0x7) this.fail('integer too large (s33)', start);
        }
        if (b & 0x40) result -= 2 ** shift;
        return result;
      }
    }
    return this.fail('integer representation too long (s33)', start);
  }

  skip(n: number): void {
    if (n > this.end - this.pos) this.fail(`unexpected end: need ${n} bytes`);
    this.pos += n;
  }

  /** A length-prefixed byte vector (name); returns [start, end) of its content. */
  vecBytes(): [number, number] {
    const n = this.u32();
    const start = this.pos;
    this.skip(n);
    return [start, start + n];
  }
}

export class ByteWriter {
  buf: Uint8Array<ArrayBuffer>;
  len = 0;

  constructor(capacity = 1024) {
    this.buf = new Uint8Array(capacity);
  }

  reset(): void {
    this.len = 0;
  }

  /** Makes room for `n` more bytes at once (avoids repeated doubling for a large section). */
  reserve(n: number): void {
    if (this.len + n > this.buf.length) this.grow(n);
  }

  private grow(need: number): void {
    let cap = this.buf.length * 2;
    while (cap < this.len + need) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }

  byte(b: number): void {
    if (this.len >= this.buf.length) this.grow(1);
    this.buf[this.len++] = b;
  }

  bytes(src: Uint8Array, start = 0, end = src.length): void {
    const n = end - start;
    if (this.len + n > this.buf.length) this.grow(n);
    if (n <= 32) {
      // a subarray per short copy costs more than the copy (instructions are a few bytes each)
      const buf = this.buf;
      let at = this.len;
      for (let i = start; i < end; i++) buf[at++] = src[i]!;
    } else {
      this.buf.set(src.subarray(start, end), this.len);
    }
    this.len += n;
  }

  u32(value: number): void {
    let v = value >>> 0;
    do {
      let b = v & 0x7f;
      v >>>= 7;
      if (v !== 0) b |= 0x80;
      this.byte(b);
    } while (v !== 0);
  }

  /** Signed LEB128 of a 64-bit value. */
  s64(value: bigint): void {
    let v = value;
    for (;;) {
      const b = Number(v & 0x7fn);
      v >>= 7n;
      const done = (v === 0n && (b & 0x40) === 0) || (v === -1n && (b & 0x40) !== 0);
      this.byte(done ? b : b | 0x80);
      if (done) return;
    }
  }

  /** Signed LEB128 of a safe integer. */
  sInt(value: number): void {
    let v = value;
    for (;;) {
      const b = v & 0x7f;
      v = Math.floor(v / 128);
      const done = (v === 0 && (b & 0x40) === 0) || (v === -1 && (b & 0x40) !== 0);
      this.byte(done ? b : b | 0x80);
      if (done) return;
    }
  }

  name(text: string): void {
    const encoded = new TextEncoder().encode(text);
    this.u32(encoded.length);
    this.bytes(encoded);
  }

  /** Writes `body` prefixed by its length. */
  sized(body: ByteWriter): void {
    this.u32(body.len);
    this.bytes(body.buf, 0, body.len);
  }

  toBytes(): Uint8Array<ArrayBuffer> {
    return this.buf.slice(0, this.len);
  }
}

/** An unsigned LEB128 at `pos` that an earlier pass already checked. */
export function readCheckedU32(buf: Uint8Array, pos: number): number {
  let result = 0;
  let shift = 0;
  for (;;) {
    const b = buf[pos++]!;
    result += (b & 0x7f) * 2 ** shift;
    if ((b & 0x80) === 0) return result;
    shift += 7;
  }
}

/** Length of `value` encoded as unsigned LEB128. */
export function u32Size(value: number): number {
  let n = 1;
  let v = value >>> 7;
  while (v !== 0) {
    n++;
    v >>>= 7;
  }
  return n;
}
