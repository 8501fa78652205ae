// GuestCore: one guest, run synchronously in the calling thread, in record or replay mode. The worker
// (worker.ts) wraps it so that a blocking guest never blocks the host's event loop; tests use it directly.
//
// Record answers every non-deterministic import from the World and appends an entry stamped with the
// icount; replay answers from the log and checks kind and icount first. Asynchronous events (interrupts,
// checkpoints) happen only inside `ftwasm.fuel_exhausted`, at a check point, so replay can stop the guest at
// the same check point by setting its fuel: that is the whole trick of VMware FT's deterministic replay.
import { readInstrumentMeta } from '../instrument/index.ts';
import type { InstrumentMeta } from '../instrument/index.ts';
import { EntryKind, entryKindName, digest32 } from '../log/index.ts';
import type { LogEntry } from '../log/index.ts';
import { refusedImports, IO_BYTES_MAX, MESSAGE_BYTES_MAX, RANDOM_FILL_BYTES_MAX } from './abi.ts';
import type { DeterministicImports } from './abi.ts';
import { AdmissionError, DivergenceError, GuestTrapError, VmStateError } from './errors.ts';
import { stateHash, tablesText } from './state.ts';
import type { GuestSnapshot } from './snapshot.ts';

/** The real world, as the primary sees it. */
export interface World {
  clockNow(): bigint;
  clockMono(): bigint;
  /** Fills `target` (a view of guest memory) with random bytes. */
  randomFill(target: Uint8Array): void;
  cpuId(): number;
  /**
   * Next input: 4-byte LE session + payload, RECV_TIMEOUT (0), RECV_CLOSED (-1), or -(bytes needed) when it
   * exceeds `cap`; or RECV_SNAPSHOT when a snapshot was asked for while it waited (nothing was taken).
   */
  recv(cap: number, timeoutMs: number): Uint8Array | number | typeof RECV_SNAPSHOT;
  /** Whether a snapshot is wanted (taken at the next recv of a module prepared for unwinding). */
  snapshotWanted?(): boolean;
  /** An interrupt waiting to be delivered at this check point, if any. */
  pendingInterrupt(): { event: number; arg: number } | undefined;
  seed(): number;
  dateNow(): number;
}

/** Where record appends entries (a FrameWriter, a LogFileWriter, a replication stream). */
export interface EntrySink {
  append(entry: LogEntry): number;
  appendClock(kind: typeof EntryKind.CLOCK_NOW | typeof EntryKind.CLOCK_MONO, icount: bigint | number, ns: bigint): number;
  /** A RANDOM entry; the sink copies the bytes before returning. */
  appendRandom(icount: bigint | number, bytes: Uint8Array): number;
}

/** Where replay reads entries. `peek` returns undefined when no entry will come (or none has yet, see worker). */
export interface EntrySource {
  peek(): LogEntry | undefined;
  take(): void;
}

/** Receives the guest's outputs with the seq of their log entry (the output rule releases by seq). */
export interface OutputSink {
  send(session: number, bytes: Uint8Array, seq: number): void;
  log(text: string, seq: number): void;
}

export type GuestMode = 'record' | 'replay';

/** World.recv's answer when a snapshot was asked for while it waited for input. */
export const RECV_SNAPSHOT = 'snapshot';
/** Where Asyncify's data lives while the stack is unwound: [u32 next, u32 end] at 0, the saved stack after it. */
const UNWIND_AT = 0;
const UNWIND_HEAD = 8;
/** Fuel while the stack unwinds and rewinds: no check fires there; the icount is set back afterwards. */
const UNWIND_FUEL = 1n << 62n;

