// Entry codec. An entry is a msgpack array [kind, icount_delta, ...fields]. The fast kinds are written by
// hand into a reused growable buffer (no allocation per entry); strings go through msgpackr's Packr and
// every frame body is decoded with msgpackr's Unpackr, then checked field by field.
//
// Deltas live inside one frame only, so any frame decodes on its own: icount_delta is from the previous
// entry of the frame (the first entry's is from the frame header's base icount, so 0), and a clock value
// is a 64-bit wrapping delta from the previous entry of the same kind in the frame (the first is absolute).
import { Packr, Unpackr } from 'msgpackr';
import { digest32 } from './crc32c.ts';
import { LogEntryError } from './errors.ts';
import {
  EntryKind,
  entryKindName,
  isEntryKind,
  RECV_CLOSED,
  RECV_TIMEOUT,
  TRACE_VALUES_MAX,
  type LogEntry,
} from './kinds.ts';

// Module-local copies of imports used on hot paths: a test runner that rewrites imports into getters
// (vitest) would otherwise pay a getter call per use, which made encoding 4x slower there.
const K = EntryKind;
const CLOCK_NOW = EntryKind.CLOCK_NOW;
const CLOCK_MONO = EntryKind.CLOCK_MONO;
if (new Uint8Array(new Uint32Array([1]).buffer)[0] !== 1) throw new Error('ftwasm log codec needs a little-endian host');

const TIMEOUT = RECV_TIMEOUT;
const CLOSED = RECV_CLOSED;

/** recv's non-message results: 0 timeout, -1 closed, or -(bytes needed) <= -4 when the buffer was too small. */
function isRecvCode(x: unknown): x is number {
  return x === TIMEOUT || x === CLOSED || (typeof x === 'number' && Number.isInteger(x) && x <= -4 && x >= -0x80000000);
}
const VALUES_MAX = TRACE_VALUES_MAX;
const isKind = isEntryKind;

export const U64_MAX = (1n << 64n) - 1n;
export const I64_MIN = -(1n << 63n);
export const I64_MAX = (1n << 63n) - 1n;
const TWO_32 = 4294967296;

/** Largest encoding of a clock entry: fixarray + kind + uint64 delta + int64 value. */
export const CLOCK_ENTRY_BYTES_MAX = 1 + 1 + 9 + 9;

// ---------------------------------------------------------------------------------------------------------
// Writing msgpack by hand.

/** A growable byte buffer with the msgpack encodings the log needs, all big-endian as msgpack wants. */
export class ByteWriter {
  buf: Uint8Array;
  view: DataView;
  pos = 0;

  constructor(capacity: number) {
    this.buf = new Uint8Array(capacity);
    this.view = new DataView(this.buf.buffer);
  }

  /** Makes room for `extra` more bytes after `pos`. */
  ensure(extra: number): void {
    if (this.pos + extra > this.buf.length) this.grow(this.pos + extra);
  }

  private grow(need: number): void {
    let capacity = this.buf.length * 2;
    while (capacity < need) capacity *= 2;
    const next = new Uint8Array(capacity);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }

  /** 0 <= v <= 2^32-1, smallest encoding. */
  uint(v: number): void {
    const b = this.buf;
    let p = this.pos;
    if (v < 0x80) {
      b[p++] = v;
    } else if (v < 0x100) {
      b[p++] = 0xcc;
      b[p++] = v;
    } else if (v < 0x10000) {
      b[p++] = 0xcd;
      b[p++] = v >>> 8;
      b[p++] = v & 0xff;
    } else {
      b[p++] = 0xce;
      this.view.setUint32(p, v);
      p += 4;
    }
    this.pos = p;
  }

  /** -2^31 <= v < 0, smallest encoding. */
  negInt(v: number): void {
    const b = this.buf;
    let p = this.pos;
    if (v >= -32) {
      b[p++] = v & 0xff;
    } else if (v >= -128) {
      b[p++] = 0xd0;
      b[p++] = v & 0xff;
    } else if (v >= -32768) {
      b[p++] = 0xd1;
      this.view.setInt16(p, v);
      p += 2;
    } else {
      b[p++] = 0xd2;
      this.view.setInt32(p, v);
      p += 4;
    }
    this.pos = p;
  }

