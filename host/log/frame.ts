// Frames: a fixed 48-byte header, then a body of msgpack entries (see codec.ts). Little-endian header:
//
//   0 magic "FTWF"        4 body_bytes u32      8 first_seq u64     16 last_seq u64
//  24 entry_count u32    28 reserved u32 (0)   32 base_icount u64  40 header_crc u32 = CRC-32C of [0, 40)
//  44 frame_crc u32 = CRC-32C of [0, 44) then the body             48 body
//
// The header has a CRC of its own so that a reader can trust body_bytes and the seqs before the body has
// arrived: a damaged length is a corrupt frame, never mistaken for a torn tail or a huge allocation.
import { CLOCK_ENTRY_BYTES_MAX, ByteWriter, BodyError, checkEntry, checkIcount, decodeBody, EntryEncoder, I64_MAX, I64_MIN, U64_MAX } from './codec.ts';
import { crc32c, crc32cUpdate } from './crc32c.ts';
import { LogCorruptError, LogEntryError, LogError, LogLimitError, LogOptionError, LogStateError } from './errors.ts';
import { EntryKind, entryKindName, type LogEntry } from './kinds.ts';

export const FRAME_MAGIC = Uint8Array.of(0x46, 0x54, 0x57, 0x46); // "FTWF"
export const FRAME_HEADER_BYTES = 48;
/** Hard ceiling for any frame (header + body), whatever the options say. */
export const FRAME_BYTES_LIMIT = 64 * 1024 * 1024;
/** Hard ceiling for the entries of one frame. */
export const FRAME_ENTRIES_LIMIT = 1 << 20;
export const FRAME_ENTRIES_MAX_DEFAULT = 4096;
export const FRAME_BYTES_MAX_DEFAULT = 1024 * 1024;
/** FrameReader holds at most max(4 x frame_bytes_max, this) bytes by default. */
export const BUFFER_BYTES_MAX_DEFAULT = 16 * 1024 * 1024;
/** Smallest possible entry: fixarray, kind, icount delta, one 1-byte value. */
const ENTRY_BYTES_MIN = 4;
const FRAME_BYTES_MIN = FRAME_HEADER_BYTES + 256;
const TWO_32 = 4294967296;
// Module-local copies for the hot path: a test runner that rewrites imports into getters (vitest) would
// otherwise pay a property read per use.
const CLOCK_NOW = EntryKind.CLOCK_NOW;
const CLOCK_MONO = EntryKind.CLOCK_MONO;
const CLOCK_BYTES_MAX = CLOCK_ENTRY_BYTES_MAX;
/** The fast paths take an icount as a bigint or, cheaper to make, as a non-negative safe integer. */
function fastIcount(icount: unknown): icount is bigint | number {
  return typeof icount === 'number' ? Number.isSafeInteger(icount) && icount >= 0 : typeof icount === 'bigint' && icount >= 0n && icount <= ICOUNT_MAX;
}

/** Array header, kind, icount delta, bin header: everything of a RANDOM entry but its bytes. */
const RANDOM_HEAD_BYTES_MAX = 1 + 1 + 9 + 5;
const ICOUNT_MAX = U64_MAX;
const CLOCK_MIN = I64_MIN;
const CLOCK_MAX = I64_MAX;
const SEQ_HI_MAX = 0x1fffff; // seq stays a safe integer

/** Where a frame sits in its stream and what it holds. */
export interface FrameInfo {
  /** 0 for the first frame of the stream (or file). */
  index: number;
  /** Byte offset of the frame's first byte in the stream (or file). */
  offset: number;
  /** Header + body bytes. */
  bytes: number;
  firstSeq: number;
  lastSeq: number;
  count: number;
  /** icount of the frame's first entry. */
  baseIcount: bigint;
}

/** A whole frame, decoded. */
export interface DecodedFrame extends FrameInfo {
  entries: LogEntry[];
}

/** How a frame stream or file ends: cleanly at a frame boundary, or inside a frame (a torn tail). */
export type LogTail =
  | 'clean'
  | {
      kind: 'torn';
      /** Byte offset where the torn frame starts: everything before it is whole. */
      offset: number;
      /** seq of the last entry of the last whole frame (first seq - 1 when there is none). */
      lastGoodSeq: number;
      /** 'short': bytes end inside a frame; 'zero_filled': only zero bytes follow (a crash artifact). */
      cause: 'short' | 'zero_filled';
    };