export interface GuestCoreOptions {
  /** An instrumented module (see host/instrument). */
  module: WebAssembly.Module;
  mode: GuestMode;
  world?: World;
  /** Record's entry sink, or a factory called with the first seq when recording starts (at go-live for a backup). */
  sink?: EntrySink | ((nextSeq: number) => EntrySink);
  source?: EntrySource;
  outputs?: OutputSink;
  deterministicImports?: DeterministicImports;
  /** Record: instructions between the host's check-ins (interrupt latency). Default 1,000,000. */
  sliceInstructions?: bigint;
  /** Record: a CHECKPOINT entry every this many instructions; 0n: none. Default 0n. */
  checkpointInstructions?: bigint;
  /** Replay: at the end of the log, stop the guest ('stop', default) or carry on recording ('go-live'). */
  atLogEnd?: 'stop' | 'go-live';
  /**
   * Record: called at every check-in (each time a slice of fuel runs out), before interrupts are delivered.
   * It may block to slow the guest down (replication throttles a primary whose backup lags) and may return
   * a shorter slice for what follows, so the pauses come in small, even steps. Not logged: where check-ins
   * fall does not change what the guest computes.
   */
  checkIn?: () => bigint | undefined;
  /**
   * Longest `send` payload; a longer one traps. Default MESSAGE_BYTES_MAX; a replicated node passes its client
   * service's payload limit. It must be the same wherever the log is replayed (a replay that traps where the
   * recording did not diverges).
   */
  messageBytesMax?: number;
  /**
   * Start from a snapshot (docs/SNAPSHOT.md) instead of from the beginning: replay takes the log from
   * snapshot.lastSeq + 1. The module must be the prepared one the snapshot was taken from.
   */
  restore?: GuestSnapshot;
  /** A snapshot taken at a recv because World.snapshotWanted() said so (record, or replay with a world); the guest goes on after it. */
  onSnapshot?: (snapshot: GuestSnapshot) => void;
}

export interface RunResult {
  exit: 'returned' | 'trap' | 'log-ended';
  icount: bigint;
  stateHash: Uint8Array;
  /** Last seq appended (record) or consumed (replay). */
  lastSeq: number;
  trap?: GuestTrapError;
}

/** Thrown through the guest to stop it when the log ends; never escapes `run`. */
class LogEnded extends Error {}

const ASYNC_KINDS: ReadonlySet<number> = new Set([EntryKind.INTERRUPT, EntryKind.CHECKPOINT]);
const SLICE_DEFAULT = 1_000_000n;
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

export class GuestCore {
  readonly meta: InstrumentMeta;
  private mode: GuestMode;
  private readonly instance: WebAssembly.Instance;
  private readonly fuel: WebAssembly.Global;
  private memory: WebAssembly.Memory;
  /** icount = icountOffset - fuel: the icount when the fuel was last set, plus the fuel then. */
  private icountOffset: bigint;
  /** The same as a number while it is a safe integer (the fast path of every import), else NaN. */
  private icountOffsetNumber = NaN;
  private readonly fuelNumber: () => number;
  private view: Uint8Array;
  private inExhausted = false;
  private inInterrupt = false;
  private nextCheckpoint: bigint;
  private lastSeq = 0;
  /**
   * clock_mono continues across a failover: the last value the guest saw (replayed or recorded), and what
   * is added to this host's monotonic clock once a replay goes live, so the guest's clock resumes where
   * the log left it instead of jumping to another machine's uptime (backwards, or days ahead).
   */
  private lastMono = -1n;
  private monoOffset = 0n;
  private readonly slice: bigint;
  private sliceNow: bigint;
  private readonly checkpointEvery: bigint;
  private sinkResolved: EntrySink | undefined;
  /** A snapshot being taken: the state at the recv call, while the stack unwinds (the saved stack is added after). */
  private unwinding: Omit<GuestSnapshot, 'stack'> | undefined;
  /** The stack rewinds into recv: what to put back there (the bytes Asyncify's data covered, the icount). */
  private rewinding: { head: Uint8Array; icount: bigint } | undefined;

  private readonly messageMax: number;

