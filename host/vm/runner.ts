// GuestRunner: the main-thread face of a guest running in a worker thread.
import { EventEmitter } from 'node:events';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { LogFileHeaderInit } from '../log/index.ts';
import { createRingBuffer, SharedRing } from './channel.ts';
import type { GuestMode } from './core.ts';
import { readInstrumentMeta } from '../instrument/index.ts';
import type { GuestSnapshot } from './snapshot.ts';
import { DivergenceError, GuestTrapError, VmStateError } from './errors.ts';
import type { FrameFacts, WorkerInit, WorkerMessage } from './worker.ts';
import { unpackSends } from './sends.ts';

export type { FrameFacts } from './worker.ts';

export interface GuestRunnerOptions {
  /** An instrumented module. */
  module: WebAssembly.Module;
  mode: GuestMode;
  /** Record: write the log to this new file (the worker writes it, no copy through the main thread). */
  logFile?: { path: string; header: LogFileHeaderInit };
  /** Record: emit every sealed frame as a 'frame' event (replication). */
  streamFrames?: boolean;
  sliceInstructions?: bigint;
  checkpointInstructions?: bigint;
  atLogEnd?: 'stop' | 'go-live';
  cpuId?: number;
  entry?: string;
  /** Bounds of the shared rings. Input messages larger than the input ring's room wait (write returns false). */
  inputRingBytes?: number;
  logRingBytes?: number;
  /** Outputs and frames the worker may post before waiting for this thread to handle them. Default 1024. */
  inFlightMax?: number;
  /** Longest `send` payload (GuestCoreOptions.messageBytesMax); default MESSAGE_BYTES_MAX. */
  messageBytesMax?: number;
  /** Start from a snapshot (GuestCoreOptions.restore): replay takes the log from snapshot.lastSeq + 1. */
  restore?: GuestSnapshot;
  /**
   * Hand the whole buffer under `restore.memory` to the worker instead of copying it: one copy of the guest's
   * memory less, and every view of that buffer here is detached afterwards. Only for a buffer that holds
   * nothing else the caller still uses.
   */
  restoreTransfer?: boolean;
}

export interface RunnerResult {
  exit: 'returned' | 'trap' | 'log-ended';
  icount: bigint;
  stateHash: Uint8Array;
  lastSeq: number;
  trap?: string;
}

export interface GuestRunnerEvents {
  send: [session: number, bytes: Uint8Array, seq: number];
  log: [text: string, seq: number];
  /** facts: the frame's RECV entries and END, as the worker saw them appended (no decoding needed). */
  frame: [bytes: Uint8Array, firstSeq: number, lastSeq: number, facts: FrameFacts];
  live: [seq: number];
  /** A snapshot asked for with snapshot(); every frame up to its lastSeq was emitted before it. */
  snapshot: [snapshot: GuestSnapshot];
}

const RING_BYTES_DEFAULT = 1 << 20;
const IN_FLIGHT_MAX_DEFAULT = 1024;
/** The longest pause a throttle may ask for at one check-in. */
export const THROTTLE_PAUSE_US_MAX = 50_000;

/** Where the bundled worker lives: next to dist/index.js, or in dist/ when running from the TypeScript sources. */
function workerPath(): string {
  const here = import.meta.url;
  const candidates = here.endsWith('.ts') ? ['../../dist/worker.js'] : ['./worker.js', '../worker.js'];
  for (const c of candidates) {
    const path = fileURLToPath(new URL(c, here));
    if (existsSync(path)) return path;
  }
  throw new VmStateError('dist/worker.js is missing: run `npm run build` (npm install does it)');
}

export class GuestRunner extends EventEmitter<GuestRunnerEvents> {
  readonly done: Promise<RunnerResult>;
  private readonly worker: Worker;
  private readonly input: SharedRing;
  private readonly interrupts: SharedRing;
  private readonly log: SharedRing | undefined;
  private readonly inFlight: Int32Array;
  private readonly control: Int32Array;
  private readonly progress: Float64Array;
  private readonly unwind: boolean;
  private snapshotAsked: { promise: Promise<GuestSnapshot>; resolve: (s: GuestSnapshot) => void } | undefined;