function intOption(name: string, value: number | undefined, fallback: number, min: number, max: number): number {
  const v = value ?? fallback;
  if (!Number.isInteger(v) || v < min || v > max) throw new LogOptionError(name, v, `[${min}, ${max}]`);
  return v;
}

/** Checks and returns frame_bytes_max. */
export function frameBytesMaxOption(value: number | undefined, name = 'frame_bytes_max'): number {
  return intOption(name, value, FRAME_BYTES_MAX_DEFAULT, FRAME_BYTES_MIN, FRAME_BYTES_LIMIT);
}

/** Checks and returns a seq option (a positive safe integer). */
export function seqOption(name: string, value: number | undefined): number {
  return intOption(name, value, 1, 1, Number.MAX_SAFE_INTEGER);
}

function icountOption(name: string, value: bigint | undefined): bigint {
  const v = value ?? 0n;
  if (typeof v !== 'bigint' || v < 0n) throw new LogOptionError(name, v, 'u64 bigints');
  return v;
}

// ---------------------------------------------------------------------------------------------------------
// Writing.

export interface FrameWriterOptions {
  /** A frame is sealed when it holds this many entries. Default 4096, at most FRAME_ENTRIES_LIMIT. */
  entries_max?: number;
  /** A frame (header + body) never exceeds this many bytes. Default 1 MiB, at most FRAME_BYTES_LIMIT. */
  bytes_max?: number;
  /** seq of the first entry to be appended. Default 1. */
  next_seq?: number;
  /** Entries may not have an icount below this. Default 0n. */
  icount_min?: bigint;
  /** Receives each sealed frame; the bytes are the receiver's. If it throws, the writer fails for good. */
  on_frame: (frame: Uint8Array, info: FrameInfo) => void;
}

/**
 * Batches entries into frames: seals a frame when it reaches entries_max entries, when the next entry would
 * take it past bytes_max, or on flush(). Appending does not allocate for the fixed-size kinds.
 */
export class FrameWriter {
  readonly entriesMax: number;
  readonly bytesMax: number;
  private readonly w: ByteWriter;
  private readonly enc: EntryEncoder;
  private readonly onFrame: (frame: Uint8Array, info: FrameInfo) => void;
  private seq: number;
  /** A bigint, or a safe-integer number after a fast-path append (comparisons mix the two exactly). */
  private lastIcount: bigint | number;
  private count = 0;
  private firstSeq = 0;
  private baseIcount = 0n;
  private frameIndex = 0;
  private streamOffset = 0;
  private failure: unknown = null;

  constructor(options: FrameWriterOptions) {
    this.entriesMax = intOption('entries_max', options.entries_max, FRAME_ENTRIES_MAX_DEFAULT, 1, FRAME_ENTRIES_LIMIT);
    this.bytesMax = frameBytesMaxOption(options.bytes_max, 'bytes_max');
    this.seq = seqOption('next_seq', options.next_seq);
    this.lastIcount = icountOption('icount_min', options.icount_min);
    if (typeof options.on_frame !== 'function') throw new LogOptionError('on_frame', options.on_frame, 'functions');
    this.onFrame = options.on_frame;
    this.w = new ByteWriter(Math.min(this.bytesMax + 64, 64 * 1024));
    this.w.pos = FRAME_HEADER_BYTES;
    this.enc = new EntryEncoder(this.w);
  }

  /** The seq the next appended entry must carry. */
  get nextSeq(): number {
    return this.seq;
  }
  /** Entries in the open (not yet sealed) frame. */
  get pendingEntries(): number {
    return this.count;
  }
  /** Bytes the open frame would have if sealed now (0 when it is empty). */
  get pendingBytes(): number {
    return this.count === 0 ? 0 : this.w.pos;
  }
  /** Frames sealed so far. */
  get framesSealed(): number {
    return this.frameIndex;
  }