  constructor(private readonly options: GuestCoreOptions) {
    const meta = readInstrumentMeta(options.module);
    if (!meta) throw new VmStateError('module is not instrumented: run it through instrument() first');
    this.meta = meta;
    if (meta.start) {
      throw new AdmissionError([], 'FTW_ADMISSION: module has a start section, which would run inside instantiation before ftwasm can record it; export the entry point as _start instead (AssemblyScript: --exportStart _start)');
    }
    const refused = refusedImports(options.module, options.deterministicImports, meta.imports ?? []);
    if (refused.length > 0) throw new AdmissionError(refused);
    this.mode = options.mode;
    this.messageMax = options.messageBytesMax ?? MESSAGE_BYTES_MAX;
    if (!Number.isInteger(this.messageMax) || this.messageMax < 0 || this.messageMax > IO_BYTES_MAX) {
      throw new VmStateError(`messageBytesMax must be an integer in 0..${IO_BYTES_MAX}, got ${this.messageMax}`);
    }
    this.slice = options.sliceInstructions ?? SLICE_DEFAULT;
    this.checkpointEvery = options.checkpointInstructions ?? 0n;
    if (this.slice <= 0n) throw new VmStateError(`sliceInstructions must be positive, got ${this.slice}`);
    this.sliceNow = this.slice;
    this.nextCheckpoint = this.checkpointEvery > 0n ? this.checkpointEvery : -1n;
    this.requireRoles();
    this.icountOffset = BigInt(meta.fuelInitial);
    this.view = new Uint8Array(0);
    this.instance = new WebAssembly.Instance(options.module, this.imports());
    this.fuel = this.instance.exports[meta.fuelExport] as WebAssembly.Global;
    this.fuelNumber = this.instance.exports[meta.fuelF64Export] as () => number;
    this.memory = this.instance.exports[meta.memories[0] ?? 'memory'] as WebAssembly.Memory;
    if (!(this.memory instanceof WebAssembly.Memory)) throw new VmStateError('guest has no memory');
    this.view = new Uint8Array(this.memory.buffer);
    this.rearm();
    if (options.restore) this.restore(options.restore);
  }

  get exports(): WebAssembly.Exports {
    return this.instance.exports;
  }

  get currentMode(): GuestMode {
    return this.mode;
  }

  /** Instructions executed so far (by the fuel meter). */
  icount(): bigint {
    return this.icountOffset - (this.fuel.value as bigint);
  }

  /**
   * The icount as a number while it is a safe integer (the fuel, at most one slice or one log gap, always
   * is): the hot path of every import, with no BigInt made. Falls back to the bigint.
   */
  private icountFast(): number | bigint {
    const n = this.icountOffsetNumber - this.fuelNumber();
    return n === n ? n : this.icount();
  }

  /** A view of guest memory, renewed after memory.grow detached the old buffer. */
  private memoryView(): Uint8Array {
    // memory.grow detaches the old buffer, and a view of a detached buffer has length 0
    if (this.view.length === 0) this.view = new Uint8Array(this.memory.buffer);
    return this.view;
  }

  stateHash(): Uint8Array {
    return stateHash({ exports: this.instance.exports, meta: this.meta }, this.icount());
  }

  /** Runs the exported function `entry` (a command's `_start`) to its end, a trap, or the end of the log. */
  run(entry = '_start'): RunResult {
    const fn = this.instance.exports[entry];
    if (typeof fn !== 'function') throw new VmStateError(`guest exports no function ${entry}`);
    let trap: GuestTrapError | undefined;
    try {
      if (this.rewinding) this.asyncify('asyncify_start_rewind')(UNWIND_AT);
      (fn as () => unknown)();
      // A snapshot unwound the stack to here: take it, rewind into the recv, go on (again, if asked again).
      while (this.unwinding) {
        this.snapshotTaken();
        (fn as () => unknown)();
      }
    } catch (error) {
      if (error instanceof LogEnded) return this.result('log-ended');
      if (error instanceof DivergenceError || error instanceof VmStateError) throw error;
      trap = error instanceof GuestTrapError ? error : new GuestTrapError(describeTrap(error), this.icount(), { cause: error });
    }
    try {
      this.end(trap ? 1 : 0);
    } catch (error) {
      if (error instanceof LogEnded) return this.result('log-ended');
      throw error;
    }
    return { ...this.result(trap ? 'trap' : 'returned'), ...(trap ? { trap } : {}) };
  }

  private result(exit: RunResult['exit']): RunResult {
    return { exit, icount: this.icount(), stateHash: this.stateHash(), lastSeq: this.lastSeq };
  }

  private requireRoles(): void {
    const o = this.options;
    if (this.mode === 'record' && (!o.world || !o.sink)) throw new VmStateError('record mode needs a world and a sink');
    if (this.mode === 'replay' && !o.source) throw new VmStateError('replay mode needs a source');
    if (o.atLogEnd === 'go-live' && (!o.world || !o.sink)) throw new VmStateError("atLogEnd 'go-live' needs a world and a sink");
  }

