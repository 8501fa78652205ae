// Sessions the primary dropped (idle past session_idle_timeout_ms, or evicted from a full table), mirrored
// on the backup in log order. The primary forgets a session at the log seq its gate had reached; the
// backup forgets it once the log it received passes that seq, so both drop the per-session counters (the
// gate's requests and outputs, the client server's entry) at the same place in the log, and the counters
// stay bounded by the session table instead of growing with every session ever opened.

/** FORGET record: session id (u32 LE), then the log seq at which the primary dropped it (u64 LE). */
export const FORGET_RECORD_BYTES = 12;
/** Forgets kept for a backup that joins later, or waiting on a backup for their seq: at most this many. */
export const FORGETS_MAX = 1 << 20;

export interface Forget {
  session: number;
  at_seq: number;
}

export function encodeForgets(records: readonly Forget[]): Buffer {
  const out = Buffer.allocUnsafe(records.length * FORGET_RECORD_BYTES);
  records.forEach((f, i) => {
    out.writeUInt32LE(f.session, i * FORGET_RECORD_BYTES);
    out.writeBigUInt64LE(BigInt(f.at_seq), i * FORGET_RECORD_BYTES + 4);
  });
  return out;
}

/** The records of a FORGET payload, or what is wrong with it. */
export function decodeForgets(payload: Uint8Array): Forget[] | string {
  if (payload.length === 0 || payload.length % FORGET_RECORD_BYTES !== 0) return `FORGET payload of ${payload.length} bytes is not whole records`;
  const view = new DataView(payload.buffer, payload.byteOffset, payload.length);
  const records: Forget[] = [];
  for (let at = 0; at < payload.length; at += FORGET_RECORD_BYTES) {
    const at_seq = view.getBigUint64(at + 4, true);
    if (at_seq > BigInt(Number.MAX_SAFE_INTEGER)) return `FORGET of session ${view.getUint32(at, true)} at seq ${at_seq}, past 2^53`;
    records.push({ session: view.getUint32(at, true), at_seq: Number(at_seq) });
  }
  return records;
}

/**
 * Every forget since seq 1, for a backup that joins later: it replays the log from the start and must drop
 * the same sessions where the primary did. Past FORGETS_MAX the list is given up (`lost`): such a backup
 * then keeps counters of sessions that were dropped before it joined (memory, not correctness: their ids
 * are not reused).
 */
export class ForgetLog {
  private records: Forget[] = [];
  lost = false;

  /** Records come in seq order; one below the last is a repeat (a backup is sent them all again at HELLO). */
  add(f: Forget): void {
    if (this.lost) return;
    const last = this.records.at(-1);
    if (last !== undefined && (f.at_seq < last.at_seq || (f.at_seq === last.at_seq && f.session === last.session))) return;
    if (this.records.length >= FORGETS_MAX) {
      this.lost = true;
      this.records = [];
      return;
    }
    this.records.push(f);
  }

  get size(): number {
    return this.records.length;
  }

  /** The log history was given up: no backup can join from seq 1, so no one needs these. */
  clear(): void {
    this.records = [];
    this.lost = true;
  }

  /** The records in at_seq order, in chunks of at most `chunk`. */
  *chunks(chunk: number): Generator<Forget[]> {
    for (let i = 0; i < this.records.length; i += chunk) yield this.records.slice(i, i + chunk);
  }
}

/** On a backup: forgets that wait for the log received to reach their seq, in arrival (= seq) order. */
export class PendingForgets {
  private queue: Forget[] = [];
  private head = 0;

  get size(): number {
    return this.queue.length - this.head;
  }

  /** False when FORGETS_MAX are already waiting. */
  push(f: Forget): boolean {
    if (this.size >= FORGETS_MAX) return false;
    this.queue.push(f);
    return true;
  }

  /** Takes out, in order, every forget whose seq is at or below `last_seq` (all of them for Infinity). */
  take(last_seq: number): Forget[] {
    const due: Forget[] = [];
    while (this.head < this.queue.length && this.queue[this.head]!.at_seq <= last_seq) due.push(this.queue[this.head++]!);
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    return due;
  }
}
