// What a node keeps about its log for the clients: it decodes the frames it ships (primary) or receives
// (backup) to count each session's delivered requests (RECV entries) and outputs (SEND entries), and it
// holds accepts and outputs until the log entry behind each is durable (the output rule). Shared by the
// primary and by a backup that went live.
import assert from 'node:assert/strict';
import { EntryKind, FrameReader } from '../log/index.ts';
import { Fifo, type ClientServer } from '../net/index.ts';
import type { GuestRunner } from '../vm/index.ts';
import type { FrameFacts } from '../vm/runner.ts';
import { ReplicationError } from './errors.ts';

interface HeldAccept {
  seq: number;
  session: number;
  request: number;
}

interface HeldOutput {
  seq: number;
  session: number;
  output: number;
  bytes: Uint8Array;
}

export interface GateOptions {
  server: ClientServer;
  /** Epoch written on released outputs. */
  epoch: () => number;
  /** Epoch recorded for a session first seen in the log (the backup: the primary's epoch). */
  sessionEpoch?: (session: number) => number;
  /** Outputs held waiting for the watermark; beyond it the node is told (onOverflow). */
  held_outputs_max: number;
  onOverflow: (what: string) => void;
}

/** Log bookkeeping and the output rule: release(watermark) lets out everything whose entry seq <= watermark. */
export class OutputGate {
  /** Highest log seq decoded. */
  last_seq = 0;
  /** Highest log seq whose accepts and outputs were released. */
  released_seq = 0;
  /** Outputs handed to the client server (over all sessions). */
  outputs_released = 0;
  /** An END entry was decoded: the guest's log can have nothing after it. */
  ended = false;
  private reader = new FrameReader();
  private readonly delivered = new Map<number, number>();
  private readonly outputs = new Map<number, number>();
  private readonly accepts = new Fifo<HeldAccept>();
  private readonly held = new Fifo<HeldOutput>();

  constructor(private readonly options: GateOptions) {}

  /** Requests of a session the guest has taken, as counted from the log. */
  deliveredOf(session: number): number {
    return this.delivered.get(session) ?? 0;
  }

  /**
   * Drops the counters of a session the primary dropped (host/replication/forgets.ts), on the primary at
   * the seq its log had reached, on the backup once the log received passes it.
   */
  forget(session: number): void {
    this.delivered.delete(session);
    this.outputs.delete(session);
  }

  /**
   * A node restored from a snapshot taken after entry `last_seq` (docs/SNAPSHOT.md): the counters are those
   * of that point, everything up to it counts as released, and the next frame must start at last_seq + 1.
   */
  startAt(last_seq: number, sessions: ReadonlyArray<{ session: number; delivered: number; outputs: number }>): void {
    assert(this.last_seq === 0 && this.held.length === 0 && this.accepts.length === 0, 'startAt on a gate that decoded frames already');
    this.reader = new FrameReader({ next_seq: last_seq + 1 });
    this.last_seq = last_seq;
    this.released_seq = last_seq;
    for (const s of sessions) {
      if (s.delivered > 0) this.delivered.set(s.session, s.delivered);
      if (s.outputs > 0) this.outputs.set(s.session, s.outputs);
    }
  }

  /** Sessions whose requests are counted (bounded by the session table, as dropped sessions are forgotten). */
  get sessions_counted(): number {
    return this.delivered.size;
  }

  get held_outputs(): number {
    return this.held.length;
  }

  /**
   * Decodes whole frames (bytes may hold several); records RECV entries. Throws LogCorruptError on damage.
   * For frames from the network (a backup): the decode is the check that they are whole and undamaged.
   */
  onFrames(bytes: Uint8Array): number {
    this.reader.push(bytes);
    for (let f = this.reader.next(); f !== 'incomplete'; f = this.reader.next()) {
      for (const e of f.entries) {
        if (e.kind === EntryKind.END) this.ended = true;
        if (e.kind !== EntryKind.RECV || !(e.payload instanceof Uint8Array)) continue;
        const p = e.payload;
        assert(p.length >= 4, `RECV entry ${e.seq} is shorter than its session id`);
        this.onRecv(e.seq, new DataView(p.buffer, p.byteOffset, 4).getUint32(0, true));
      }
      assert(f.lastSeq > this.last_seq, `frame seqs go back: ${f.firstSeq}..${f.lastSeq} after ${this.last_seq}`);
      this.last_seq = f.lastSeq;
    }
    return this.last_seq;
  }