  // -------------------------------------------------------------------------------------------------
  // Fuel and asynchronous events.

  private setFuel(value: bigint): void {
    this.icountOffset = this.icount() + value;
    this.icountOffsetNumber = this.icountOffset <= MAX_SAFE && value <= MAX_SAFE ? Number(this.icountOffset) : NaN;
    this.fuel.value = value;
  }

  /** Sets the fuel for what comes next: a slice (record) or exactly up to the next entry (replay). */
  private rearm(): void {
    if (this.mode === 'record') return this.setFuel(this.sliceNow);
    const e = this.options.source!.peek();
    if (e === undefined) return this.setFuel(0n); // stop (or go live) at the next check point
    const now = this.icount();
    // Async entries fire at the first check point whose icount reaches theirs; import entries must be
    // called at their icount, so running past it is already a divergence.
    // Before an import entry the guest may run a slice past it: a faithful guest calls the import on the
    // way, and the entry before an asynchronous one rearms exactly.
    const fuel = ASYNC_KINDS.has(e.kind) ? e.icount - 1n - now : e.icount - now;
    if (fuel < 0n) this.diverge(e, `the guest is already at icount ${now}`);
    this.setFuel(ASYNC_KINDS.has(e.kind) || fuel > this.slice ? fuel : this.slice);
  }

  private onFuelExhausted(): void {
    if (this.inExhausted) {
      // A check point inside an interrupt handler: nothing is delivered there, in either mode.
      return this.rearm();
    }
    this.inExhausted = true;
    try {
      if (this.mode === 'replay') this.replayAsync();
      if (this.mode === 'record') this.recordAsync();
      this.rearm();
    } finally {
      this.inExhausted = false;
    }
  }

  private recordAsync(): void {
    if (this.options.checkIn) {
      const slice = this.options.checkIn();
      this.sliceNow = slice !== undefined && slice > 0n && slice < this.slice ? slice : this.slice;
    }
    const now = this.icount();
    if (this.nextCheckpoint >= 0n && now >= this.nextCheckpoint) {
      const hash = this.stateHash();
      this.append(EntryKind.CHECKPOINT, hash);
      while (this.nextCheckpoint <= now) this.nextCheckpoint += this.checkpointEvery;
    }
    const world = this.options.world!;
    for (let event = world.pendingInterrupt(); event; event = world.pendingInterrupt()) {
      // After a handler ran, the next event is stamped with the icount its handler left (replay does the same).
      this.append(EntryKind.INTERRUPT, event);
      this.deliverInterrupt(event.event, event.arg);
    }
  }

  private replayAsync(): void {
    const source = this.options.source!;
    for (;;) {
      const now = this.icount();
      const e = source.peek();
      if (e === undefined) return this.logEnded();
      if (!ASYNC_KINDS.has(e.kind)) {
        if (e.icount < now) this.diverge(e, `the guest reached a check point at icount ${now} without calling it`);
        return;
      }
      if (e.icount > now) return; // a later check point
      if (e.icount < now) this.diverge(e, `the guest is at a check point at icount ${now}`);
      source.take();
      this.lastSeq = e.seq;
      if (e.kind === EntryKind.CHECKPOINT) {
        const hash = this.stateHash();
        if (!equalBytes(hash, e.payload as Uint8Array)) {
          throw new DivergenceError(e.seq, `state hash ${hexOf(e.payload as Uint8Array)}`, `state hash ${hexOf(hash)}`, `checkpoint at icount ${now}`);
        }
      } else {
        const p = e.payload as { event: number; arg: number };
        this.deliverInterrupt(p.event, p.arg);
      }
    }
  }

  private deliverInterrupt(event: number, arg: number): void {
    const handler = this.instance.exports.ft_interrupt;
    if (typeof handler !== 'function') return; // a guest without a handler ignores interrupts
    this.rearm();
    this.inInterrupt = true;
    try {
      (handler as (e: number, a: number) => void)(event, arg);
    } finally {
      this.inInterrupt = false;
    }
  }