  /** Appends an entry whose seq must be `nextSeq`; returns that seq. Throws LogEntryError for a bad entry. */
  append(entry: LogEntry): number {
    this.checkUsable();
    checkEntry(entry, this.seq, this.lastIcount);
    const binBytes = binBytesOf(entry);
    if (FRAME_HEADER_BYTES + binBytes > this.bytesMax) throw this.tooBig(entry, FRAME_HEADER_BYTES + binBytes);
    if (this.count === 0) this.begin(entry.icount);
    const start = this.w.pos;
    this.enc.entry(entry);
    if (this.w.pos > this.bytesMax) {
      const size = this.w.pos - start;
      this.enc.rollback(start);
      if (FRAME_HEADER_BYTES + size > this.bytesMax) {
        if (this.count === 0) this.w.pos = FRAME_HEADER_BYTES;
        throw this.tooBig(entry, FRAME_HEADER_BYTES + size);
      }
      this.seal();
      this.begin(entry.icount);
      this.enc.entry(entry);
    }
    this.enc.commit();
    return this.accept(entry.icount);
  }

  /** Appends a CLOCK_NOW or CLOCK_MONO entry at seq `nextSeq` without building an entry object; returns its seq. */
  appendClock(kind: typeof EntryKind.CLOCK_NOW | typeof EntryKind.CLOCK_MONO, icount: bigint | number, ns: bigint): number {
    if (this.failure !== null) this.checkUsable();
    if (kind !== CLOCK_NOW && kind !== CLOCK_MONO) {
      throw new LogEntryError(this.seq, entryKindName(kind), 'appendClock takes CLOCK_NOW or CLOCK_MONO only');
    }
    if (!fastIcount(icount) || icount < this.lastIcount) {
      checkIcount(this.seq, kind, icount, this.lastIcount, true);
    }
    if (typeof ns !== 'bigint' || ns < CLOCK_MIN || ns > CLOCK_MAX) {
      throw new LogEntryError(this.seq, entryKindName(kind), `clock value ${String(ns)} is not an i64 bigint`);
    }
    if (this.count > 0 && this.w.pos + CLOCK_BYTES_MAX > this.bytesMax) this.seal();
    if (this.count === 0) this.begin(icount);
    this.w.ensure(CLOCK_BYTES_MAX);
    this.enc.clock(kind, icount, ns);
    this.enc.commit();
    return this.accept(icount);
  }

  /**
   * Appends a RANDOM entry (payload: the bytes) at seq `nextSeq` without building an entry object; returns
   * its seq. The bytes are copied into the frame at once: the caller may reuse them.
   */
  appendRandom(icount: bigint | number, bytes: Uint8Array): number {
    if (this.failure !== null) this.checkUsable();
    if (!fastIcount(icount) || icount < this.lastIcount) {
      checkIcount(this.seq, EntryKind.RANDOM, icount, this.lastIcount, true);
    }
    if (!(bytes instanceof Uint8Array)) throw new LogEntryError(this.seq, 'RANDOM', 'payload must be a Uint8Array');
    const room = RANDOM_HEAD_BYTES_MAX + bytes.length;
    if (FRAME_HEADER_BYTES + room > this.bytesMax) {
      throw new LogLimitError('bytes_max', FRAME_HEADER_BYTES + room, this.bytesMax, `entry seq ${this.seq} (RANDOM) does not fit in a frame`);
    }
    if (this.count > 0 && this.w.pos + room > this.bytesMax) this.seal();
    if (this.count === 0) this.begin(icount);
    this.w.ensure(room);
    this.enc.bytesEntry(EntryKind.RANDOM, icount, bytes);
    this.enc.commit();
    return this.accept(icount);
  }

  /** Seals the open frame, if it holds any entry, and hands it to on_frame. */
  flush(): void {
    this.checkUsable();
    if (this.count > 0) this.seal();
  }

  private checkUsable(): void {
    if (this.failure !== null) {
      throw new LogStateError(`frame writer failed earlier and accepts nothing more: ${String((this.failure as Error).message ?? this.failure)}`);
    }
  }

  private tooBig(entry: LogEntry, frameBytes: number): LogLimitError {
    return new LogLimitError('bytes_max', frameBytes, this.bytesMax, `entry seq ${entry.seq} (${entryKindName(entry.kind)}) does not fit in a frame`);
  }

  private begin(icount: bigint | number): void {
    this.firstSeq = this.seq;
    this.baseIcount = BigInt(icount);
    this.enc.beginFrame(this.baseIcount);
  }