  /** -2^31 <= v <= 2^32-1. */
  int(v: number): void {
    if (v >= 0) this.uint(v);
    else this.negInt(v);
  }

  /** An unsigned 64-bit value given as two u32 words. */
  u64Words(hi: number, lo: number): void {
    if (hi === 0) {
      this.uint(lo);
      return;
    }
    this.buf[this.pos] = 0xcf;
    this.view.setUint32(this.pos + 1, hi);
    this.view.setUint32(this.pos + 5, lo);
    this.pos += 9;
  }

  /** A two's-complement signed 64-bit value given as two u32 words. */
  i64Words(hi: number, lo: number): void {
    if (hi === 0) {
      this.uint(lo);
    } else if (hi === 0xffffffff && lo >= 0x80000000) {
      this.negInt(lo - TWO_32);
    } else {
      this.buf[this.pos] = hi < 0x80000000 ? 0xcf : 0xd3;
      this.view.setUint32(this.pos + 1, hi);
      this.view.setUint32(this.pos + 5, lo);
      this.pos += 9;
    }
  }

  /** Always float64, so -0 and NaN keep their meaning (msgpackr would write -0 as the integer 0). */
  f64(v: number): void {
    this.buf[this.pos] = 0xcb;
    this.view.setFloat64(this.pos + 1, v);
    this.pos += 9;
  }

  arrayHeader(n: number): void {
    const b = this.buf;
    if (n < 16) {
      b[this.pos++] = 0x90 | n;
    } else {
      b[this.pos] = 0xdc;
      this.view.setUint16(this.pos + 1, n);
      this.pos += 3;
    }
  }

  bin(bytes: Uint8Array): void {
    const n = bytes.length;
    this.ensure(5 + n);
    const b = this.buf;
    if (n < 0x100) {
      b[this.pos++] = 0xc4;
      b[this.pos++] = n;
    } else if (n < 0x10000) {
      b[this.pos] = 0xc5;
      this.view.setUint16(this.pos + 1, n);
      this.pos += 3;
    } else {
      b[this.pos] = 0xc6;
      this.view.setUint32(this.pos + 1, n);
      this.pos += 5;
    }
    b.set(bytes, this.pos);
    this.pos += n;
  }