  /** recv, send and log are refused inside an interrupt handler (docs/ABI.md): it may run between any two blocks. */
  private notInHandler(what: string): void {
    if (this.inInterrupt) throw new GuestTrapError(`${what} called from the interrupt handler`, this.icount());
  }

  /** The log has no next entry: stop the guest, or become the recorder from here on. */
  private logEnded(): void {
    if (this.options.atLogEnd !== 'go-live') throw new LogEnded();
    if (this.lastMono >= 0n) this.monoOffset = this.lastMono - this.options.world!.clockMono();
    this.mode = 'record';
    this.rearm();
  }

  // -------------------------------------------------------------------------------------------------
  // Snapshots (docs/SNAPSHOT.md): taken at a recv call by unwinding the stack with Asyncify.

  private asyncify(name: string): (...args: number[]) => number {
    const fn = this.instance.exports[name];
    if (typeof fn !== 'function') throw new VmStateError(`guest exports no ${name}: prepare the module with prepareUnwind before instrument()`);
    return fn as (...args: number[]) => number;
  }

  /** Inside recv, before anything is taken: keeps the state, then unwinds the stack back to run(). */
  private unwind(): number {
    const memory = this.memoryView();
    const globals: Record<string, number | bigint> = {};
    for (const name of Object.values(this.meta.globals)) {
      let value: unknown;
      try {
        value = (this.instance.exports[name] as WebAssembly.Global).value;
      } catch {
        value = undefined; // a v128 global cannot be read from JS
      }
      if (typeof value !== 'number' && typeof value !== 'bigint') throw new VmStateError(`cannot snapshot global ${name}: only numeric globals can be carried`);
      globals[name] = value;
    }
    this.unwinding = {
      icount: this.icount(), lastSeq: this.lastSeq, memory: memory.slice(), globals,
      tables: tablesText(this.instance.exports, this.meta), lastMono: this.lastMono,
    };
    this.fuel.value = UNWIND_FUEL;
    const head = new DataView(memory.buffer);
    head.setUint32(UNWIND_AT, UNWIND_AT + UNWIND_HEAD, true);
    head.setUint32(UNWIND_AT + 4, memory.length, true);
    this.asyncify('asyncify_start_unwind')(UNWIND_AT);
    return 0; // not seen by the guest: its functions only save their locals on the way out
  }

  /** Back in run() with the stack unwound: the snapshot is complete; hand it over and rewind into recv. */
  private snapshotTaken(): void {
    const state = this.unwinding!;
    this.unwinding = undefined;
    if (this.asyncify('asyncify_get_state')() !== 1) throw new VmStateError('the guest returned during a snapshot without unwinding');
    this.asyncify('asyncify_stop_unwind')();
    const memory = this.memoryView();
    const end = new DataView(memory.buffer).getUint32(UNWIND_AT, true);
    const snapshot: GuestSnapshot = { ...state, stack: memory.slice(UNWIND_AT + UNWIND_HEAD, end) };
    // A copy: the snapshot (its memory with it) may be handed to another thread.
    this.rewinding = { head: state.memory.slice(UNWIND_AT, end), icount: state.icount };
    this.options.onSnapshot?.(snapshot);
    this.asyncify('asyncify_start_rewind')(UNWIND_AT);
  }

  /** A fresh instance takes a snapshot's state; run() then rewinds its stack into the recv it was taken at. */
  private restore(s: GuestSnapshot): void {
    if (!this.meta.unwind) throw new VmStateError('restoring a snapshot needs the module prepared with prepareUnwind (the one the snapshot was taken from)');
    const pages = s.memory.length / 65536 - this.memory.buffer.byteLength / 65536;
    if (!Number.isInteger(pages) || pages < 0) throw new VmStateError(`snapshot memory of ${s.memory.length} bytes does not fit this module's memory of ${this.memory.buffer.byteLength}`);
    if (pages > 0) this.memory.grow(pages);
    const memory = this.memoryView();
    memory.set(s.memory);
    const end = UNWIND_AT + UNWIND_HEAD + s.stack.length;
    if (end > memory.length) throw new VmStateError(`snapshot stack of ${s.stack.length} bytes does not fit memory`);
    for (const name of Object.values(this.meta.globals)) {
      if (!(name in s.globals)) throw new VmStateError(`snapshot has no value for global ${name}: taken from another module?`);
      (this.instance.exports[name] as WebAssembly.Global).value = s.globals[name];
    }
    const tables = tablesText(this.instance.exports, this.meta);
    if (tables !== s.tables) throw new VmStateError('snapshot tables differ from this instance\'s: the guest changed a table at run time (not carried), or another module');
    this.rewinding = { head: s.memory.slice(UNWIND_AT, end), icount: s.icount };
    const head = new DataView(memory.buffer);
    head.setUint32(UNWIND_AT, end, true);
    head.setUint32(UNWIND_AT + 4, memory.length, true);
    memory.set(s.stack, UNWIND_AT + UNWIND_HEAD);
    this.lastSeq = s.lastSeq;
    this.lastMono = s.lastMono;
    this.fuel.value = UNWIND_FUEL;
  }

