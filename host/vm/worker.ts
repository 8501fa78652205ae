// Worker thread entry: runs one GuestCore so that a blocking or endless guest never blocks the host's event
// loop. Input, interrupts and (for replay) log frames arrive through shared rings; outputs, frames and the
// result go back by postMessage. Built to dist/worker.js.
import { parentPort, workerData } from 'node:worker_threads';
import { EntryKind, FrameReader, FrameWriter, LogFileWriter } from '../log/index.ts';
import type { LogEntry, LogFileHeaderInit } from '../log/index.ts';
import { SharedRing, RING_CLOSED } from './channel.ts';
import { GuestCore } from './core.ts';
import type { EntrySink, EntrySource, GuestMode } from './core.ts';
import type { GuestSnapshot } from './snapshot.ts';
import { RealWorld } from './world.ts';
import { packSends } from './sends.ts';

/** Group commit of outputs (see flushSends): at most this many held, for at most this long. */
const SEND_BATCH_MAX = 64;
const SEND_BATCH_MS = 0.2;

export interface WorkerInit {
  module: WebAssembly.Module;
  mode: GuestMode;
  inputRing: SharedArrayBuffer;
  interruptRing: SharedArrayBuffer;
  logRing?: SharedArrayBuffer;
  logFile?: { path: string; header: LogFileHeaderInit };
  streamFrames: boolean;
  sliceInstructions: string;
  checkpointInstructions: string;
  atLogEnd: 'stop' | 'go-live';
  cpuId?: number;
  entry: string;
  messageBytesMax?: number;
  /** Int32Array[1] shared with the runner: messages posted and not yet handled by the main thread. */
  inFlight: SharedArrayBuffer;
  /** The worker waits (the guest with it) while this many messages are in flight: bounded memory. */
  inFlightMax: number;
  /** Int32Array[4] shared with the runner: [0] pause in us per check-in, [1] slice override, [2] wake-up word, [3] 1 while a snapshot is asked for. */
  control: SharedArrayBuffer;
  restore?: GuestSnapshot;
  /** Float64Array[1] shared with the runner: replay, the seq of the last entry the guest has taken. */
  progress: SharedArrayBuffer;
}

export type WorkerMessage =
  | { t: 'frame'; bytes: Uint8Array; firstSeq: number; lastSeq: number; facts: FrameFacts }
  | { t: 'send'; session: number; bytes: Uint8Array; seq: number }
  /**
   * Several outputs in two transferred buffers rather than an array of objects to clone one by one: `meta`
   * holds (session, seq, length) per output, `data` their bytes back to back (see packSends).
   */
  | { t: 'sends'; count: number; meta: Float64Array; data: Uint8Array }
  | { t: 'log'; text: string; seq: number }
  | { t: 'live'; seq: number }
  | { t: 'snapshot'; snapshot: GuestSnapshot }
  | { t: 'done'; exit: string; icount: string; stateHash: Uint8Array; lastSeq: number; trap?: string }
  | { t: 'error'; name: string; code?: string; message: string; seq?: number };

/**
 * What the host needs to know of a sealed frame without decoding it (replication's session table): the RECV
 * entries it holds, flat as [seq, session, seq, session, ...] (session = the first 4 bytes of the message,
 * LE; -1 if the message is shorter), and whether it holds the END entry.
 */
export interface FrameFacts {
  recvs: number[];
  ended: boolean;
}

/** Replay source over frames pushed into a ring; blocks until the next frame or the end of the log. */
class RingSource implements EntrySource {
  private readonly reader: FrameReader;
  private queue: LogEntry[] = [];
  private at = 0;
  private ended = false;
  private lastSeq: number;
  /** onEnd runs once, when every entry of the log was handed out and the log was closed. */
  constructor(
    private readonly ring: SharedRing,
    private readonly onEnd?: (nextSeq: number) => void,
    private readonly progress?: Float64Array,
    private readonly beforeBlock?: () => void,
    /** Seq of the last entry before the ring's first frame (a guest restored from a snapshot: its lastSeq). */
    before = 0,
  ) {
    this.reader = new FrameReader({ next_seq: before + 1 });
    this.lastSeq = before;
  }
  /** More log is here already: entries decoded and not taken, or bytes in the ring. */
  pending(): boolean {
    return this.at < this.queue.length || this.ring.usedBytes() > 0;
  }
  peek(): LogEntry | undefined {
    while (this.at >= this.queue.length && !this.ended) {
      if (this.ring.usedBytes() === 0) this.beforeBlock?.();
      const chunk = this.ring.read(Infinity);
      if (chunk === RING_CLOSED) {
        this.ended = true;
        this.onEnd?.(this.lastSeq + 1);
        break;
      }
      if (typeof chunk === 'number') continue;
      this.reader.push(chunk);
      this.queue = this.queue.slice(this.at);
      this.at = 0;
      for (let f = this.reader.next(); f !== 'incomplete'; f = this.reader.next()) {
        this.queue.push(...f.entries);
        this.lastSeq = f.lastSeq;
      }
    }
    return this.queue[this.at];
  }
  take(): void {
    if (this.progress) this.progress[0] = this.queue[this.at]!.seq;
    this.at++;
  }
}