  raw(bytes: Uint8Array): void {
    this.ensure(bytes.length);
    this.buf.set(bytes, this.pos);
    this.pos += bytes.length;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Validating an entry before it is written.

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

function isU32(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xffffffff;
}
function isI32(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= -0x80000000 && v <= 0x7fffffff;
}
function isString(v: unknown): v is string {
  return typeof v === 'string' && !LONE_SURROGATE.test(v);
}
function isI64(v: unknown): v is bigint {
  return typeof v === 'bigint' && v >= I64_MIN && v <= I64_MAX;
}

/** Why a payload is invalid for its kind, or null when it is fine. */
function payloadProblem(entry: LogEntry): string | null {
  const p: unknown = entry.payload;
  switch (entry.kind) {
    case K.CLOCK_NOW:
    case K.CLOCK_MONO:
      return isI64(p) ? null : 'payload must be a bigint in the i64 range';
    case K.RANDOM:
    case K.CHECKPOINT:
      return p instanceof Uint8Array ? null : 'payload must be a Uint8Array';
    case K.CPU_ID:
    case K.END:
      return isI32(p) ? null : 'payload must be an i32';
    case K.RECV:
      return p instanceof Uint8Array || isRecvCode(p)
        ? null
        : 'payload must be a Uint8Array (session id + message) or a result code: 0 (timeout), -1 (closed) or -needed <= -4 (buffer too small)';
    case K.SEND: {
      const s = entry.payload;
      if (typeof s !== 'object' || s === null) return 'payload must be { session, digest, length, bytes? }';
      if (!isU32(s.session) || !isU32(s.digest) || !isU32(s.length)) return 'session, digest and length must be u32';
      if (s.bytes === undefined) return null;
      if (!(s.bytes instanceof Uint8Array)) return 'bytes must be a Uint8Array when present';
      if (s.bytes.length !== s.length) return `length ${s.length} differs from bytes.length ${s.bytes.length}`;
      return digest32(s.bytes) === s.digest ? null : 'digest is not digest32(bytes)';
    }
    case K.LOG: {
      const s = entry.payload;
      if (typeof s !== 'object' || s === null) return 'payload must be { digest, length }';
      return isU32(s.digest) && isU32(s.length) ? null : 'digest and length must be u32';
    }
    case K.INTERRUPT: {
      const s = entry.payload;
      if (typeof s !== 'object' || s === null) return 'payload must be { event, arg }';
      return isI32(s.event) && isI32(s.arg) ? null : 'event and arg must be i32';
    }
    case K.INVOKE: {
      const s = entry.payload;
      if (typeof s !== 'object' || s === null) return 'payload must be { handler, bytes }';
      if (!isString(s.handler)) return 'handler must be a well-formed string (no lone surrogates)';
      return s.bytes instanceof Uint8Array ? null : 'bytes must be a Uint8Array';
    }
    case K.SEED:
    case K.DATE_NOW:
      return typeof p === 'number' ? null : 'payload must be a number (f64)';
    case K.ABORT: {
      const s = entry.payload;
      if (typeof s !== 'object' || s === null) return 'payload must be { message, file, line, column }';
      if (!isString(s.message) || !isString(s.file)) return 'message and file must be well-formed strings';
      return isU32(s.line) && isU32(s.column) ? null : 'line and column must be u32';
    }
    case K.TRACE: {
      const s = entry.payload;
      if (typeof s !== 'object' || s === null) return 'payload must be { message, values }';
      if (!isString(s.message)) return 'message must be a well-formed string (no lone surrogates)';
      if (!Array.isArray(s.values) || s.values.length > VALUES_MAX) {
        return `values must be an array of at most ${VALUES_MAX} numbers`;
      }
      return s.values.every((v) => typeof v === 'number') ? null : 'values must be numbers';
    }
  }
}

/** Throws LogEntryError unless `entry` may be written next: its seq, kind, icount order and payload. */
export function checkEntry(entry: LogEntry, nextSeq: number, lastIcount: bigint | number): void {
  if (typeof entry !== 'object' || entry === null) throw new LogEntryError(nextSeq, '?', 'not an entry object');
  const name = entryKindName(entry.kind);
  if (entry.seq !== nextSeq) throw new LogEntryError(nextSeq, name, `seq is ${String(entry.seq)}, expected ${nextSeq}`);
  if (!isKind(entry.kind)) throw new LogEntryError(nextSeq, name, 'unknown kind');
  checkIcount(nextSeq, entry.kind, entry.icount, lastIcount);
  const problem = payloadProblem(entry);
  if (problem !== null) throw new LogEntryError(nextSeq, name, problem);
}

/** Throws LogEntryError unless icount is a u64 no smaller than the previous entry's. */
export function checkIcount(seq: number, kind: number, icount: unknown, lastIcount: bigint | number, allowNumber = false): void {
  const ok =
    typeof icount === 'bigint'
      ? icount >= 0n && icount <= U64_MAX
      : allowNumber && typeof icount === 'number' && Number.isSafeInteger(icount) && icount >= 0;
  if (!ok) {
    const what = allowNumber ? 'a u64 bigint or a non-negative safe integer' : 'a u64 bigint';
    throw new LogEntryError(seq, entryKindName(kind), `icount ${String(icount)} is not ${what}`);
  }
  if ((icount as bigint | number) < lastIcount) {
    throw new LogEntryError(seq, entryKindName(kind), `icount ${icount} is below the previous entry's ${lastIcount}`);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Encoding, with the deltas of the open frame.

const packr = new Packr({ useRecords: false, variableMapSize: true });


/**
 * Writes entries of one frame into a ByteWriter, keeping the frame's delta state. Nothing allocates per
 * entry except strings (ABORT, TRACE, INVOKE). An encode leaves the new delta state pending: `commit()`
 * makes it current, `rollback(start)` forgets the bytes and the state (used when the frame is full).
 */
export class EntryEncoder {
  readonly w: ByteWriter;
  // bigint -> two u32 words without allocating
  private readonly scratch = new DataView(new ArrayBuffer(8));
  // A typed-array store splits a bigint into words ~6x faster than DataView.setBigInt64 (hot path).
  // Word order follows the platform; Node runs on little-endian hosts only, checked below.
  private readonly big = new BigInt64Array(1);
  private readonly ubig = new BigUint64Array(this.big.buffer);
  private readonly words = new Uint32Array(this.big.buffer);
  private icHi = 0;
  private icLo = 0;
  private nowSet = false;
  private nowHi = 0;
  private nowLo = 0;
  private monoSet = false;
  private monoHi = 0;
  private monoLo = 0;
  // pending state of the entry just encoded
  private pIcHi = 0;
  private pIcLo = 0;
  private pClockKind = 0;
  private pClockHi = 0;
  private pClockLo = 0;

  constructor(w: ByteWriter) {
    this.w = w;
  }

  /** Starts a frame whose base icount (the first entry's) is `baseIcount`: deltas restart. */
  beginFrame(baseIcount: bigint): void {
    this.scratch.setBigUint64(0, baseIcount, true);
    this.icLo = this.scratch.getUint32(0, true);
    this.icHi = this.scratch.getUint32(4, true);
    this.nowSet = false;
    this.monoSet = false;
  }

  commit(): void {
    this.icHi = this.pIcHi;
    this.icLo = this.pIcLo;
    if (this.pClockKind === CLOCK_NOW) {
      this.nowSet = true;
      this.nowHi = this.pClockHi;
      this.nowLo = this.pClockLo;
    } else if (this.pClockKind === CLOCK_MONO) {
      this.monoSet = true;
      this.monoHi = this.pClockHi;
      this.monoLo = this.pClockLo;
    }
  }

  rollback(start: number): void {
    this.w.pos = start;
  }

  /** Writes array header, kind and icount delta (icount already checked to be >= the previous). */
  private head(length: number, kind: number, icount: bigint | number): void {
    const w = this.w;
    w.arrayHeader(length);
    w.buf[w.pos++] = kind;
    let lo: number;
    let hi: number;
    if (typeof icount === 'number') {
      // a safe integer (checked by the caller): split without a BigInt
      hi = Math.floor(icount / TWO_32);
      lo = icount - hi * TWO_32;
    } else {
      this.ubig[0] = icount;
      lo = this.words[0]!;
      hi = this.words[1]!;
    }
    let dlo = lo - this.icLo;
    let dhi = hi - this.icHi;
    if (dlo < 0) {
      dlo += TWO_32;
      dhi -= 1;
    }
    w.u64Words(dhi, dlo);
    this.pIcHi = hi;
    this.pIcLo = lo;
    this.pClockKind = 0;
  }

  /** A bytes entry (RANDOM): the fast path. */
  bytesEntry(kind: number, icount: bigint | number, bytes: Uint8Array): void {
    this.head(3, kind, icount);
    this.w.bin(bytes);
  }

  /** A clock entry: the fast path. Caller ensured CLOCK_ENTRY_BYTES_MAX bytes of room. */
  clock(kind: number, icount: bigint | number, ns: bigint): void {
    this.head(3, kind, icount);
    this.big[0] = ns;
    const lo = this.words[0]!;
    const hi = this.words[1]!;
    let dlo = lo;
    let dhi = hi;
    const now = kind === CLOCK_NOW;
    if (now ? this.nowSet : this.monoSet) {
      dlo = lo - (now ? this.nowLo : this.monoLo);
      dhi = hi - (now ? this.nowHi : this.monoHi);
      if (dlo < 0) {
        dlo += TWO_32;
        dhi -= 1;
      }
      dhi = dhi >>> 0;
    }
    this.w.i64Words(dhi, dlo);
    this.pClockKind = kind;
    this.pClockHi = hi;
    this.pClockLo = lo;
  }

  /** Any entry, already checked by checkEntry. */
  entry(e: LogEntry): void {
    const w = this.w;
    w.ensure(64);
    switch (e.kind) {
      case K.CLOCK_NOW:
      case K.CLOCK_MONO:
        this.clock(e.kind, e.icount, e.payload);
        return;
      case K.RANDOM:
      case K.CHECKPOINT:
        this.head(3, e.kind, e.icount);
        w.bin(e.payload);
        return;
      case K.CPU_ID:
      case K.END:
        this.head(3, e.kind, e.icount);
        w.int(e.payload);
        return;
      case K.RECV:
        this.head(3, e.kind, e.icount);
        if (e.payload instanceof Uint8Array) w.bin(e.payload);
        else w.int(e.payload);
        return;
      case K.SEND: {
        const p = e.payload;
        this.head(p.bytes === undefined ? 5 : 6, e.kind, e.icount);
        w.uint(p.session);
        w.uint(p.digest);
        w.uint(p.length);
        if (p.bytes !== undefined) w.bin(p.bytes);
        return;
      }
      case K.LOG:
        this.head(4, e.kind, e.icount);
        w.uint(e.payload.digest);
        w.uint(e.payload.length);
        return;
      case K.INTERRUPT:
        this.head(4, e.kind, e.icount);
        w.int(e.payload.event);
        w.int(e.payload.arg);
        return;
      case K.INVOKE:
        this.head(4, e.kind, e.icount);
        w.raw(packr.pack(e.payload.handler));
        w.bin(e.payload.bytes);
        return;
      case K.SEED:
      case K.DATE_NOW:
        this.head(3, e.kind, e.icount);
        w.f64(e.payload);
        return;
      case K.ABORT: {
        const p = e.payload;
        this.head(6, e.kind, e.icount);
        w.raw(packr.pack(p.message));
        w.raw(packr.pack(p.file));
        w.ensure(10);
        w.uint(p.line);
        w.uint(p.column);
        return;
      }
      case K.TRACE: {
        const p = e.payload;
        this.head(4, e.kind, e.icount);
        w.raw(packr.pack(p.message));
        w.ensure(1 + 9 * p.values.length);
        w.arrayHeader(p.values.length);
        for (const v of p.values) w.f64(v);
        return;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Decoding a frame body.

const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'bigint', copyBuffers: false });

/** Thrown by decodeBody; the frame layer turns it into a LogCorruptError naming the frame. */
export class BodyError extends Error {}

const FIELDS: readonly number[] = [0, 3, 3, 3, 3, 3, -1, 4, 4, 3, 4, 3, 6, 4, 3, 3];

function fail(index: number, seq: number, what: string): never {
  throw new BodyError(`entry ${index} (seq ${seq}): ${what}`);
}
function u32(v: unknown, index: number, seq: number, field: string): number {
  if (!isU32(v)) fail(index, seq, `${field} is not a u32`);
  return v;
}
function i32(v: unknown, index: number, seq: number, field: string): number {
  if (!isI32(v)) fail(index, seq, `${field} is not an i32`);
  return v;
}
function bytes(v: unknown, index: number, seq: number, field: string): Uint8Array {
  if (!(v instanceof Uint8Array)) fail(index, seq, `${field} is not bin`);
  return new Uint8Array(v); // a copy: the caller may reuse the buffer the frame came in
}
function str(v: unknown, index: number, seq: number, field: string): string {
  if (typeof v !== 'string') fail(index, seq, `${field} is not a string`);
  return v;
}
function f64(v: unknown, index: number, seq: number, field: string): number {
  if (typeof v !== 'number') fail(index, seq, `${field} is not a number`);
  return v;
}

/** The payload of a non-clock entry from its msgpack array `v` (length already checked). */
function decodePayload(kind: EntryKind, v: unknown[], i: number, seq: number): LogEntry['payload'] {
  const x = v[2];
  switch (kind) {
    case K.RANDOM:
    case K.CHECKPOINT:
      return bytes(x, i, seq, 'payload');
    case K.CPU_ID:
    case K.END:
      return i32(x, i, seq, 'payload');
    case K.RECV:
      return isRecvCode(x) ? x : bytes(x, i, seq, 'payload');
    case K.SEND: {
      const payload = { session: u32(x, i, seq, 'session'), digest: u32(v[3], i, seq, 'digest'), length: u32(v[4], i, seq, 'length') };
      if (v.length === 5) return payload;
      const kept = bytes(v[5], i, seq, 'bytes');
      if (kept.length !== payload.length) fail(i, seq, `SEND length ${payload.length} differs from ${kept.length} bytes kept`);
      return { ...payload, bytes: kept };
    }
    case K.LOG:
      return { digest: u32(x, i, seq, 'digest'), length: u32(v[3], i, seq, 'length') };
    case K.INTERRUPT:
      return { event: i32(x, i, seq, 'event'), arg: i32(v[3], i, seq, 'arg') };
    case K.INVOKE:
      return { handler: str(x, i, seq, 'handler'), bytes: bytes(v[3], i, seq, 'bytes') };
    case K.SEED:
    case K.DATE_NOW:
      return f64(x, i, seq, 'payload');
    case K.ABORT:
      return { message: str(x, i, seq, 'message'), file: str(v[3], i, seq, 'file'), line: u32(v[4], i, seq, 'line'), column: u32(v[5], i, seq, 'column') };
    case K.TRACE: {
      const list = v[3];
      if (!Array.isArray(list) || list.length > VALUES_MAX) fail(i, seq, 'TRACE values is not an array of at most 5');
      return { message: str(x, i, seq, 'message'), values: list.map((n: unknown, k: number) => f64(n, i, seq, `values[${k}]`)) };
    }
    case K.CLOCK_NOW:
    case K.CLOCK_MONO:
      return fail(i, seq, 'clock entries are decoded by decodeBody');
  }
}

/** A clock delta as a bigint. */
function clockDelta(x: unknown, i: number, seq: number): bigint {
  if (typeof x === 'bigint') return x;
  if (typeof x === 'number' && Number.isInteger(x)) return BigInt(x);
  return fail(i, seq, 'clock value is not an integer');
}

const MAX_SAFE = Number.MAX_SAFE_INTEGER;
const I64_TOP = 1n << 63n;
const U64_ALL = 1n << 64n;

/**
 * The fast path of decoding, for frames of clock and random entries only (an import-heavy guest's log):
 * reads the bytes directly, as the encoder wrote them, with no msgpack value per entry. Returns null at the
 * first byte it does not expect, and decodeBody then decodes the frame the general way (which also makes
 * every error message).
 */
function decodeFastBody(body: Uint8Array, count: number, firstSeq: number, baseIcount: bigint): LogEntry[] | null {
  if (baseIcount > BigInt(MAX_SAFE)) return null;
  const entries: LogEntry[] = new Array(count);
  const end = body.length;
  let pos = 0;
  let icount = Number(baseIcount);
  let now = 0n;
  let mono = 0n;
  for (let i = 0; i < count; i++) {
    if (pos + 3 > end || body[pos] !== 0x93) return null;
    const kind = body[pos + 1]!;
    pos += 2;
    // icount delta: an unsigned int, smallest form
    let b = body[pos++]!;
    let d: number;
    if (b < 0x80) d = b;
    else if (b === 0xcc && pos + 1 <= end) d = body[pos++]!;
    else if (b === 0xcd && pos + 2 <= end) (d = (body[pos]! << 8) | body[pos + 1]!), (pos += 2);
    else if (b === 0xce && pos + 4 <= end) (d = ((body[pos]! << 24) >>> 0) + ((body[pos + 1]! << 16) | (body[pos + 2]! << 8) | body[pos + 3]!)), (pos += 4);
    else return null;
    icount += d;
    if (icount > MAX_SAFE) return null;
    const seq = firstSeq + i;
    if (kind === K.RANDOM) {
      if (pos >= end) return null;
      b = body[pos++]!;
      let n: number;
      if (b === 0xc4 && pos + 1 <= end) n = body[pos++]!;
      else if (b === 0xc5 && pos + 2 <= end) (n = (body[pos]! << 8) | body[pos + 1]!), (pos += 2);
      else return null;
      if (pos + n > end) return null;
      entries[i] = { seq, kind, icount: BigInt(icount), payload: body.slice(pos, pos + n) };
      pos += n;
      continue;
    }
    if (kind !== K.CLOCK_NOW && kind !== K.CLOCK_MONO) return null;
    // clock delta: a signed int, smallest form
    if (pos >= end) return null;
    b = body[pos++]!;
    let delta: bigint;
    if (b < 0x80) delta = BigInt(b);
    else if (b >= 0xe0) delta = BigInt(b - 0x100);
    else if (b === 0xcc && pos + 1 <= end) delta = BigInt(body[pos++]!);
    else if (b === 0xcd && pos + 2 <= end) (delta = BigInt((body[pos]! << 8) | body[pos + 1]!)), (pos += 2);
    else if (b === 0xce && pos + 4 <= end) (delta = BigInt(((body[pos]! << 24) >>> 0) + ((body[pos + 1]! << 16) | (body[pos + 2]! << 8) | body[pos + 3]!))), (pos += 4);
    else if (b === 0xd0 && pos + 1 <= end) delta = BigInt((body[pos++]! << 24) >> 24);
    else if (b === 0xd1 && pos + 2 <= end) (delta = BigInt((((body[pos]! << 8) | body[pos + 1]!) << 16) >> 16)), (pos += 2);
    else if (b === 0xd2 && pos + 4 <= end) (delta = BigInt((body[pos]! << 24) | (body[pos + 1]! << 16) | (body[pos + 2]! << 8) | body[pos + 3]!)), (pos += 4);
    else if ((b === 0xcf || b === 0xd3) && pos + 8 <= end) {
      // 64-bit: the first clock of a frame is written whole
      const hi = ((body[pos]! << 24) >>> 0) + ((body[pos + 1]! << 16) | (body[pos + 2]! << 8) | body[pos + 3]!);
      const lo = ((body[pos + 4]! << 24) >>> 0) + ((body[pos + 5]! << 16) | (body[pos + 6]! << 8) | body[pos + 7]!);
      delta = (BigInt(hi) << 32n) | BigInt(lo);
      if (b === 0xd3) delta = BigInt.asIntN(64, delta);
      pos += 8;
    } else return null;
    let value = (kind === K.CLOCK_NOW ? now : mono) + delta;
    if (value >= I64_TOP) value -= U64_ALL;
    else if (value < -I64_TOP) value += U64_ALL;
    if (kind === K.CLOCK_NOW) now = value;
    else mono = value;
    entries[i] = { seq, kind, icount: BigInt(icount), payload: value } as LogEntry;
  }
  return pos === end ? entries : null;
}

/**
 * Decodes a frame body of `count` entries starting at `firstSeq` and `baseIcount`; throws BodyError when the
 * body is not exactly that many well-formed entries.
 */
export function decodeBody(body: Uint8Array, count: number, firstSeq: number, baseIcount: bigint): LogEntry[] {
  return decodeFastBody(body, count, firstSeq, baseIcount) ?? decodeGeneralBody(body, count, firstSeq, baseIcount);
}

function decodeGeneralBody(body: Uint8Array, count: number, firstSeq: number, baseIcount: bigint): LogEntry[] {
  let values: unknown[];
  try {
    values = unpackr.unpackMultiple(body);
  } catch (error) {
    throw new BodyError(`body is not msgpack: ${(error as Error).message}`);
  }
  if (values.length !== count) throw new BodyError(`body holds ${values.length} values, header says ${count}`);
  const entries: LogEntry[] = new Array(count);
  let icount = baseIcount;
  let now = 0n;
  let mono = 0n;
  for (let i = 0; i < count; i++) {
    const seq = firstSeq + i;
    const v = values[i];
    if (!Array.isArray(v) || v.length < 3) fail(i, seq, 'not an array of at least 3 values');
    const kind: unknown = v[0];
    if (!isKind(kind)) fail(i, seq, `unknown kind ${String(kind)}`);
    const fields = FIELDS[kind]!;
    if (fields === -1 ? v.length !== 5 && v.length !== 6 : v.length !== fields) {
      fail(i, seq, `${entryKindName(kind)} entry has ${v.length} values`);
    }
    const d: unknown = v[1];
    if (typeof d === 'number') {
      if (!Number.isInteger(d) || d < 0) fail(i, seq, 'icount delta is not a u64');
      if (d !== 0) icount += BigInt(d);
    } else if (typeof d === 'bigint') {
      if (d < 0n) fail(i, seq, 'icount delta is negative');
      icount += d;
    } else fail(i, seq, 'icount delta is not an integer');
    if (icount > U64_MAX) fail(i, seq, 'icount beyond u64');
    if (kind === K.CLOCK_NOW) {
      now = BigInt.asIntN(64, now + clockDelta(v[2], i, seq));
      entries[i] = { seq, kind, icount, payload: now };
    } else if (kind === K.CLOCK_MONO) {
      mono = BigInt.asIntN(64, mono + clockDelta(v[2], i, seq));
      entries[i] = { seq, kind, icount, payload: mono };
    } else {
      entries[i] = { seq, kind, icount, payload: decodePayload(kind, v, i, seq) } as LogEntry;
    }
  }
  return entries;
}