  /** The stack is back in recv: Asyncify's bytes give way to what memory held, and the icount is the snapshot's. */
  private rewound(): void {
    const r = this.rewinding!;
    this.rewinding = undefined;
    this.asyncify('asyncify_stop_rewind')();
    this.memoryView().set(r.head, UNWIND_AT);
    this.fuel.value = 0n;
    this.icountOffset = r.icount;
    this.icountOffsetNumber = r.icount <= MAX_SAFE ? Number(r.icount) : NaN;
    this.rearm();
  }

  // -------------------------------------------------------------------------------------------------
  // Imports.

  private sink(): EntrySink {
    if (this.sinkResolved) return this.sinkResolved;
    const sink = this.options.sink!;
    this.sinkResolved = typeof sink === 'function' ? sink(this.nextSeq()) : sink;
    return this.sinkResolved;
  }

  private nextSeq(): number {
    return this.lastSeq + 1;
  }

  /** Replay: the entry for this call, checked; undefined when the guest just went live (record instead). */
  private replayed(kind: number): LogEntry | undefined {
    const source = this.options.source!;
    const now = this.icountFast();
    const e = source.peek();
    if (e === undefined) {
      this.logEnded();
      return undefined;
    }
    // BigInt(number) and a strict compare: cheaper in V8 than `!=` across bigint and number
    if (e.kind !== kind || BigInt(now) !== e.icount) {
      throw new DivergenceError(e.seq, `${entryKindName(e.kind)} at icount ${e.icount}`, `${entryKindName(kind)} at icount ${now}`, guestFunction());
    }
    source.take();
    this.lastSeq = e.seq;
    // The fuel needs setting only before an asynchronous entry or the end of the log. Before another
    // import the guest runs on: a faithful guest calls it at its icount; an unfaithful one is caught at its
    // next import, or when the fuel it has runs out (rearm then refuses to run past the entry).
    const next = source.peek();
    if (next === undefined || next.kind === EntryKind.INTERRUPT || next.kind === EntryKind.CHECKPOINT) this.rearm();
    return e;
  }

  private append(kind: number, payload: unknown): number {
    // one object shape for every entry: { seq, kind, icount, payload }
    const entry = { seq: this.lastSeq + 1, kind, icount: this.icount(), payload } as LogEntry;
    this.lastSeq = this.sink().append(entry);
    return this.lastSeq;
  }

  private diverge(e: LogEntry, actual: string): never {
    throw new DivergenceError(e.seq, `${entryKindName(e.kind)} at icount ${e.icount}`, actual, guestFunction());
  }

  private bytesAt(ptr: number, len: number, what: string, max = IO_BYTES_MAX): Uint8Array {
    if (len < 0 || len > max) throw new GuestTrapError(`${what} of ${len} bytes (limit ${max})`, this.icount());
    const memory = this.memoryView();
    if (ptr < 0 || ptr + len > memory.length) throw new GuestTrapError(`${what} outside memory (ptr ${ptr}, len ${len})`, this.icount());
    return memory.subarray(ptr, ptr + len);
  }