  constructor(options: GuestRunnerOptions) {
    super();
    const inputRing = createRingBuffer(options.inputRingBytes ?? RING_BYTES_DEFAULT);
    const interruptRing = createRingBuffer(4096);
    const logRing = options.mode === 'replay' ? createRingBuffer(options.logRingBytes ?? 4 * RING_BYTES_DEFAULT) : undefined;
    this.input = new SharedRing(inputRing);
    this.interrupts = new SharedRing(interruptRing);
    this.log = logRing ? new SharedRing(logRing) : undefined;
    const inFlight = new SharedArrayBuffer(4);
    this.inFlight = new Int32Array(inFlight);
    const control = new SharedArrayBuffer(16);
    this.control = new Int32Array(control);
    const progress = new SharedArrayBuffer(8);
    this.progress = new Float64Array(progress);
    if (options.restore) this.progress[0] = options.restore.lastSeq; // replayed up to the snapshot already
    const init: WorkerInit = {
      inFlight,
      control,
      progress,
      inFlightMax: options.inFlightMax ?? IN_FLIGHT_MAX_DEFAULT,
      module: options.module,
      mode: options.mode,
      inputRing,
      interruptRing,
      ...(logRing ? { logRing } : {}),
      ...(options.logFile ? { logFile: options.logFile } : {}),
      streamFrames: options.streamFrames ?? false,
      sliceInstructions: String(options.sliceInstructions ?? 1_000_000n),
      checkpointInstructions: String(options.checkpointInstructions ?? 0n),
      atLogEnd: options.atLogEnd ?? 'stop',
      ...(options.cpuId !== undefined ? { cpuId: options.cpuId } : {}),
      entry: options.entry ?? '_start',
      ...(options.messageBytesMax !== undefined ? { messageBytesMax: options.messageBytesMax } : {}),
      ...(options.restore ? { restore: options.restore } : {}),
    };
    this.unwind = readInstrumentMeta(options.module)?.unwind === true;
    const memory = options.restore?.memory;
    const transfer = options.restoreTransfer && memory && memory.buffer instanceof ArrayBuffer;
    this.worker = new Worker(workerPath(), { workerData: init, ...(transfer ? { transferList: [memory.buffer as ArrayBuffer] } : {}) });
    this.done = new Promise<RunnerResult>((resolve, reject) => {
      this.worker.on('message', (m: WorkerMessage) => {
        if (m.t === 'frame' || m.t === 'send' || m.t === 'sends' || m.t === 'log') {
          Atomics.sub(this.inFlight, 0, m.t === 'sends' ? m.count : 1);
          Atomics.notify(this.inFlight, 0);
        }
        switch (m.t) {
          case 'send':
            return void this.emit('send', m.session, m.bytes, m.seq);
          case 'sends':
            // Each output is copied out of the batch: a view would keep the whole batch alive for as long as
            // any one of its outputs stays buffered for a resend (and small copies live on V8's heap).
            return unpackSends(m, (session, bytes, seq) => this.emit('send', session, bytes, seq));
          case 'log':
            return void this.emit('log', m.text, m.seq);
          case 'frame':
            return void this.emit('frame', m.bytes, m.firstSeq, m.lastSeq, m.facts);
          case 'live':
            return void this.emit('live', m.seq);
          case 'snapshot': {
            const asked = this.snapshotAsked;
            this.snapshotAsked = undefined;
            this.emit('snapshot', m.snapshot);
            return asked?.resolve(m.snapshot);
          }
          case 'done':
            return resolve({
              exit: m.exit as RunnerResult['exit'], icount: BigInt(m.icount), stateHash: m.stateHash, lastSeq: m.lastSeq,
              ...(m.trap ? { trap: m.trap } : {}),
            });
          case 'error':
            return reject(rebuildError(m));
        }
      });
      this.worker.on('error', reject);
      this.worker.on('exit', (code) => reject(new VmStateError(`guest worker exited (code ${code}) before finishing`)));
    });
    this.done.catch(() => undefined).finally(() => void this.worker.terminate());
  }

