// Entry sources for replay that decode frames as the guest consumes them, so a long log never sits in
// memory as millions of entry objects at once.
import { FrameReader } from '../log/index.ts';
import type { LogEntry } from '../log/index.ts';
import type { EntrySource } from './core.ts';

/** Replays from log bytes (whole frames, or a stream cut anywhere) handed over in chunks. */
export class FrameSource implements EntrySource {
  private readonly reader: FrameReader;
  private entries: LogEntry[] = [];
  private at = 0;
  private chunk = 0;

  constructor(
    private readonly chunks: readonly Uint8Array[],
    options: { nextSeq?: number } = {},
  ) {
    this.reader = new FrameReader({ next_seq: options.nextSeq ?? 1 });
  }

  peek(): LogEntry | undefined {
    if (this.at < this.entries.length) return this.entries[this.at];
    while (this.at >= this.entries.length) {
      const frame = this.reader.next();
      if (frame !== 'incomplete') {
        this.entries = frame.entries;
        this.at = 0;
        continue;
      }
      if (this.chunk >= this.chunks.length) return undefined;
      this.reader.push(this.chunks[this.chunk++]!);
    }
    return this.entries[this.at];
  }

  take(): void {
    this.at++;
  }
}

/** Replays from entries already decoded (a log file read whole, a test). */
export class ArraySource implements EntrySource {
  private at = 0;
  constructor(private readonly entries: readonly LogEntry[]) {}
  peek(): LogEntry | undefined {
    return this.entries[this.at];
  }
  take(): void {
    this.at++;
  }
  get consumed(): number {
    return this.at;
  }
}
