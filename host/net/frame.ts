// Frames on the client connection: a u32 big-endian body length, then the body (one msgpack value).
// The decoder is incremental: it takes bytes as TCP hands them over and says "incomplete" until a whole
// frame is there, and refuses an oversized length as soon as the 4 length bytes arrived, before any body.
import { Buffer } from 'node:buffer';
import { ProtocolError } from './errors.ts';

export const FRAME_HEADER_BYTES = 4;
/** Largest payload of one request or output, as the ABI's MESSAGE_BYTES_MAX: 1 MiB less 1 KiB (a request and its log entry must fit one 1 MiB log frame). */
export const PAYLOAD_BYTES_MAX_DEFAULT = (1 << 20) - 1024;
/** Room for a message's other fields around its payload. */
export const ENVELOPE_BYTES_MAX = 1024;
/** Largest frame body by default: a full payload plus its envelope. */
export const FRAME_BYTES_MAX_DEFAULT = PAYLOAD_BYTES_MAX_DEFAULT + ENVELOPE_BYTES_MAX;
/** No configuration may go above this (the length prefix could say up to 4 GiB). */
export const FRAME_BYTES_LIMIT = 64 << 20;

/** What readFrame found at an offset. */
export type FrameRead =
  | { status: 'incomplete'; bytes_needed: number }
  | { status: 'frame'; body: Uint8Array; end: number };

/** Reads one frame at `offset`: the body (a view into `bytes`) and where the next frame starts, or how many more bytes are needed. Throws ProtocolError for a length of 0 or above frame_bytes_max. */
export function readFrame(bytes: Uint8Array, offset: number, frame_bytes_max: number): FrameRead {
  const available = bytes.length - offset;
  if (available < FRAME_HEADER_BYTES) return { status: 'incomplete', bytes_needed: FRAME_HEADER_BYTES - available };
  const length = ((bytes[offset]! << 24) | (bytes[offset + 1]! << 16) | (bytes[offset + 2]! << 8) | bytes[offset + 3]!) >>> 0;
  if (length === 0) throw new ProtocolError('frame_empty', `frame length 0 at byte ${offset} of the stream buffer`);
  if (length > frame_bytes_max) {
    throw new ProtocolError('frame_too_large', `frame length ${length} > frame_bytes_max = ${frame_bytes_max}`);
  }
  const end = offset + FRAME_HEADER_BYTES + length;
  if (end > bytes.length) return { status: 'incomplete', bytes_needed: end - bytes.length };
  return { status: 'frame', body: bytes.subarray(offset + FRAME_HEADER_BYTES, end), end };
}

/** Prefixes a body with its length. */
export function encodeFrame(body: Uint8Array): Uint8Array {
  const frame = new Uint8Array(FRAME_HEADER_BYTES + body.length);
  new DataView(frame.buffer).setUint32(0, body.length);
  frame.set(body, FRAME_HEADER_BYTES);
  return frame;
}

/**
 * Incremental frame reader over a byte stream. Call `push` with each chunk, then `next` until it returns
 * undefined. A returned body is a view that stays valid only until the next `push`. After a throw the
 * stream is out of step: the connection must be closed.
 */
export class FrameDecoder {
  private buf: Uint8Array = new Uint8Array(0);
  private start = 0;
  private end = 0;
  /** Bytes of the stream consumed so far (for error messages). */
  offset = 0;

  constructor(readonly frame_bytes_max: number) {
    if (!Number.isInteger(frame_bytes_max) || frame_bytes_max < 1 || frame_bytes_max > FRAME_BYTES_LIMIT) {
      throw new RangeError(`frame_bytes_max = ${frame_bytes_max} is outside 1..${FRAME_BYTES_LIMIT}`);
    }
  }

