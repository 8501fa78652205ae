// State transfer (docs/SNAPSHOT.md): what a primary sends a joining backup instead of the whole log. One
// transfer is the guest's snapshot (host/vm/snapshot.ts) plus the log bookkeeping at the same seq: each known
// session's epoch, requests taken and outputs sent, and the next session id. It travels as SNAPSHOT messages,
// each `total u64, offset u64, bytes`, in order; the log goes on after it as FRAMES from lastSeq + 1.
import { decodeSnapshot, encodeSnapshot, SNAPSHOT_BYTES_MAX } from '../vm/index.ts';
import type { GuestSnapshot } from '../vm/index.ts';

export interface TransferSession {
  session: number;
  /** The epoch the session was opened in. */
  epoch: number;
  /** Requests of the session the guest took up to the snapshot. */
  delivered: number;
  /** Outputs the guest sent the session up to the snapshot. */
  outputs: number;
}

export interface Transfer {
  next_session: number;
  sessions: TransferSession[];
  snapshot: GuestSnapshot;
}

/** One session record: session u32, epoch u64, delivered u64, outputs u64 (LE). */
export const TRANSFER_SESSION_BYTES = 28;
/** Sessions one transfer may carry (a client server's table is bounded well below it). */
export const TRANSFER_SESSIONS_MAX = 1 << 20;
/** The largest transfer: a snapshot at its limit plus every session record. */
export const TRANSFER_BYTES_MAX = SNAPSHOT_BYTES_MAX + 8 + TRANSFER_SESSIONS_MAX * TRANSFER_SESSION_BYTES;
const CHUNK_HEAD_BYTES = 16;

/** The transfer as parts (the snapshot's memory is not copied): next_session u32, count u32, records, snapshot. */
export function encodeTransfer(t: Transfer): Uint8Array[] {
  if (t.sessions.length > TRANSFER_SESSIONS_MAX) throw new RangeError(`${t.sessions.length} sessions > TRANSFER_SESSIONS_MAX (${TRANSFER_SESSIONS_MAX})`);
  const head = Buffer.alloc(8 + t.sessions.length * TRANSFER_SESSION_BYTES);
  head.writeUInt32LE(t.next_session, 0);
  head.writeUInt32LE(t.sessions.length, 4);
  t.sessions.forEach((s, i) => {
    const at = 8 + i * TRANSFER_SESSION_BYTES;
    head.writeUInt32LE(s.session, at);
    head.writeBigUInt64LE(BigInt(s.epoch), at + 4);
    head.writeBigUInt64LE(BigInt(s.delivered), at + 12);
    head.writeBigUInt64LE(BigInt(s.outputs), at + 20);
  });
  return [head, ...encodeSnapshot(t.snapshot)];
}

/** Reads a whole transfer; a damaged one is a string naming what is wrong (the caller refuses its peer with it). */
export function decodeTransfer(bytes: Uint8Array): Transfer | string {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (b.length < 8) return `state transfer of ${b.length} bytes is shorter than its header`;
  const count = b.readUInt32LE(4);
  if (count > TRANSFER_SESSIONS_MAX) return `state transfer names ${count} sessions > ${TRANSFER_SESSIONS_MAX}`;
  const end = 8 + count * TRANSFER_SESSION_BYTES;
  if (end > b.length) return `state transfer: ${count} session records run past its ${b.length} bytes`;
  const sessions: TransferSession[] = [];
  for (let at = 8; at < end; at += TRANSFER_SESSION_BYTES) {
    const [epoch, delivered, outputs] = [b.readBigUInt64LE(at + 4), b.readBigUInt64LE(at + 12), b.readBigUInt64LE(at + 20)].map(Number);
    if (![epoch, delivered, outputs].every((n) => Number.isSafeInteger(n))) return `state transfer: session record at byte ${at} holds a count beyond 2^53`;
    sessions.push({ session: b.readUInt32LE(at), epoch: epoch!, delivered: delivered!, outputs: outputs! });
  }
  try {
    return { next_session: b.readUInt32LE(0), sessions, snapshot: decodeSnapshot(bytes.subarray(end)) };
  } catch (error) {
    return `state transfer: ${(error as Error).message}`;
  }
}

/** Cuts a transfer into SNAPSHOT message payloads of at most `chunk_bytes` transfer bytes each. */
export class TransferSender {
  readonly total: number;
  private part = 0;
  private at = 0;
  private offset = 0;

  constructor(private readonly parts: readonly Uint8Array[]) {
    this.total = parts.reduce((n, p) => n + p.length, 0);
    if (this.total > TRANSFER_BYTES_MAX) throw new RangeError(`state transfer of ${this.total} bytes > TRANSFER_BYTES_MAX (${TRANSFER_BYTES_MAX})`);
  }

  get done(): boolean {
    return this.offset === this.total;
  }

  get sent(): number {
    return this.offset;
  }

  /** The next message payload, as parts (head, then slices of the transfer); undefined when all was cut. */
  next(chunk_bytes: number): Uint8Array[] | undefined {
    if (this.done) return undefined;
    const head = Buffer.alloc(CHUNK_HEAD_BYTES);
    head.writeBigUInt64LE(BigInt(this.total), 0);
    head.writeBigUInt64LE(BigInt(this.offset), 8);
    const out: Uint8Array[] = [head];
    let left = Math.max(1, chunk_bytes - CHUNK_HEAD_BYTES);
    while (left > 0 && this.part < this.parts.length) {
      const p = this.parts[this.part]!;
      const n = Math.min(left, p.length - this.at);
      if (n > 0) out.push(p.subarray(this.at, this.at + n));
      this.at += n;
      this.offset += n;
      left -= n;
      if (this.at === p.length) {
        this.part++;
        this.at = 0;
      }
    }
    return out;
  }
}

/** Puts SNAPSHOT payloads back together; checks that they come in order and agree on the total. */
export class TransferAssembler {
  private buffer: Buffer | undefined;
  private filled = 0;

  get started(): boolean {
    return this.buffer !== undefined;
  }

  /** The whole transfer once its last piece came, 'more' before that, or a string naming what is wrong. */
  push(payload: Uint8Array): Uint8Array | 'more' | string {
    if (payload.length < CHUNK_HEAD_BYTES) return `SNAPSHOT payload of ${payload.length} bytes is shorter than its header`;
    const view = Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
    const total = Number(view.readBigUInt64LE(0));
    const offset = Number(view.readBigUInt64LE(8));
    const bytes = payload.subarray(CHUNK_HEAD_BYTES);
    if (!Number.isSafeInteger(total) || total > TRANSFER_BYTES_MAX || total < 1) return `state transfer of ${total} bytes is outside 1..${TRANSFER_BYTES_MAX}`;
    this.buffer ??= Buffer.allocUnsafe(total);
    if (total !== this.buffer.length) return `SNAPSHOT piece says the transfer is ${total} bytes, the first said ${this.buffer.length}`;
    if (offset !== this.filled) return `SNAPSHOT piece at offset ${offset}, expected ${this.filled}`;
    if (offset + bytes.length > total) return `SNAPSHOT piece of ${bytes.length} bytes at ${offset} runs past the transfer's ${total}`;
    this.buffer.set(bytes, offset);
    this.filled += bytes.length;
    if (this.filled < total) return 'more';
    const whole = this.buffer;
    this.buffer = undefined;
    this.filled = 0;
    return whole;
  }
}
