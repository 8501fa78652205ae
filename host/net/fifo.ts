// A first-in first-out queue whose front moves by an index: taking or dropping from the front does not move
// what is left (Array.shift and splice(0, n) do, which is quadratic for a long queue drained one at a time).
// The array is compacted only once the taken part is at least as long as what is left, so each element is
// copied at most once more on average. Used for a session's buffered outputs (OutputQueue) and for the accepts
// and outputs the output rule holds (host/replication/gate.ts).

/** Taken elements kept at the front before a compaction is worth it (small queues never compact). */
const COMPACT_MIN = 64;

export class Fifo<T> {
  private items: Array<T | undefined> = [];
  private head = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  /** The oldest element, if any. */
  get first(): T | undefined {
    return this.items[this.head];
  }

  /** The i-th oldest element (0: the oldest). */
  at(i: number): T | undefined {
    return i >= 0 && i < this.length ? this.items[this.head + i] : undefined;
  }

  push(item: T): void {
    this.items.push(item);
  }

  /** Takes the oldest element off. */
  shift(): T | undefined {
    if (this.length === 0) return undefined;
    const item = this.items[this.head];
    this.items[this.head++] = undefined; // what it holds may be freed now
    this.compact();
    return item;
  }

  /** Drops the `n` oldest elements (at most all of them). */
  drop(n: number): void {
    const end = this.head + Math.max(0, Math.min(n, this.length));
    this.items.fill(undefined, this.head, end);
    this.head = end;
    this.compact();
  }

  /** The elements, oldest first (a copy of the list; the elements themselves are shared). */
  toArray(): T[] {
    return this.items.slice(this.head) as T[];
  }

  *[Symbol.iterator](): IterableIterator<T> {
    for (let i = this.head; i < this.items.length; i++) yield this.items[i]!;
  }

  private compact(): void {
    if (this.head === this.items.length) {
      this.items = [];
      this.head = 0;
    } else if (this.head >= COMPACT_MIN && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
  }
}
