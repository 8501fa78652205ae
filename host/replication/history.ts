// A node's whole log, from seq 1, for catching a joining backup up: in memory (bounded), or read back from
// the node's `--log` file (bounded by that file's limit), frame by frame from the 48-byte frame headers.
import { closeSync, openSync, readSync } from 'node:fs';
import type { LogArchive } from './archive.ts';

export interface HistoryFrame {
  bytes: Uint8Array;
  firstSeq: number;
  lastSeq: number;
}

/** Reads the history forward from a seq; `next` returns whole frames written so far (none when caught up). */
export interface HistoryReader {
  next(bytes_max: number): HistoryFrame[];
  close(): void;
}

export interface LogHistory {
  /** Every frame from seq 1 is held (false once a bound was passed: a joining backup is then refused). */
  readonly complete: boolean;
  /** Why it is not complete. */
  readonly gone: string | undefined;
  /** A frame the node holds now, in seq order (the file history has it written already). True once: when it made the history incomplete. */
  add(frame: HistoryFrame): boolean;
  /** A reader from `fromSeq`, which must start a frame or be one past the last seq; undefined otherwise. */
  reader(fromSeq: number, lastSeq: number): HistoryReader | undefined;
}

/** Frames from index `from` on, as many as fit bytes_max together (at least one, if there is one). */
function framesUpTo(frames: readonly HistoryFrame[], from: number, bytes_max: number): HistoryFrame[] {
  const out: HistoryFrame[] = [];
  let bytes = 0;
  for (let i = from; i < frames.length && (out.length === 0 || bytes + frames[i]!.bytes.length <= bytes_max); i++) {
    out.push(frames[i]!);
    bytes += frames[i]!.bytes.length;
  }
  return out;
}

/** The history in memory, up to bytes_max; past it, dropped for good. */
export class MemoryHistory implements LogHistory {
  private frames: HistoryFrame[] = [];
  private bytes = 0;
  gone: string | undefined;

  constructor(private readonly bytes_max: number) {}

  get complete(): boolean {
    return this.gone === undefined;
  }

  add(frame: HistoryFrame): boolean {
    if (this.gone !== undefined) return false;
    this.frames.push(frame);
    this.bytes += frame.bytes.length;
    if (this.bytes <= this.bytes_max) return false;
    this.frames = [];
    this.bytes = 0;
    this.gone = `the log passed history_bytes_max = ${this.bytes_max} bytes`;
    return true;
  }

  reader(fromSeq: number, lastSeq: number): HistoryReader | undefined {
    if (this.gone !== undefined) return undefined;
    let i = fromSeq === lastSeq + 1 ? this.frames.length : this.frames.findIndex((f) => f.firstSeq === fromSeq);
    if (i < 0) return undefined;
    return {
      next: (bytes_max) => {
        // `this.frames` is read anew each time: frames added since are served too.
        const out = framesUpTo(this.frames, i, bytes_max);
        i += out.length;
        return out;
      },
      close: () => undefined,
    };
  }
}

/**
 * No history: a node whose module is prepared for snapshots catches a joining backup up by state transfer
 * (docs/SNAPSHOT.md), so it keeps no copy of the log in memory for that.
 */
export class NoHistory implements LogHistory {
  readonly complete = false;
  readonly gone = 'no log history is kept: the module is prepared for snapshots, so a joining backup gets state transfer';
  add(): boolean {
    return false;
  }
  reader(): undefined {
    return undefined;
  }
}

/** The default history of a node: none for a module prepared for snapshots, else the log in memory. */
export function defaultHistory(unwind: boolean, bytes_max: number): LogHistory {
  return unwind ? new NoHistory() : new MemoryHistory(bytes_max);
}

const FRAME_HEADER_BYTES = 48;

/**
 * The history read back from the node's `--log` file (a LogArchive, written synchronously as frames come):
 * nothing of it is kept in memory. A reader walks the file by frame headers (magic, body length, seqs).
 */
export class FileHistory implements LogHistory {
  constructor(private readonly archive: LogArchive) {}