  private accept(icount: bigint | number): number {
    const seq = this.seq;
    this.seq = seq + 1;
    this.count++;
    this.lastIcount = icount;
    if (this.count >= this.entriesMax) this.seal();
    return seq;
  }

  private seal(): void {
    const w = this.w;
    const length = w.pos;
    writeFrameHeader(w.buf, length - FRAME_HEADER_BYTES, this.firstSeq, this.seq - 1, this.count, this.baseIcount);
    const frame = w.buf.slice(0, length);
    const info: FrameInfo = {
      index: this.frameIndex,
      offset: this.streamOffset,
      bytes: length,
      firstSeq: this.firstSeq,
      lastSeq: this.seq - 1,
      count: this.count,
      baseIcount: this.baseIcount,
    };
    this.frameIndex++;
    this.streamOffset += length;
    this.count = 0;
    w.pos = FRAME_HEADER_BYTES;
    try {
      this.onFrame(frame, info);
    } catch (error) {
      this.failure = error;
      throw error;
    }
  }
}

/** Bytes of bin payload an entry carries: a lower bound of its size, known before encoding. */
function binBytesOf(entry: LogEntry): number {
  switch (entry.kind) {
    case EntryKind.RANDOM:
    case EntryKind.CHECKPOINT:
      return entry.payload.length;
    case EntryKind.RECV:
      return entry.payload instanceof Uint8Array ? entry.payload.length : 0;
    case EntryKind.SEND:
      return entry.payload.bytes?.length ?? 0;
    case EntryKind.INVOKE:
      return entry.payload.bytes.length;
    default:
      return 0;
  }
}

function writeU64(view: DataView, at: number, hi: number, lo: number): void {
  view.setUint32(at, lo, true);
  view.setUint32(at + 4, hi, true);
}

/** Fills the 48-byte header in front of a body already in buf[48, 48 + bodyBytes). */
function writeFrameHeader(buf: Uint8Array, bodyBytes: number, firstSeq: number, lastSeq: number, count: number, baseIcount: bigint): void {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  buf.set(FRAME_MAGIC, 0);
  view.setUint32(4, bodyBytes, true);
  writeU64(view, 8, Math.floor(firstSeq / TWO_32), firstSeq >>> 0);
  writeU64(view, 16, Math.floor(lastSeq / TWO_32), lastSeq >>> 0);
  view.setUint32(24, count, true);
  view.setUint32(28, 0, true);
  view.setBigUint64(32, baseIcount, true);
  view.setUint32(40, crc32c(buf, 0, 40), true);
  const crc = crc32cUpdate(crc32c(buf, 0, 44), buf, FRAME_HEADER_BYTES, FRAME_HEADER_BYTES + bodyBytes);
  view.setUint32(44, crc, true);
}

// ---------------------------------------------------------------------------------------------------------
// Reading.

/** Where a reader stands: the frame it expects next. */
export interface FrameCursor {
  frameIndex: number;
  /** Byte offset of the next frame in the stream (or file). */
  offset: number;
  expectedSeq: number;
  /** icount of the last entry read: the next frame's base icount may not be below it. */
  lastIcount: bigint;
}

interface FrameHeader {
  bytes: number;
  bodyBytes: number;
  firstSeq: number;
  lastSeq: number;
  count: number;
  baseIcount: bigint;
}

function hex(n: number): string {
  return `0x${n.toString(16).padStart(8, '0')}`;
}

/**
 * Checks the frame that starts at bytes[pos] (bytes end at `end`) against the cursor: returns its header
 * once the whole frame is there, null while the bytes so far are a consistent beginning of one, and throws
 * LogCorruptError as soon as they cannot be.
 */