function main(): void {
  const init = workerData as WorkerInit;
  const port = parentPort!;
  const inFlight = new Int32Array(init.inFlight);
  const control = new Int32Array(init.control);
  // Outputs and frames wait for the main thread once inFlightMax are queued: a host whose event loop
  // falls behind slows the guest down instead of growing the message queue without bound. A 'sends' message
  // counts for each output it carries.
  const post = (m: WorkerMessage, transfer: ArrayBuffer[] = []): void => {
    if (m.t === 'frame' || m.t === 'send' || m.t === 'sends' || m.t === 'log') {
      // This thread is the only one adding, so once below the bound, adding k keeps it within k - 1 of it.
      for (let n = Atomics.load(inFlight, 0); n >= init.inFlightMax; n = Atomics.load(inFlight, 0)) {
        Atomics.wait(inFlight, 0, n, 100);
      }
      Atomics.add(inFlight, 0, m.t === 'sends' ? m.count : 1);
    }
    port.postMessage(m, transfer);
  };
  let sink: (EntrySink & { flush(): void }) | undefined;
  // Group commit of outputs: while more client input (or, replaying, more log) already waits, the guest's
  // outputs are held here and go out together, after one flush of the log: when the guest would block or a
  // recv finds no input, at a check-in, before 'live', or once SEND_BATCH_MAX are held or the oldest is
  // SEND_BATCH_MS old (looked at on every send and recv). With nothing queued an output goes at once, so a
  // lone request (and a compute-bound guest) sees no added latency; under load one frame, one FRAMES message
  // and one ack cover many requests instead of one each.
  const input = new SharedRing(init.inputRing);
  let source: RingSource | undefined;
  let sends: { session: number; bytes: Uint8Array; seq: number }[] = [];
  let sendsSince = 0;
  const flushSends = (): void => {
    if (sends.length === 0) return;
    sink?.flush(); // the entries go out before the outputs can be released
    if (sends.length === 1) {
      post({ t: 'send', ...sends[0]! });
    } else {
      const m = packSends(sends);
      post(m, [m.meta.buffer as ArrayBuffer, m.data.buffer as ArrayBuffer]);
    }
    sends = [];
  };
  let file: LogFileWriter | undefined;
  // 'live' goes out as soon as the replay has taken the last entry of a closed log (the guest records from
  // then on), not at its first new entry: a guest that goes live and blocks in recv appends nothing until the
  // host sends input, and the host (a backup taking over) waits for 'live' before it takes input.
  let livePosted = false;
  const postLive = (nextSeq: number): void => {
    if (init.mode !== 'replay' || init.atLogEnd !== 'go-live' || livePosted) return;
    livePosted = true;
    flushSends(); // every replayed output reaches the host before it hears the guest is live
    post({ t: 'live', seq: nextSeq });
  };
  const makeSink = (nextSeq: number): EntrySink => {
    if (init.logFile && !init.streamFrames) {
      file = LogFileWriter.create(init.logFile.path, { ...init.logFile.header, firstSeq: nextSeq });
      sink = file;
    } else {
      // Facts of the entries appended and not yet sealed: RECV seqs and sessions, the END seq (0: none).
      let recvs: number[] = [];
      let endSeq = 0;
      const writer = new FrameWriter({
        next_seq: nextSeq,
        on_frame: (frame, info) => {
          // Frames seal in seq order and an entry is noted only once appended, so the facts of this frame are
          // the noted ones up to its last seq (an append that seals the previous frame is noted after it).
          let n = 0;
          while (n < recvs.length && recvs[n]! <= info.lastSeq) n += 2;
          const facts: FrameFacts = { recvs: n === recvs.length ? recvs : recvs.slice(0, n), ended: endSeq !== 0 && endSeq <= info.lastSeq };
          recvs = n === recvs.length ? [] : recvs.slice(n);
          post({ t: 'frame', bytes: frame, firstSeq: info.firstSeq, lastSeq: info.lastSeq, facts }, [frame.buffer as ArrayBuffer]);
        },
      });
      sink = {
        append: (entry: LogEntry): number => {
          const seq = writer.append(entry);
          if (entry.kind === EntryKind.RECV && entry.payload instanceof Uint8Array) {
            const p = entry.payload;
            recvs.push(seq, p.length >= 4 ? new DataView(p.buffer, p.byteOffset, 4).getUint32(0, true) : -1);
          } else if (entry.kind === EntryKind.END) {
            endSeq = seq;
          }
          return seq;
        },
        appendClock: (kind, icount, ns) => writer.appendClock(kind, icount, ns),
        appendRandom: (icount, bytes) => writer.appendRandom(icount, bytes),
        flush: () => writer.flush(),
      };
    }
    postLive(nextSeq);
    return sink;
  };
  const world = new RealWorld({
    input,
    interrupts: new SharedRing(init.interruptRing),
    ...(init.cpuId !== undefined ? { cpuId: init.cpuId } : {}),
    beforeBlock: () => {
      flushSends();
      sink?.flush();
    },
    snapshotWanted: () => Atomics.load(control, 3) === 1,
    // Held outputs go when a recv finds no input to batch them with, or once the oldest is SEND_BATCH_MS old.
    onRecv: (queued) => {
      if (sends.length > 0 && (!queued || performance.now() - sendsSince >= SEND_BATCH_MS)) flushSends();
    },
  });
  try {
    const core = new GuestCore({
      module: init.module,
      mode: init.mode,
      world,
      ...(init.mode === 'record' || init.atLogEnd === 'go-live' ? { sink: makeSink } : {}),
      ...(init.logRing ? { source: (source = new RingSource(new SharedRing(init.logRing), postLive, new Float64Array(init.progress), flushSends, init.restore?.lastSeq ?? 0)) } : {}),
      checkIn: () => {
        flushSends();
        const pause_us = Atomics.load(control, 0);
        if (pause_us > 0) Atomics.wait(control, 2, 0, pause_us / 1000);
        const slice = Atomics.load(control, 1);
        return slice > 0 ? BigInt(slice) : undefined;
      },
      outputs: {
        send: (session, bytes, seq) => {
          if (sends.length === 0) sendsSince = performance.now();
          sends.push({ session, bytes, seq });
          const more = input.usedBytes() > 0 || (source?.pending() ?? false);
          if (!more || sends.length >= SEND_BATCH_MAX || performance.now() - sendsSince >= SEND_BATCH_MS) flushSends();
        },
        log: (text, seq) => {
          flushSends(); // in order with the outputs around it
          post({ t: 'log', text, seq });
        },
      },
      sliceInstructions: BigInt(init.sliceInstructions),
      checkpointInstructions: BigInt(init.checkpointInstructions),
      atLogEnd: init.atLogEnd,
      ...(init.messageBytesMax !== undefined ? { messageBytesMax: init.messageBytesMax } : {}),
      ...(init.restore ? { restore: init.restore } : {}),
      onSnapshot: (snapshot) => {
        Atomics.store(control, 3, 0);
        // Every entry before it goes out first: the host learns of the snapshot with its log complete to lastSeq.
        flushSends();
        sink?.flush();
        post({ t: 'snapshot', snapshot }, [snapshot.memory.buffer as ArrayBuffer, snapshot.stack.buffer as ArrayBuffer]);
      },
    });
    const result = core.run(init.entry);
    flushSends();
    sink?.flush();
    file?.close();
    post({
      t: 'done', exit: result.exit, icount: result.icount.toString(), stateHash: result.stateHash, lastSeq: result.lastSeq,
      ...(result.trap ? { trap: result.trap.message } : {}),
    });
  } catch (error) {
    try {
      flushSends();
      sink?.flush();
      file?.close();
    } catch {
      // the original error matters more
    }
    const e = error as { name?: string; code?: string; message?: string; seq?: number };
    post({ t: 'error', name: e.name ?? 'Error', message: e.message ?? String(error), ...(e.code ? { code: e.code } : {}), ...(e.seq !== undefined ? { seq: e.seq } : {}) });
  }
}

main();