  get gone(): string | undefined {
    return this.archive.failure;
  }

  get complete(): boolean {
    return this.archive.failure === undefined;
  }

  private told = false;

  /** The archive wrote the frame already; true once, at the first frame after the archive stopped. */
  add(_frame: HistoryFrame): boolean {
    if (this.told || this.archive.failure === undefined) return false;
    this.told = true;
    return true;
  }

  reader(fromSeq: number, lastSeq: number): HistoryReader | undefined {
    if (!this.complete) return undefined;
    const archive = this.archive;
    const fd = openSync(archive.path, 'r');
    const head = Buffer.alloc(FRAME_HEADER_BYTES);
    const readHead = (at: number): { length: number; firstSeq: number; lastSeq: number } => {
      if (readSync(fd, head, 0, FRAME_HEADER_BYTES, at) !== FRAME_HEADER_BYTES || head.toString('latin1', 0, 4) !== 'FTWF') {
        throw new Error(`log file ${archive.path}: no frame header at byte ${at}`);
      }
      return { length: FRAME_HEADER_BYTES + head.readUInt32LE(4), firstSeq: Number(head.readBigUInt64LE(8)), lastSeq: Number(head.readBigUInt64LE(16)) };
    };
    // Find the frame that starts at fromSeq by its headers (a backup asks from 1, or where a read of it ended).
    let at = archive.headerBytes;
    try {
      if (fromSeq === lastSeq + 1) at = archive.bytesWritten;
      else {
        for (;;) {
          if (at >= archive.bytesWritten) return closeSync(fd), undefined;
          const h = readHead(at);
          if (h.firstSeq === fromSeq) break;
          if (h.firstSeq > fromSeq) return closeSync(fd), undefined;
          at += h.length;
        }
      }
    } catch (error) {
      closeSync(fd);
      throw error;
    }
    let open = true;
    return {
      next: (bytes_max) => {
        const out: HistoryFrame[] = [];
        let bytes = 0;
        while (open && at + FRAME_HEADER_BYTES <= archive.bytesWritten) {
          const h = readHead(at);
          if (at + h.length > archive.bytesWritten) break; // the rest of it is not written yet
          if (out.length > 0 && bytes + h.length > bytes_max) break;
          const frame = new Uint8Array(h.length);
          if (readSync(fd, frame, 0, h.length, at) !== h.length) throw new Error(`log file ${archive.path}: frame at byte ${at} is cut short`);
          out.push({ bytes: frame, firstSeq: h.firstSeq, lastSeq: h.lastSeq });
          bytes += h.length;
          at += h.length;
        }
        return out;
      },
      close: () => {
        if (open) closeSync(fd);
        open = false;
      },
    };
  }
}

/**
 * The frames a backup restored from a snapshot needs after it (docs/SNAPSHOT.md): kept from the snapshot's
 * seq on while the backup catches up, sent once each, dropped once acked. Bounded: push() says false when
 * the frames not acked pass bytes_max (the backup falls too far behind to catch up).
 */
export class FrameTail implements HistoryReader {
  private frames: HistoryFrame[] = [];
  private sent = 0;
  private bytes = 0;

  constructor(private readonly bytes_max: number) {}

  push(frame: HistoryFrame): boolean {
    this.frames.push(frame);
    this.bytes += frame.bytes.length;
    return this.bytes <= this.bytes_max;
  }

  next(bytes_max: number): HistoryFrame[] {
    const out = framesUpTo(this.frames, this.sent, bytes_max);
    this.sent += out.length;
    return out;
  }

  /** The backup holds the log up to seq: frames wholly at or below it go. */
  ack(seq: number): void {
    let n = 0;
    while (n < this.frames.length && n < this.sent && this.frames[n]!.lastSeq <= seq) this.bytes -= this.frames[n++]!.bytes.length;
    if (n === 0) return;
    this.frames.splice(0, n);
    this.sent -= n;
  }

  /** Every frame kept: those after the last ack. */
  unacked(): HistoryFrame[] {
    return this.frames.slice();
  }

  close(): void {
    this.frames = [];
  }
}