export function scanFrame(bytes: Uint8Array, pos: number, end: number, cursor: FrameCursor, frameBytesMax: number): FrameHeader | null {
  const corrupt = (reason: ConstructorParameters<typeof LogCorruptError>[0], detail: string) =>
    new LogCorruptError(reason, detail, cursor.frameIndex, cursor.offset, cursor.expectedSeq);
  const available = end - pos;
  for (let i = 0; i < 4 && i < available; i++) {
    if (bytes[pos + i] !== FRAME_MAGIC[i]) throw corrupt('magic', `bad frame magic byte 0x${bytes[pos + i]!.toString(16)} at +${i}`);
  }
  if (available < FRAME_HEADER_BYTES) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset + pos, FRAME_HEADER_BYTES);
  const headerCrc = crc32c(bytes, pos, pos + 40);
  const storedHeaderCrc = view.getUint32(40, true);
  if (headerCrc !== storedHeaderCrc) {
    throw corrupt('header_crc', `bad frame header CRC-32C (stored ${hex(storedHeaderCrc)}, computed ${hex(headerCrc)})`);
  }
  if (view.getUint32(28, true) !== 0) throw corrupt('reserved', 'reserved frame header field is not zero');
  const bodyBytes = view.getUint32(4, true);
  if (FRAME_HEADER_BYTES + bodyBytes > frameBytesMax) {
    throw corrupt('length', `frame length ${FRAME_HEADER_BYTES + bodyBytes} exceeds frame_bytes_max = ${frameBytesMax}`);
  }
  const firstHi = view.getUint32(12, true);
  const lastHi = view.getUint32(20, true);
  if (firstHi > SEQ_HI_MAX || lastHi > SEQ_HI_MAX) throw corrupt('seq', 'seq beyond 2^53');
  const firstSeq = firstHi * TWO_32 + view.getUint32(8, true);
  const lastSeq = lastHi * TWO_32 + view.getUint32(16, true);
  const count = view.getUint32(24, true);
  if (count < 1 || count > FRAME_ENTRIES_LIMIT || lastSeq - firstSeq + 1 !== count) {
    throw corrupt('count', `entry count ${count} does not match seqs ${firstSeq}..${lastSeq}`);
  }
  if (count * ENTRY_BYTES_MIN > bodyBytes) throw corrupt('length', `body of ${bodyBytes} bytes cannot hold ${count} entries`);
  if (firstSeq !== cursor.expectedSeq) throw corrupt('seq', `frame starts at seq ${firstSeq}`);
  const baseIcount = view.getBigUint64(32, true);
  if (baseIcount < cursor.lastIcount) throw corrupt('icount', `base icount ${baseIcount} is below the previous entry's ${cursor.lastIcount}`);
  const frameEnd = pos + FRAME_HEADER_BYTES + bodyBytes;
  if (end < frameEnd) return null;
  const crc = crc32cUpdate(crc32c(bytes, pos, pos + 44), bytes, pos + FRAME_HEADER_BYTES, frameEnd);
  const storedCrc = view.getUint32(44, true);
  if (crc !== storedCrc) throw corrupt('frame_crc', `bad frame CRC-32C (stored ${hex(storedCrc)}, computed ${hex(crc)})`);
  return { bytes: FRAME_HEADER_BYTES + bodyBytes, bodyBytes, firstSeq, lastSeq, count, baseIcount };
}

/** Decodes the whole, checked frame at bytes[pos] and moves the cursor past it. */
export function decodeFrameAt(bytes: Uint8Array, pos: number, header: FrameHeader, cursor: FrameCursor): DecodedFrame {
  const body = bytes.subarray(pos + FRAME_HEADER_BYTES, pos + header.bytes);
  let entries: LogEntry[];
  try {
    entries = decodeBody(body, header.count, header.firstSeq, header.baseIcount);
  } catch (error) {
    if (!(error instanceof BodyError)) throw error;
    throw new LogCorruptError('body', `bad frame body: ${error.message}`, cursor.frameIndex, cursor.offset, cursor.expectedSeq);
  }
  const frame: DecodedFrame = {
    index: cursor.frameIndex,
    offset: cursor.offset,
    bytes: header.bytes,
    firstSeq: header.firstSeq,
    lastSeq: header.lastSeq,
    count: header.count,
    baseIcount: header.baseIcount,
    entries,
  };
  cursor.frameIndex++;
  cursor.offset += header.bytes;
  cursor.expectedSeq = header.lastSeq + 1;
  cursor.lastIcount = entries[entries.length - 1]!.icount;
  return frame;
}

