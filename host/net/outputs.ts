// A session's buffered outputs, oldest first (docs/PROTOCOL.md, section 6): appended at the back, dropped
// from the front as the client acks them or as the bound pushes the oldest out. On a backup the bound does
// that for every output its replay produces (its clients ack the primary, not it), so dropping the oldest must
// not move the rest: the front is an index, and the array is compacted only once the dropped part is at
// least as long as what is left (each output is then copied at most once more, on average).

export interface BufferedOutput {
  seq: number;
  epoch: number;
  payload: Uint8Array;
}

/** Dropped outputs kept at the front before a compaction is worth it (small queues never compact). */
const COMPACT_MIN = 64;

export class OutputQueue {
  private items: Array<BufferedOutput | undefined> = [];
  private head = 0;
  /** Payload bytes of the outputs held. */
  bytes = 0;

  constructor(outputs: readonly BufferedOutput[] = []) {
    for (const o of outputs) this.push(o);
  }

  get length(): number {
    return this.items.length - this.head;
  }

  /** The oldest output held, if any. */
  get first(): BufferedOutput | undefined {
    return this.items[this.head];
  }

  /** The i-th oldest output held (0: the oldest). */
  at(i: number): BufferedOutput | undefined {
    return i >= 0 && i < this.length ? this.items[this.head + i] : undefined;
  }

  push(output: BufferedOutput): void {
    this.items.push(output);
    this.bytes += output.payload.length;
  }

  /** Drops the `n` oldest outputs (at most all of them). */
  drop(n: number): void {
    const end = this.head + Math.min(n, this.length);
    for (let i = this.head; i < end; i++) {
      this.bytes -= this.items[i]!.payload.length;
      this.items[i] = undefined; // the payload may be freed now
    }
    this.head = end;
    if (this.head === this.items.length) {
      this.items = [];
      this.head = 0;
    } else if (this.head >= COMPACT_MIN && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
  }

  /** The outputs held, oldest first (a copy of the list; the outputs themselves are shared). */
  toArray(): BufferedOutput[] {
    return this.items.slice(this.head) as BufferedOutput[];
  }

  *[Symbol.iterator](): IterableIterator<BufferedOutput> {
    for (let i = this.head; i < this.items.length; i++) yield this.items[i]!;
  }
}