  private imports(): WebAssembly.Imports {
    const clock = (kind: typeof EntryKind.CLOCK_NOW | typeof EntryKind.CLOCK_MONO, read: () => bigint) => (): bigint => {
      if (this.mode === 'replay') {
        const e = this.replayed(kind);
        if (e) {
          if (kind === EntryKind.CLOCK_MONO) this.lastMono = e.payload as bigint;
          return e.payload as bigint;
        }
      }
      const value = read();
      this.lastSeq = this.sink().appendClock(kind, this.icountFast(), value);
      return value;
    };
    const mono = (): bigint => {
      let value = world().clockMono() + this.monoOffset;
      if (value < this.lastMono) value = this.lastMono; // never backwards, whatever the host clock does
      this.lastMono = value;
      return value;
    };
    const world = (): World => this.options.world!;
    const ft = {
      clock_now: clock(EntryKind.CLOCK_NOW, () => world().clockNow()),
      clock_mono: clock(EntryKind.CLOCK_MONO, mono),
      random_fill: (ptr: number, len: number): void => this.randomFill(ptr >>> 0, len >>> 0),
      cpu_id: (): number => this.simple(EntryKind.CPU_ID, () => world().cpuId()) as number,
      recv: (ptr: number, cap: number, timeoutMs: number): number => this.recv(ptr >>> 0, cap >>> 0, timeoutMs),
      send: (session: number, ptr: number, len: number): void => this.send(session >>> 0, ptr >>> 0, len >>> 0),
      log: (ptr: number, len: number): void => this.logText(ptr >>> 0, len >>> 0),
    };
    const env = {
      abort: (msg: number, file: number, line: number, column: number): never => this.abort(msg, file, line >>> 0, column >>> 0),
      trace: (msg: number, n: number, ...values: number[]): void => this.trace(msg, n, values),
      seed: (): number => this.simple(EntryKind.SEED, () => world().seed()) as number,
      'Date.now': (): number => this.simple(EntryKind.DATE_NOW, () => world().dateNow()) as number,
    };
    return {
      ...(this.options.deterministicImports ?? {}),
      ft,
      env: { ...(this.options.deterministicImports?.env ?? {}), ...env },
      ftwasm: { fuel_exhausted: (): void => this.onFuelExhausted() },
    };
  }

  /** A call whose whole answer is one logged value. */
  private simple(kind: typeof EntryKind.CPU_ID | typeof EntryKind.SEED | typeof EntryKind.DATE_NOW, read: () => number): number {
    if (this.mode === 'replay') {
      const e = this.replayed(kind);
      if (e) return e.payload as number;
    }
    const value = read();
    this.append(kind, value);
    return value;
  }

  private randomFill(ptr: number, len: number): void {
    const target = this.bytesAt(ptr, len, 'random_fill', RANDOM_FILL_BYTES_MAX);
    if (this.mode === 'replay') {
      const e = this.replayed(EntryKind.RANDOM);
      if (e) {
        const bytes = e.payload as Uint8Array;
        if (bytes.length !== len) this.diverge(e, `random_fill of ${len} bytes`);
        target.set(bytes);
        return;
      }
    }
    this.options.world!.randomFill(target);
    this.lastSeq = this.sink().appendRandom(this.icountFast(), target);
  }

  private recv(ptr: number, cap: number, timeoutMs: number): number {
    if (this.rewinding) this.rewound();
    this.notInHandler('recv');
    this.bytesAt(ptr, cap, 'recv buffer');
    // A snapshot is taken before anything is read, in either mode (a replaying backup's too: its state at a
    // recv is the primary's there).
    if (this.meta.unwind && this.options.world?.snapshotWanted?.()) return this.unwind();
    if (this.mode === 'replay') {
      const e = this.replayed(EntryKind.RECV);
      if (e) return this.deliverRecv(e.payload as Uint8Array | number, ptr, cap, e);
    }
    const world = this.options.world!;
    const got = world.recv(cap, timeoutMs);
    if (got === RECV_SNAPSHOT) return this.unwind();
    this.append(EntryKind.RECV, got);
    return this.deliverRecv(got, ptr, cap);
  }

  private deliverRecv(got: Uint8Array | number, ptr: number, cap: number, e?: LogEntry): number {
    if (typeof got === 'number') return got;
    if (got.length > cap) {
      if (e) this.diverge(e, `recv with a ${cap}-byte buffer`);
      throw new VmStateError(`world returned ${got.length} bytes for a ${cap}-byte recv buffer`);
    }
    this.memoryView().set(got, ptr);
    return got.length;
  }

