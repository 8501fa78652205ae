// State transfer (docs/SNAPSHOT.md): what a primary sends a joining backup instead of the whole log. One
// transfer is the guest's snapshot (host/vm/snapshot.ts) plus the client server's session table at the same
// seq: each known session's epoch, requests taken, outputs sent and acknowledged, and the outputs its client
// has not acknowledged yet (so a client that missed them gets them from the backup after a failover), and the
// next session id. It travels as SNAPSHOT messages, each `total u64, offset u64, bytes`, in order; the log
// goes on after it as FRAMES from lastSeq + 1.
import { Packr, Unpackr } from 'msgpackr';
import type { SessionTableSnapshot } from '../net/index.ts';
import { decodeSnapshot, encodeSnapshot, SNAPSHOT_BYTES_MAX } from '../vm/index.ts';
import type { GuestSnapshot } from '../vm/index.ts';

export interface Transfer {
  /** The client server's table (ClientServer.snapshot()) when the guest's snapshot was taken. */
  table: SessionTableSnapshot;
  snapshot: GuestSnapshot;
}

/** The largest session table a transfer carries (msgpack), and the largest transfer. */
export const TRANSFER_TABLE_BYTES_MAX = 256 << 20;
export const TRANSFER_BYTES_MAX = SNAPSHOT_BYTES_MAX + 4 + TRANSFER_TABLE_BYTES_MAX;
const CHUNK_HEAD_BYTES = 16;
const packr = new Packr({ useRecords: false });
// copyBuffers: buffered outputs get bytes of their own, not views of the transfer (whose buffer a backup
// hands on to its guest's worker).
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, copyBuffers: true });

/** The transfer as parts (the snapshot's memory is not copied): table length u32, the table in msgpack, the snapshot. */
export function encodeTransfer(t: Transfer): Uint8Array[] {
  const table = packr.pack(t.table);
  if (table.length > TRANSFER_TABLE_BYTES_MAX) throw new RangeError(`session table of ${table.length} bytes > TRANSFER_TABLE_BYTES_MAX (${TRANSFER_TABLE_BYTES_MAX})`);
  const head = Buffer.alloc(4);
  head.writeUInt32LE(table.length, 0);
  return [head, table, ...encodeSnapshot(t.snapshot)];
}

/**
 * Reads a whole transfer; a damaged one is a string naming what is wrong (the caller refuses its peer with
 * it). The table is checked when the client server restores it (ClientServer.restore names what is wrong).
 */
export function decodeTransfer(bytes: Uint8Array): Transfer | string {
  if (bytes.length < 4) return `state transfer of ${bytes.length} bytes is shorter than its header`;
  const n = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).readUInt32LE(0);
  if (n > TRANSFER_TABLE_BYTES_MAX || 4 + n > bytes.length) return `state transfer: a session table of ${n} bytes in ${bytes.length}`;
  let table: SessionTableSnapshot;
  try {
    table = unpackr.unpack(bytes.subarray(4, 4 + n)) as SessionTableSnapshot;
  } catch (error) {
    return `state transfer: its session table is not msgpack (${(error as Error).message})`;
  }
  if (typeof table !== 'object' || table === null || !Array.isArray(table.sessions)) return 'state transfer: its session table has no sessions array';
  try {
    return { table, snapshot: decodeSnapshot(bytes.subarray(4 + n)) };
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
