// The client's dedupe and reorder buffer for one session's outputs. Outputs carry seq 1, 2, 3, ... and may
// arrive twice (a new primary resends what the old one may have released) or, in principle, out of order.
// The sequencer hands each seq out exactly once and in order, holding early arrivals within a bounded window.

export type SequencerStatus =
  | 'delivered' // seq was the next one: it (and any held successors) came out
  | 'duplicate' // seq was delivered already or is held already: dropped
  | 'held' // seq is ahead of the next one but within the window: kept for later
  | 'overflow'; // seq is beyond the window: dropped, the sender must send it again

export interface SequencerResult {
  status: SequencerStatus;
  /** Outputs now deliverable, in seq order (empty unless status is 'delivered'). */
  ready: Array<{ seq: number; payload: Uint8Array }>;
}

const NOTHING: SequencerResult['ready'] = [];

/** Delivers each output seq exactly once, in order; holds at most held_max early ones (seqs next+1 .. next+held_max). */
export class OutputSequencer {
  private readonly held = new Map<number, Uint8Array>();
  private next_seq: number;

  constructor(
    readonly held_max: number,
    last_delivered = 0,
  ) {
    if (!Number.isInteger(held_max) || held_max < 0) throw new RangeError(`held_max = ${held_max} must be an integer >= 0`);
    if (!Number.isSafeInteger(last_delivered) || last_delivered < 0) throw new RangeError(`last_delivered = ${last_delivered} must be an integer >= 0`);
    this.next_seq = last_delivered + 1;
  }

  /** The next seq to deliver. */
  get next(): number {
    return this.next_seq;
  }

  /** Highest seq delivered so far (0 before the first). */
  get delivered(): number {
    return this.next_seq - 1;
  }

  /** How many early outputs are held. */
  get heldCount(): number {
    return this.held.size;
  }

  push(seq: number, payload: Uint8Array): SequencerResult {
    if (!Number.isSafeInteger(seq) || seq < 1) throw new RangeError(`output seq ${seq} must be an integer >= 1`);
    if (seq < this.next_seq || this.held.has(seq)) return { status: 'duplicate', ready: NOTHING };
    if (seq > this.next_seq) {
      if (seq - this.next_seq > this.held_max) return { status: 'overflow', ready: NOTHING };
      this.held.set(seq, payload);
      return { status: 'held', ready: NOTHING };
    }
    const ready = [{ seq, payload }];
    this.next_seq += 1;
    for (let p = this.held.get(this.next_seq); p !== undefined; p = this.held.get(this.next_seq)) {
      this.held.delete(this.next_seq);
      ready.push({ seq: this.next_seq, payload: p });
      this.next_seq += 1;
    }
    return { status: 'delivered', ready };
  }
}