export interface FrameReaderOptions {
  /** Frames longer than this (header + body) are refused before anything is allocated for them. Default 1 MiB. */
  frame_bytes_max?: number;
  /** At most this many bytes are held between push() and next(). Default max(4 x frame_bytes_max, 16 MiB). */
  buffer_bytes_max?: number;
  /** seq the first frame must start with. Default 1. */
  next_seq?: number;
  /** The first frame's base icount may not be below this. Default 0n. */
  icount_min?: bigint;
  /** Byte offset of the first pushed byte, used in error messages and FrameInfo.offset. Default 0. */
  offset?: number;
}

/**
 * Decodes a byte stream that arrives in chunks: push() the chunks, then call next() until it says
 * 'incomplete'. Any damage throws LogCorruptError (frame index, byte offset, expected seq), after which the
 * reader refuses further use.
 */
export class FrameReader {
  readonly frameBytesMax: number;
  readonly bufferBytesMax: number;
  private buf = new Uint8Array(0);
  private start = 0;
  private end = 0;
  private readonly cursor: FrameCursor;
  private failure: LogError | null = null;

  constructor(options: FrameReaderOptions = {}) {
    this.frameBytesMax = frameBytesMaxOption(options.frame_bytes_max);
    this.bufferBytesMax = intOption('buffer_bytes_max', options.buffer_bytes_max, Math.max(4 * this.frameBytesMax, BUFFER_BYTES_MAX_DEFAULT), this.frameBytesMax, 2 ** 31);
    this.cursor = {
      frameIndex: 0,
      offset: intOption('offset', options.offset, 0, 0, Number.MAX_SAFE_INTEGER),
      expectedSeq: seqOption('next_seq', options.next_seq),
      lastIcount: icountOption('icount_min', options.icount_min),
    };
  }

  /** seq the next frame must start with. */
  get nextSeq(): number {
    return this.cursor.expectedSeq;
  }
  /** Stream offset of the next frame's first byte. */
  get offset(): number {
    return this.cursor.offset;
  }
  /** Bytes pushed but not yet returned as frames. */
  get bufferedBytes(): number {
    return this.end - this.start;
  }

  /** Adds a chunk (copied). Throws LogLimitError if more than buffer_bytes_max bytes would be held. */
  push(chunk: Uint8Array): void {
    this.checkUsable();
    const held = this.end - this.start;
    if (held + chunk.length > this.bufferBytesMax) {
      throw new LogLimitError('buffer_bytes_max', held + chunk.length, this.bufferBytesMax, 'the frame reader would hold too many bytes; call next() between pushes');
    }
    if (this.end + chunk.length > this.buf.length) {
      if (held + chunk.length <= this.buf.length) {
        this.buf.copyWithin(0, this.start, this.end);
      } else {
        const next = new Uint8Array(Math.max(held + chunk.length, Math.min(this.buf.length * 2, this.bufferBytesMax), 64 * 1024));
        next.set(this.buf.subarray(this.start, this.end));
        this.buf = next;
      }
      this.start = 0;
      this.end = held;
    }
    this.buf.set(chunk, this.end);
    this.end += chunk.length;
  }

  /** The next whole frame, or 'incomplete' when the bytes held so far end before one does. */
  next(): DecodedFrame | 'incomplete' {
    this.checkUsable();
    try {
      const header = scanFrame(this.buf, this.start, this.end, this.cursor, this.frameBytesMax);
      if (header === null) return 'incomplete';
      const frame = decodeFrameAt(this.buf, this.start, header, this.cursor);
      this.start += header.bytes;
      if (this.start === this.end) this.start = this.end = 0;
      return frame;
    } catch (error) {
      if (error instanceof LogError) this.failure = error;
      throw error;
    }
  }

  /** At the end of the stream: 'clean', or the torn tail that the bytes still held make up. */
  finish(): LogTail {
    this.checkUsable();
    if (this.start === this.end) return 'clean';
    let header: FrameHeader | null;
    try {
      header = scanFrame(this.buf, this.start, this.end, this.cursor, this.frameBytesMax);
    } catch (error) {
      if (error instanceof LogError) this.failure = error;
      throw error;
    }
    if (header !== null) throw new LogStateError('finish() called with a whole frame unread: call next() until it says incomplete');
    return { kind: 'torn', offset: this.cursor.offset, lastGoodSeq: this.cursor.expectedSeq - 1, cause: 'short' };
  }

  private checkUsable(): void {
    if (this.failure !== null) throw new LogStateError(`frame reader failed earlier: ${this.failure.message}`);
  }
}