  /**
   * With a module prepared by prepareUnwind: a snapshot of the guest at its next recv (recording: at once if
   * it waits in one; replaying: at the next recv the log brings it to). Every frame up to the snapshot's lastSeq is emitted before the promise resolves. A guest
   * that calls no recv never gives one: the caller bounds the wait. Asking again while one is pending
   * returns the same promise.
   */
  snapshot(): Promise<GuestSnapshot> {
    if (!this.unwind) return Promise.reject(new VmStateError('a snapshot needs the module prepared with prepareUnwind before instrument()'));
    if (this.snapshotAsked) return this.snapshotAsked.promise;
    let resolve!: (s: GuestSnapshot) => void;
    const promise = new Promise<GuestSnapshot>((r) => (resolve = r));
    this.snapshotAsked = { promise, resolve };
    Atomics.store(this.control, 3, 1);
    this.input.wake(); // a guest waiting in recv looks again
    return promise;
  }

  /** Queues one input message (4-byte LE session id + payload); false when the input ring is full now. */
  send(message: Uint8Array): boolean {
    return this.input.write(message);
  }

  /** Queues one input message of `session` without building it first; false when the input ring is full now. */
  sendTo(session: number, payload: Uint8Array): boolean {
    return this.input.writeWithPrefix(session, payload);
  }

  /** No more input: the guest's next recv on an empty queue returns -1. */
  closeInput(): void {
    this.input.close();
  }

  /** Raises an interrupt, delivered at the guest's next check point; false when too many are waiting. */
  interrupt(event: number, arg: number): boolean {
    const m = new Uint8Array(8);
    const view = new DataView(m.buffer);
    view.setInt32(0, event, true);
    view.setInt32(4, arg, true);
    return this.interrupts.write(m);
  }

  /** Replay: feeds log bytes (frames, possibly split anywhere); false when the log ring is full now. */
  pushLog(bytes: Uint8Array): boolean {
    if (!this.log) throw new VmStateError('pushLog is for replay mode');
    return this.log.write(bytes);
  }

  /** Replay: the log ends here; the guest stops (or goes live) when it has replayed it all. */
  endLog(): void {
    this.log?.close();
  }

  /**
   * Record: slow the guest down. At every check-in (each time a slice runs out) the worker sleeps `pause_us`
   * (at most THROTTLE_PAUSE_US_MAX), and slices are cut to `slice` instructions so the pauses come often
   * and small. throttle(0) lifts it at once. A guest blocked in recv is not slowed: throttle its input.
   */
  throttle(pause_us: number, slice?: bigint): void {
    const pause = Math.max(0, Math.min(THROTTLE_PAUSE_US_MAX, Math.round(pause_us)));
    const cut = pause > 0 && slice !== undefined && slice > 0n ? Number(slice > 0x7fffffffn ? 0x7fffffffn : slice) : 0;
    Atomics.store(this.control, 0, pause);
    Atomics.store(this.control, 1, cut);
    if (pause === 0) Atomics.notify(this.control, 2);
  }

  /** The throttle in force: pause per check-in in us (0: none). */
  get throttlePauseUs(): number {
    return Atomics.load(this.control, 0);
  }

  /** Replay: seq of the last log entry the guest has taken (0 before the first). */
  get replayedSeq(): number {
    return this.progress[0]!;
  }

  /** Outputs and frames posted by the worker and not yet handled here (at most `inFlightMax`, plus up to 63 when a batch of outputs crosses it). */
  get inFlightNow(): number {
    return Atomics.load(this.inFlight, 0);
  }

  get logRingMessageMax(): number {
    return this.log?.messageBytesMax ?? 0;
  }

  async terminate(): Promise<void> {
    await this.worker.terminate();
  }
}

function rebuildError(m: Extract<WorkerMessage, { t: 'error' }>): Error {
  if (m.code === 'FTW_DIVERGENCE') {
    const e = new DivergenceError(m.seq ?? 0, '', '');
    e.message = m.message;
    return e;
  }
  if (m.code === 'FTW_GUEST_TRAP') return Object.assign(new GuestTrapError('', 0n), { message: m.message });
  const e = new Error(m.message) as Error & { code?: string };
  e.name = m.name;
  if (m.code) e.code = m.code;
  return e;
}