  /** Bytes held that do not yet form a whole frame. */
  get buffered(): number {
    return this.end - this.start;
  }

  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return;
    if (this.end + chunk.length > this.buf.length) this.makeRoom(chunk.length);
    this.buf.set(chunk, this.end);
    this.end += chunk.length;
  }

  /** The next whole frame's body, or undefined when the bytes so far end inside a frame. */
  next(): Uint8Array | undefined {
    const view = this.buf.subarray(0, this.end);
    let read: FrameRead;
    try {
      read = readFrame(view, this.start, this.frame_bytes_max);
    } catch (error) {
      if (error instanceof Error) error.message += ` (stream byte ${this.offset})`;
      throw error;
    }
    if (read.status === 'incomplete') return undefined;
    this.offset += read.end - this.start;
    this.start = read.end;
    if (this.start === this.end) this.start = this.end = 0;
    return read.body;
  }

  private makeRoom(extra: number): void {
    const held = this.end - this.start;
    const need = held + extra;
    if (need <= this.buf.length && this.start > 0) {
      this.buf.copyWithin(0, this.start, this.end);
    } else {
      const next = new Uint8Array(Math.max(need, this.buf.length * 2, 4096));
      next.set(this.buf.subarray(this.start, this.end));
      this.buf = next;
    }
    this.start = 0;
    this.end = held;
  }
}

/** Room a WriteBatch keeps for the frames of one burst; a bigger burst gets a buffer of its own. */
export const WRITE_SLAB_BYTES = 8 << 10;
/** Queued bytes at which a connection writes at once rather than at the end of the event-loop turn. */
export const WRITE_BATCH_BYTES_MAX = 64 << 10;
const EMPTY = Buffer.alloc(0);

/**
 * Outgoing frames of one connection, gathered so that a burst (every frame queued during one event-loop
 * turn) leaves in one socket write, each frame's length prefix and body together. Frames are written
 * straight into a slab; take() hands the bytes queued so far to the socket (as a view: the slab is never
 * written again below that point) and the next frames go on after them.
 */
export class WriteBatch {
  /** The slab; the body reserved by reserve() starts at the offset it returned. */
  buf: Buffer = EMPTY;
  private start = 0;
  private end = 0;

  /** Bytes queued and not yet taken. */
  get pending(): number {
    return this.end - this.start;
  }

  /** Appends a frame of a `length`-byte body: writes its length prefix and returns where the body goes in `buf`; the caller writes exactly `length` bytes there. */
  reserve(length: number): number {
    const need = FRAME_HEADER_BYTES + length;
    if (this.end + need > this.buf.length) this.grow(need);
    const at = this.end;
    const buf = this.buf;
    buf[at] = length >>> 24;
    buf[at + 1] = (length >>> 16) & 0xff;
    buf[at + 2] = (length >>> 8) & 0xff;
    buf[at + 3] = length & 0xff;
    this.end = at + need;
    return at + FRAME_HEADER_BYTES;
  }

  /** Appends a frame around an encoded body. */
  push(body: Uint8Array): void {
    const at = this.reserve(body.length);
    this.buf.set(body, at);
  }

  /** The frames queued since the last take, as one byte string, or undefined if none. */
  take(): Buffer | undefined {
    if (this.end === this.start) return undefined;
    const out = this.buf.subarray(this.start, this.end);
    this.start = this.end;
    // A slab grown for one big burst is not kept; nor one too full to be worth keeping.
    if (this.buf.length > WRITE_SLAB_BYTES || this.buf.length - this.end < 256) this.clear();
    return out;
  }

  /** Forgets the frames queued and not taken. */
  clear(): void {
    this.buf = EMPTY;
    this.start = this.end = 0;
  }

  private grow(need: number): void {
    const held = this.end - this.start;
    const next = Buffer.allocUnsafe(Math.max(WRITE_SLAB_BYTES, held + need, 2 * held));
    if (held > 0) this.buf.copy(next, 0, this.start, this.end);
    this.buf = next;
    this.start = 0;
    this.end = held;
  }
}