  private send(session: number, ptr: number, len: number): void {
    this.notInHandler('send');
    const bytes = this.bytesAt(ptr, len, 'send', this.messageMax).slice();
    const digest = digest32(bytes);
    if (this.mode === 'replay') {
      const e = this.replayed(EntryKind.SEND);
      if (e) {
        const p = e.payload as { session: number; digest: number; length: number };
        if (p.session !== session || p.digest !== digest || p.length !== len) {
          this.diverge(e, `send of ${len} bytes to session ${session} with digest ${digest.toString(16)} (log: ${p.length} bytes to ${p.session}, digest ${p.digest.toString(16)})`);
        }
        this.options.outputs?.send(session, bytes, e.seq);
        return;
      }
    }
    const seq = this.append(EntryKind.SEND, { session, digest, length: len });
    this.options.outputs?.send(session, bytes, seq);
  }

  private logText(ptr: number, len: number): void {
    this.notInHandler('log');
    const bytes = this.bytesAt(ptr, len, 'log');
    const digest = digest32(bytes);
    if (this.mode === 'replay') {
      const e = this.replayed(EntryKind.LOG);
      if (e) {
        const p = e.payload as { digest: number; length: number };
        if (p.digest !== digest || p.length !== len) this.diverge(e, `log of ${len} bytes with digest ${digest.toString(16)}`);
        return; // debug text is printed by the primary only
      }
    }
    const seq = this.append(EntryKind.LOG, { digest, length: len });
    this.options.outputs?.log(new TextDecoder().decode(bytes), seq);
  }

  private abort(msg: number, file: number, line: number, column: number): never {
    const payload = { message: this.asString(msg), file: this.asString(file), line, column };
    if (this.mode === 'replay') {
      const e = this.replayed(EntryKind.ABORT);
      if (e) throw new GuestTrapError(`abort: ${payload.message} at ${payload.file}:${line}:${column}`, this.icount());
    }
    this.append(EntryKind.ABORT, payload);
    throw new GuestTrapError(`abort: ${payload.message} at ${payload.file}:${line}:${column}`, this.icount());
  }

  private trace(msg: number, n: number, values: number[]): void {
    const payload = { message: this.asString(msg), values: values.slice(0, Math.max(0, Math.min(n, 5))) };
    if (this.mode === 'replay' && this.replayed(EntryKind.TRACE)) return;
    const seq = this.append(EntryKind.TRACE, payload);
    this.options.outputs?.log(`trace: ${payload.message} ${payload.values.join(' ')}`.trim(), seq);
  }

  private end(code: number): void {
    if (this.mode === 'replay') {
      const e = this.replayed(EntryKind.END);
      if (e) {
        if (e.payload !== code) this.diverge(e, `END with code ${code}`);
        return;
      }
    }
    this.append(EntryKind.END, code);
  }

  /** An AssemblyScript string (UTF-16LE, byte length at ptr - 4), or '' for null / out of bounds. */
  private asString(ptr: number): string {
    const p = ptr >>> 0;
    const memory = this.memoryView();
    if (p < 4 || p > memory.length) return '';
    const len = new DataView(this.memory.buffer).getUint32(p - 4, true);
    if (len > 65536 || p + len > memory.length) return '';
    return wellFormed(new TextDecoder('utf-16le').decode(memory.subarray(p, p + len)));
  }
}

/** The innermost guest function on the stack ("in <name>"), when the engine shows one; only on errors. */
function guestFunction(): string {
  for (const line of (new Error().stack ?? '').split('\n')) {
    const m = /at (?:(\S+) \()?wasm:\/\/wasm\/[^:]+:(wasm-function\[\d+\])/.exec(line);
    if (m) return `in guest function ${m[1] ?? m[2]}`;
  }
  return '';
}

/** Lone surrogates become U+FFFD: the log stores text as UTF-8, which cannot carry them. */
function wellFormed(text: string): string {
  return text.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD');
}

function describeTrap(error: unknown): string {
  if (error instanceof WebAssembly.RuntimeError) return `trap: ${error.message}`;
  if (error instanceof RangeError) return `stack exhaustion: ${error.message}`;
  return `host error: ${(error as Error)?.message ?? String(error)}`;
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function hexOf(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex');
}