  /**
   * A frame this node's own guest sealed, known by the facts its worker noted while appending (RECV seqs and
   * sessions, END): the same bookkeeping as onFrames without decoding the frame on this thread.
   */
  onFrameFacts(firstSeq: number, lastSeq: number, facts: FrameFacts): number {
    assert(firstSeq === this.last_seq + 1 && lastSeq >= firstSeq, `frame ${firstSeq}..${lastSeq} after seq ${this.last_seq}`);
    const recvs = facts.recvs;
    for (let i = 0; i < recvs.length; i += 2) {
      const seq = recvs[i]!;
      const session = recvs[i + 1]!;
      assert(seq >= firstSeq && seq <= lastSeq, `RECV seq ${seq} outside its frame ${firstSeq}..${lastSeq}`);
      assert(session >= 0, `RECV entry ${seq} is shorter than its session id`);
      this.onRecv(seq, session);
    }
    if (facts.ended) this.ended = true;
    this.last_seq = lastSeq;
    return lastSeq;
  }

  private onRecv(seq: number, session: number): void {
    const request = this.deliveredOf(session) + 1;
    this.delivered.set(session, request);
    this.options.server.setDelivered(session, request, this.options.sessionEpoch?.(session));
    this.accepts.push({ seq, session, request });
  }

  /** An output of the guest (the runner's 'send'); held until release() passes its seq. */
  onSend(session: number, bytes: Uint8Array, seq: number): void {
    const output = (this.outputs.get(session) ?? 0) + 1;
    this.outputs.set(session, output);
    this.held.push({ seq, session, output, bytes });
    if (this.held_outputs > this.options.held_outputs_max) {
      this.options.onOverflow(`${this.held_outputs} outputs held > held_outputs_max = ${this.options.held_outputs_max}`);
    }
  }

  /** Lets out every accept and output whose log entry seq <= watermark; true if anything went out. */
  release(watermark: number): boolean {
    const server = this.options.server;
    let any = false;
    while (this.accepts.first !== undefined && this.accepts.first.seq <= watermark) {
      const a = this.accepts.shift()!;
      server.accept(a.session, a.request);
    }
    const epoch = this.options.epoch();
    while (this.held.first !== undefined && this.held.first.seq <= watermark) {
      const o = this.held.shift()!;
      server.output(o.session, o.output, o.bytes, epoch);
      this.outputs_released += 1;
      any = true;
    }
    this.released_seq = Math.max(this.released_seq, Math.min(watermark, this.last_seq));
    return any;
  }
}

/**
 * Client requests into the guest's bounded input ring, in per-session seq order, each exactly once:
 * a seq at or below what was already taken (queued or delivered) is dropped, a gap is refused.
 */
export class InputFeeder {
  private readonly taken = new Map<number, number>();
  private queue: Array<{ session: number; payload: Uint8Array }> = [];
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly runner: () => GuestRunner | undefined,
    private readonly delivered: (session: number) => number,
    private readonly queue_max: number,
    private readonly retry_ms = 1,
  ) {}

  get queued(): number {
    return this.queue.length;
  }

  /** ClientServer.onRequest: throws (the client is told `internal` and sends again) when the queue is full. */
  onRequest(session: number, seq: number, payload: Uint8Array): void {
    if (this.stopped) throw new ReplicationError('FTW_REPL_STATE', 'this node no longer takes requests');
    const taken = Math.max(this.taken.get(session) ?? 0, this.delivered(session));
    if (seq <= taken) return; // already on its way to the guest: never twice
    if (seq !== taken + 1) throw new ReplicationError('FTW_REPL_STATE', `request ${seq} of session ${session} skips past ${taken + 1}`);
    if (this.queue.length >= this.queue_max) {
      throw new ReplicationError('FTW_REPL_STATE', `input queue full (input_queue_max = ${this.queue_max}); request ${seq} of session ${session} refused`);
    }
    this.taken.set(session, seq);
    this.queue.push({ session, payload }); // the payload is the decoder's own copy: kept, not copied again
    this.pump();
  }

  /** A session the primary dropped: it has nothing queued (the server drops only settled sessions). */
  forget(session: number): void {
    this.taken.delete(session);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.queue = [];
  }

  private pump(): void {
    if (this.stopped) return;
    const runner = this.runner();
    let n = 0;
    // No runner yet (a primary's guest starts after its listeners): keep the queue and retry, rather than
    // wait for a next request that may never come (its client waits for an accept first).
    while (runner && n < this.queue.length && runner.sendTo(this.queue[n]!.session, this.queue[n]!.payload)) n++;
    if (n > 0) this.queue.splice(0, n);
    if (this.queue.length > 0 && !this.timer) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.pump();
      }, this.retry_ms);
    }
  }
}
