// The backup: follows the primary's log over the channel, acks what it received, replays it in a guest,
// keeps the session table the log implies, and when the primary goes silent replays what it has, races for
// the next epoch and, if it wins, goes live as the primary (clients find it and resend what they miss).
import { ReplicaNode, startNode } from './node.ts';
import net from 'node:net';
import { ClientServer, isNodeAddress } from '../net/index.ts';
import type { ServerEvent } from '../net/index.ts';
import { GuestRunner } from '../vm/index.ts';
import type { GuestSnapshot, RunnerResult } from '../vm/index.ts';
import { readInstrumentMeta } from '../instrument/index.ts';
import { decodeTransfer, TransferAssembler } from './transfer.ts';
import type { FrameFacts } from '../vm/runner.ts';
import { LogPeer, MessageType, readU64, u64Payload, u64sPayload, checkSecret } from './channel.ts';
import type { ChannelMessage } from './channel.ts';
import { ReplicationError } from './errors.ts';
import { InputFeeder, OutputGate } from './gate.ts';
import {
  checkModuleHash,
  checkTimes,
  clientPayloadMax,
  defaultNodeId,
  HEARTBEAT_INTERVAL_MS_DEFAULT,
  HEARTBEAT_TIMEOUT_MS_DEFAULT,
  HELD_OUTPUTS_MAX_DEFAULT,
  INPUT_QUEUE_MAX_DEFAULT,
  advertisedAddress,
  checkAdvertise,
  HISTORY_BYTES_MAX_DEFAULT,
  Primary,
  SESSION_RECORD_BYTES,
} from './primary.ts';
import type { Endpoint, ReplicaEvents, ReplicaOptions, ReplicaRole, ReplicaState } from './primary.ts';
import { defaultHistory, type LogHistory } from './history.ts';
import { ForgetLog, PendingForgets, decodeForgets } from './forgets.ts';

export interface BackupOptions extends ReplicaOptions {
  /** The primary's replication address. */
  primary: Required<Pick<Endpoint, 'port'>> & Endpoint;
  /** Time from start to reach and authenticate with the primary; the backup halts if it cannot. */
  connect_timeout_ms?: number;
  /** Received log bytes not yet taken by the replaying guest; beyond it the backup stops reading the channel. */
  log_queue_bytes_max?: number;
  /** Every log chunk as received (archiving, tests). */
  onLogBytes?: (bytes: Uint8Array) => void;
  /**
   * This backup was restored from the primary's snapshot (state transfer, docs/SNAPSHOT.md): the transfer's
   * bytes and the seq it was taken at. Called before any frame after it reaches onLogFrames (which then
   * starts at lastSeq + 1): an archive keeps the snapshot beside its log. The bytes are lent for the call
   * only (their buffer then moves to the guest's worker): copy them to keep them.
   */
  onSnapshot?: (transfer: Uint8Array, lastSeq: number) => void;
  /**
   * Where new backups connect once this backup is live (default: none, and no log history is kept). With it,
   * this backup keeps the whole log (up to history_bytes_max) and, when live, serves a new backup as a
   * primary that is alone would (catch-up from seq 1, then SYNCED), so the pair is protected again.
   */
  replication?: Endpoint & { allowNonLoopback?: boolean };
  /** As PrimaryOptions.history_bytes_max and history (with `replication`). */
  history_bytes_max?: number;
  history?: LogHistory;
  /** As PrimaryOptions (once live, with `replication`). */
  retained_bytes_max?: number;
  replay_lag_ms_max?: number;
  snapshot_wait_ms?: number;
}

export const CONNECT_TIMEOUT_MS_DEFAULT = 10_000;
export const LOG_QUEUE_BYTES_MAX_DEFAULT = 64 << 20;
const RECONNECT_PAUSE_MS = 50;
/** Sessions a joining backup accepts in SESSIONS messages (the client server's table is bounded too). */
const SESSION_EPOCHS_MAX = 1 << 20;

/** A running backup; see startBackup. */
export class Backup extends ReplicaNode {
  readonly nodeId: string;
  /** Resolves with the new epoch when this backup goes live. */
  readonly live: Promise<number>;
  private epoch = 0;
  private primary_epoch = 0;
  /** Made at the first log frame or snapshot (a module prepared for unwinding may be sent either), or at once. */
  private runner: GuestRunner | undefined;
  /** SNAPSHOT pieces being put back together (state transfer). */
  private transfer = new TransferAssembler();
  /** The seq of the snapshot this backup was restored from (0: it replays from seq 1). */
  private restored_seq = 0;
  /** The module can be snapshot (prepareUnwind): this backup may be restored from the primary's snapshot. */
  private readonly unwind: boolean;
  private server!: ClientServer;
  private gate!: OutputGate;
  private feeder!: InputFeeder;
  private peer: LogPeer | undefined;
  private connecting = false;
  /** An authenticated channel to the primary was open at least once (from then on, silence means failure). */
  private reached = false;
  private last_heard_ms = performance.now();
  private started_ms = performance.now();
  private received_seq = 0;
  private pushed_seq = 0;
  private released_seq = 0;
  /** The newest heartbeat stamp of the primary heard; echoed in ACK and HEARTBEAT (the primary's lease). */
  private primary_stamp = 0;
  private queue: Array<{ bytes: Uint8Array; lastSeq: number }> = [];
  /** FRAMES came in this socket read and are not acked yet: one ACK goes out when the read is done. */
  private ack_pending = false;
  private primary_hint: string | undefined; // the primary's client address, from its PRIMARY message
  /**
   * The primary said SYNCED: this backup holds every entry whose output it released. Until then (a backup that
   * joined a primary that was alone is still catching up) losing the primary means halting, not taking over.
   */
  private synced = false;
  /** Sessions opened before the primary this backup joined took over (SESSIONS), with their epochs; bounded. */
  private readonly session_epochs = new Map<number, number>();
  /** With options.replication: every frame from seq 1 while following (handed to the adopted primary when live). */
  private readonly history: LogHistory | undefined;
  /** Sessions the primary dropped, waiting for the log received to pass their seq (FORGET). */
  private readonly forgets_pending = new PendingForgets();
  /** The ones applied, for the adopted primary's future backups (with options.replication). */
  private readonly forgets = new ForgetLog();
  /** Once live with options.replication: the primary side (new backups), over this node's guest and clients. */
  private adopted: Primary | undefined;
  private queue_bytes = 0;
  private paused = false;
  private end_log = false;
  private pump_timer: NodeJS.Timeout | undefined;
  private timer: NodeJS.Timeout | undefined;
  private guest_exited = false;
  private live_seq: Promise<number>;
  private result: RunnerResult | undefined;
  private resolveLive!: (epoch: number) => void;
  private readonly interval_ms: number;
  private readonly timeout_ms: number;
  /** Largest request and output payload (the client service's limit; the guest's send limit, as the primary's). */
  private readonly payload_max: number;

  constructor(private readonly options: BackupOptions) {
    super('backup', options.onEvent);
    checkSecret(options.secret);
    this.nodeId = options.nodeId ?? defaultNodeId();
    this.interval_ms = options.heartbeat_interval_ms ?? HEARTBEAT_INTERVAL_MS_DEFAULT;
    this.timeout_ms = options.heartbeat_timeout_ms ?? HEARTBEAT_TIMEOUT_MS_DEFAULT;
    checkTimes(this.interval_ms, this.timeout_ms);
    checkModuleHash(options.module_hash);
    checkAdvertise(options.clients);
    this.payload_max = clientPayloadMax(options.clients); // a bad limit is refused before anything starts
    this.live = new Promise((resolve) => (this.resolveLive = resolve));
    this.live_seq = Promise.resolve(0);
    this.unwind = readInstrumentMeta(options.module)?.unwind === true;
    this.history = options.replication ? (options.history ?? defaultHistory(this.unwind, options.history_bytes_max ?? HISTORY_BYTES_MAX_DEFAULT)) : undefined;
  }

  /** Keeps a frame chunk for the history (whole frames, in seq order), while it is complete. */
  private keepHistory(bytes: Uint8Array, firstSeq: number, lastSeq: number): void {
    if (this.history === undefined || lastSeq < firstSeq || !this.history.add({ bytes, firstSeq, lastSeq })) return;
    this.note(`${this.history.gone}: once live, this node cannot catch a new backup up (that needs state transfer)`);
    this.forgets.clear();
  }

  /** The epoch this node serves once live (the adopted primary's, which moves on if it loses a backup). */
  private liveEpoch(): number {
    return this.adopted?.currentEpoch ?? this.epoch;
  }

  /** Once live with options.replication: where new backups connect. */
  replicationAddress(): { host: string; port: number } | undefined {
    return this.adopted?.replicationAddress();
  }

  async start(): Promise<void> {
    this.server = new ClientServer({
      host: this.options.clients?.host ?? '127.0.0.1',
      port: this.options.clients?.port ?? 0,
      ...(this.options.clients?.allowNonLoopback ? { allowNonLoopback: true } : {}),
      ...(this.options.clients?.limits ? { limits: this.options.clients.limits } : {}),
      role: () => (this.role === 'primary' ? 'primary' : 'backup'),
      epoch: () => (this.role === 'primary' ? this.liveEpoch() : this.primary_epoch),
      // While following: the primary's client address, as it told it (clients that know only this node go there).
      primaryHint: () => (this.role === 'backup' ? this.primary_hint : undefined),
      onEvent: (e: ServerEvent) => {
        if (e.kind === 'host_error' || e.kind === 'outputs_evicted') this.note(`clients: ${e.message}`);
      },
    });
    this.gate = new OutputGate({
      server: this.server,
      epoch: () => (this.role === 'primary' ? this.liveEpoch() : this.primary_epoch),
      sessionEpoch: (session) => this.session_epochs.get(session) ?? this.primary_epoch,
      held_outputs_max: this.options.held_outputs_max ?? HELD_OUTPUTS_MAX_DEFAULT,
      // Before going live the client server only buffers outputs (it sends nothing as a backup), so an
      // overflow just moves the oldest kept outputs into that bounded buffer early.
      onOverflow: () => this.gate.release(this.gate.last_seq),
    });
    this.feeder = new InputFeeder(() => (this.role === 'primary' ? this.runner : undefined), (s) => this.gate.deliveredOf(s), this.options.input_queue_max ?? INPUT_QUEUE_MAX_DEFAULT);
    this.server.onRequest = (session, seq, payload) => this.feeder.onRequest(session, seq, payload);
    // Live (and not handed to a Primary): a session this node drops loses its counters; no backup to tell.
    this.server.onSessionExpired = (session) => {
      this.gate.forget(session);
      this.feeder.forget(session);
    };
    await this.server.listen();

    // A module that can be snapshot may be restored from one (if this backup joins a lone primary): its guest
    // starts when the first frame or the snapshot comes. Any other starts replaying from seq 1 now.
    if (!this.unwind) this.ensureRunner();
    this.started_ms = performance.now();
    this.connect();
    this.timer = setInterval(() => this.tick(), this.interval_ms);
  }

  /** The replaying guest, started from seq 1 or from a snapshot (restore). */
  private ensureRunner(restore?: GuestSnapshot, restoreTransfer = false): GuestRunner {
    if (this.runner) return this.runner;
    const runner = new GuestRunner({
      module: this.options.module, mode: 'replay', atLogEnd: 'go-live', streamFrames: true, messageBytesMax: this.payload_max,
      ...(restore ? { restore, restoreTransfer } : {}),
    });
    this.runner = runner;
    this.live_seq = new Promise<number>((resolve) => runner.once('live', resolve));
    runner.on('send', this.onSend);
    // Frames appear only once the guest records, i.e. after going live: it is alone, so they are durable.
    runner.on('frame', this.onOwnFrame);
    runner.on('log', (text) => {
      if (this.role === 'primary') this.note(`[guest] ${text}`);
    });
    runner.done.then(
      (result) => {
        this.result = result;
        this.guest_exited = true;
        this.emit('exited', result);
      },
      (error: Error) => this.halt(`the guest failed: ${error.message}`),
    );
    return runner;
  }

  private readonly onSend = (session: number, bytes: Uint8Array, seq: number): void => {
    this.gate.onSend(session, bytes, seq);
    if (this.role === 'primary') this.gate.release(Infinity);
    else this.gate.release(this.released_seq);
  };

  private readonly onOwnFrame = (bytes: Uint8Array, firstSeq: number, lastSeq: number, facts: FrameFacts): void => {
    this.gate.onFrameFacts(firstSeq, lastSeq, facts);
    this.options.onLogFrames?.(bytes, firstSeq, lastSeq);
    this.keepHistory(bytes, firstSeq, lastSeq);
    if (this.role === 'primary') this.gate.release(Infinity);
  };

  /**
   * A snapshot of the guest at its next recv (a module prepared for snapshots). Once live, as Primary.snapshot;
   * while following, at the next recv the log brings it to, which need not end a frame.
   */
  snapshot(): Promise<GuestSnapshot> {
    return this.runner ? this.runner.snapshot() : Promise.reject(new ReplicationError('FTW_REPL_STATE', 'no guest yet'));
  }

  get guestResult(): RunnerResult | undefined {
    return this.result;
  }

  /** The client server's counts (connections, sessions, outputs kept for clients), once it is up. */
  clientStats(): ReturnType<ClientServer['stats']> | undefined {
    return this.server?.stats();
  }

  clientAddress(): { host: string; port: number } {
    return this.server.address();
  }

  state(): ReplicaState {
    if (this.adopted && this.role === 'primary') return this.adopted.state();
    return {
      role: this.role,
      epoch: this.role === 'primary' ? this.epoch : this.primary_epoch,
      lag_entries: this.received_seq - this.pushed_seq,
      last_seq: this.gate?.last_seq ?? 0,
      acked_seq: this.received_seq,
      released_seq: this.role === 'primary' ? this.gate.released_seq : this.released_seq,
      held_outputs: this.gate?.held_outputs ?? 0,
      outputs_released: this.gate?.outputs_released ?? 0,
      solo: this.role === 'primary',
      peer_connected: this.peer?.isOpen ?? false,
      guest_exited: this.guest_exited,
      synced: this.synced,
      sessions_counted: this.gate?.sessions_counted ?? 0,
      ...(this.restored_seq > 0 ? { restored_seq: this.restored_seq } : {}),
    };
  }

  /** Live only: as Primary.closeInput (the guest's recv returns -1 once its input ring is empty). False if not live. */
  closeInput(): boolean {
    if (this.role !== 'primary') return false;
    if (this.adopted) return this.adopted.closeInput(), true;
    this.feeder.stop();
    this.runner!.closeInput();
    return true;
  }

  protected async shutdown(reason: string): Promise<void> {
    await this.adopted?.close();
    if (this.timer) clearInterval(this.timer);
    if (this.pump_timer) clearTimeout(this.pump_timer);
    this.feeder?.stop();
    this.peer?.close(reason);
    this.server?.checkRole();
    await Promise.all([this.runner?.terminate(), this.server?.close()]);
  }

  // -------------------------------------------------------------------------------------------------------
  // Following the primary

  private connect(): void {
    if (this.role !== 'backup' || this.connecting || this.peer?.isOpen) return;
    this.connecting = true;
    const host = this.options.primary.host ?? '127.0.0.1';
    const socket = net.connect({ host, port: this.options.primary.port });
    const peer = new LogPeer(socket, 'backup', {
      secret: this.options.secret,
      epoch: () => this.primary_epoch,
      peer_label: `${host}:${this.options.primary.port}`,
      ...(this.options.message_bytes_max ? { message_bytes_max: this.options.message_bytes_max } : {}),
    });
    peer.ready.then(
      () => {
        this.connecting = false;
        if (this.role !== 'backup') return peer.close('no longer a backup');
        this.peer = peer;
        this.reached = true;
        this.last_heard_ms = performance.now();
        peer.on('message', (m) => this.onMessage(peer, m));
        // One ACK for all the FRAMES of a read (with the newest stamp heard by then), written before the
        // replaying guest is handed the frames (waking its thread): the primary waits for the ack, not the replay.
        peer.on('drained', () => {
          if (!this.ack_pending || peer !== this.peer || this.role !== 'backup') return;
          this.ack_pending = false;
          peer.send(MessageType.ACK, u64sPayload(this.received_seq, this.primary_stamp));
          this.pumpLog();
        });
        peer.on('close', (reason) => {
          this.note(`primary channel closed: ${reason}`);
          // A transfer cut off midway starts over: a reconnecting backup that holds no log asks for seq 1 again.
          if (this.runner === undefined) this.transfer = new TransferAssembler();
          this.pumpLog();
          this.retryConnect();
        });
        const hello = u64sPayload(this.received_seq + 1, this.payload_max);
        const hash = this.options.module_hash;
        peer.send(MessageType.HELLO, hash ? Buffer.concat([hello, hash]) : hello);
        // Where clients reach this node: the primary names it to its clients, who then find it after a failover.
        const own = advertisedAddress(this.options.clients, this.server);
        if (own !== undefined) peer.send(MessageType.CLIENTS, new TextEncoder().encode(own));
        if (this.paused) peer.pause();
        this.note(`connected to the primary at ${host}:${this.options.primary.port}, log from seq ${this.received_seq + 1}`);
      },
      (error: ReplicationError) => {
        this.connecting = false;
        // A refused secret is final: retrying would not help and would hide the cause.
        if (error.code === 'FTW_REPL_AUTH') return this.halt(error.message);
        this.retryConnect();
      },
    );
  }

  private retryConnect(): void {
    if (this.role !== 'backup') return;
    setTimeout(() => this.connect(), RECONNECT_PAUSE_MS).unref();
  }

  private onMessage(peer: LogPeer, m: ChannelMessage): void {
    if (this.role !== 'backup') return;
    if (this.primary_epoch === 0) this.primary_epoch = m.epoch;
    if (m.epoch !== this.primary_epoch) {
      return this.halt(`the primary moved from epoch ${this.primary_epoch} to ${m.epoch}: it went on without this backup`);
    }
    this.last_heard_ms = performance.now();
    switch (m.type) {
      case MessageType.FRAMES:
        return this.onFrames(peer, m.payload);
      case MessageType.SNAPSHOT:
        return this.onTransfer(peer, m.payload);
      case MessageType.RELEASED: {
        const seq = readU64(m.payload, 'RELEASED');
        if (seq > this.released_seq) this.released_seq = Math.min(seq, this.received_seq);
        this.gate.release(this.released_seq);
        return;
      }
      case MessageType.HEARTBEAT: {
        // Heard after last_heard_ms was set above: echoing it promises no failover before stamp + timeout.
        const stamp = readU64(m.payload, 'HEARTBEAT');
        if (stamp > this.primary_stamp) this.primary_stamp = stamp;
        return;
      }
      case MessageType.PRIMARY: {
        const text = Buffer.from(m.payload).toString('utf8');
        // Only a hint for clients: a malformed one is noted and dropped, replication goes on.
        if (!isNodeAddress(text)) {
          this.primary_hint = undefined;
          return this.note(`the primary's client address is not a host:port (${m.payload.length} bytes): no not_primary hint`);
        }
        this.primary_hint = text;
        return;
      }
      case MessageType.SESSIONS: {
        if (m.payload.length % SESSION_RECORD_BYTES !== 0) return peer.refuse(`SESSIONS payload of ${m.payload.length} bytes is not whole records`);
        const view = new DataView(m.payload.buffer, m.payload.byteOffset, m.payload.length);
        for (let at = 0; at < m.payload.length; at += SESSION_RECORD_BYTES) {
          if (this.session_epochs.size >= SESSION_EPOCHS_MAX) return peer.refuse(`more than ${SESSION_EPOCHS_MAX} sessions announced`);
          const epoch = Number(view.getBigUint64(at + 4, true));
          if (!Number.isSafeInteger(epoch) || epoch > m.epoch) return peer.refuse(`session ${view.getUint32(at, true)} opened in epoch ${epoch}, after this primary's ${m.epoch}`);
          this.session_epochs.set(view.getUint32(at, true), epoch);
        }
        return;
      }
      case MessageType.FORGET: {
        const records = decodeForgets(m.payload);
        if (typeof records === 'string') return peer.refuse(records);
        for (const f of records) if (!this.forgets_pending.push(f)) return peer.refuse(`more than ${this.forgets_pending.size} session forgets waiting for their log seq`);
        this.applyForgets(this.gate.last_seq);
        return;
      }
      case MessageType.SYNCED:
        readU64(m.payload, 'SYNCED');
        if (!this.synced) this.note(`synced with the primary at seq ${this.received_seq}: this backup may take over from here`);
        this.synced = true;
        return;
      case MessageType.REFUSED:
        return this.halt(`the primary refused this backup: ${Buffer.from(m.payload).toString('utf8')}`);
      default:
        return peer.refuse(`unexpected message type ${m.type} from a primary`);
    }
  }

  /** A piece of a state transfer; the whole restores the session table, the log bookkeeping and the guest. */
  private onTransfer(peer: LogPeer, payload: Uint8Array): void {
    if (this.runner || this.received_seq > 0) return peer.refuse('a state transfer to a backup that holds log already');
    const fail = (why: string): void => {
      peer.refuse(why);
      this.halt(`state transfer from the primary failed: ${why}`);
    };
    const whole = this.transfer.push(payload);
    if (whole === 'more') return;
    if (typeof whole === 'string') return fail(whole);
    const t = decodeTransfer(whole);
    if (typeof t === 'string') return fail(t);
    const seq = t.snapshot.lastSeq;
    const bytes = whole.length;
    try {
      this.server.restore(t.table); // checked there, field by field
    } catch (error) {
      return fail(`its session table: ${(error as Error).message}`);
    }
    const sessions = t.table.sessions;
    if (sessions.length > SESSION_EPOCHS_MAX) return fail(`more than ${SESSION_EPOCHS_MAX} sessions`);
    for (const s of sessions) this.session_epochs.set(s.session, s.session_epoch);
    this.gate.startAt(seq, sessions);
    this.received_seq = this.pushed_seq = this.released_seq = this.restored_seq = seq;
    this.options.onSnapshot?.(whole, seq);
    // The transfer's buffer is this backup's alone (made for it, used no more): the guest's memory moves to
    // the worker instead of being copied, when the buffer is its own and not a slice of a shared pool.
    this.ensureRunner(t.snapshot, whole.byteOffset === 0 && whole.byteLength === whole.buffer.byteLength);
    this.applyForgets(seq);
    this.ack_pending = true; // the primary learns this backup holds the log up to the snapshot
    this.note(`restored from the primary's snapshot at seq ${seq} (${bytes} bytes, ${sessions.length} sessions)`);
  }

  private onFrames(peer: LogPeer, bytes: Uint8Array): void {
    if (this.transfer.started) return peer.refuse('log frames in the middle of a state transfer');
    this.ensureRunner();
    let last: number;
    const first = this.gate.last_seq + 1;
    try {
      last = this.gate.onFrames(bytes);
    } catch (error) {
      peer.refuse('corrupt log frames');
      return this.halt(`corrupt log from the primary: ${(error as Error).message}`);
    }
    this.options.onLogBytes?.(bytes);
    this.options.onLogFrames?.(bytes, first, last);
    this.keepHistory(bytes, first, last);
    this.received_seq = last;
    this.applyForgets(last);
    this.queue.push({ bytes, lastSeq: last });
    this.queue_bytes += bytes.length;
    this.ack_pending = true;
    // The replaying guest looks one entry ahead; after END there is none to wait for.
    if (this.gate.ended) this.end_log = true;
    if (this.queue_bytes > (this.options.log_queue_bytes_max ?? LOG_QUEUE_BYTES_MAX_DEFAULT) && !this.paused) {
      this.paused = true;
      peer.pause();
    }
    // Handed to the replaying guest once the read is done and acked ('drained').
  }

  /** Hands queued log bytes to the replaying guest, in ring-sized pieces, as the ring has room. */
  private pumpLog(): void {
    const runner = this.runner;
    if (!runner) return;
    const piece_max = runner.logRingMessageMax;
    while (this.queue.length > 0) {
      const head = this.queue[0]!;
      const piece = head.bytes.subarray(0, piece_max);
      if (!runner.pushLog(piece)) break;
      if (piece.length === head.bytes.length) {
        this.queue.shift();
        this.queue_bytes -= head.bytes.length;
        this.pushed_seq = head.lastSeq;
      } else {
        head.bytes = head.bytes.subarray(piece.length);
        this.queue_bytes -= piece.length;
      }
    }
    if (this.paused && this.queue_bytes * 2 < (this.options.log_queue_bytes_max ?? LOG_QUEUE_BYTES_MAX_DEFAULT)) {
      this.paused = false;
      this.peer?.resume();
    }
    if (this.queue.length > 0) {
      this.pump_timer ??= setTimeout(() => {
        this.pump_timer = undefined;
        this.pumpLog();
      }, 1);
      return;
    }
    if (this.end_log) runner.endLog();
  }

  private tick(): void {
    if (this.role !== 'backup') return;
    // With the replay's progress: the primary throttles itself when this backup trails too far.
    if (this.peer?.isOpen) this.peer.send(MessageType.HEARTBEAT, u64sPayload(this.primary_stamp, this.runner?.replayedSeq ?? 0));
    // Judged after the event loop's next poll, so that what the primary sent while this process was stopped
    // or starved is read before its silence is counted.
    setImmediate(() => this.judgePrimary());
  }

  private judgePrimary(): void {
    if (this.role !== 'backup') return;
    // The log ended (the primary's guest returned): there is nothing left to take over.
    if (this.gate.ended || this.guest_exited) return;
    const now = performance.now();
    if (!this.reached) {
      const wait_ms = this.options.connect_timeout_ms ?? CONNECT_TIMEOUT_MS_DEFAULT;
      if (now - this.started_ms > wait_ms) this.halt(`the primary at ${this.options.primary.host ?? '127.0.0.1'}:${this.options.primary.port} was not reached within ${wait_ms} ms`);
      return;
    }
    if (now - this.last_heard_ms > this.timeout_ms) void this.failover(`nothing heard from the primary for ${Math.round(now - this.last_heard_ms)} ms`);
  }

  // -------------------------------------------------------------------------------------------------------
  // Taking over

  private async failover(why: string): Promise<void> {
    if (this.role !== 'backup') return;
    // Clients may hold outputs of entries this backup never received: taking over would contradict them.
    if (!this.synced) {
      return this.halt(`primary lost (${why}) before it said SYNCED (this backup joined it and was catching up, at seq ${this.received_seq}): nothing safe to take over`);
    }
    this.role = 'claiming';
    const t0 = performance.now();
    this.note(`primary lost (${why}); it had released up to seq ${this.released_seq}; replaying to seq ${this.received_seq} and claiming epoch ${this.primary_epoch + 1}`);
    this.peer?.close('failing over');
    if (this.paused) this.paused = false;
    this.end_log = true;
    this.ensureRunner();
    this.pumpLog();
    try {
      const arbiter = this.options.arbiter;
      const current = await arbiter.current();
      // The primary died before its first message reached us: no frame came, so it released no output
      // (outputs wait for our acks), and the epoch we followed is the arbiter's current one.
      if (this.primary_epoch === 0 && this.received_seq === 0 && current !== undefined) this.primary_epoch = current.epoch;
      if ((current?.epoch ?? 0) !== this.primary_epoch) {
        return this.halt(`epoch ${current?.epoch} is held by ${current?.nodeId}, not the epoch ${this.primary_epoch} this backup followed: its log is not the surviving one`);
      }
      const result = await arbiter.claim(this.primary_epoch + 1, this.nodeId);
      if (!result.won) return this.halt(`lost epoch ${this.primary_epoch + 1} to ${result.holder.nodeId}`);
      this.epoch = this.primary_epoch + 1;
      this.note(`won epoch ${this.epoch}; waiting for the replay to reach the end of the log`);
      const seq = await Promise.race([this.live_seq, this.runner!.done.then(() => -1)]);
      if (this.role !== 'claiming') return;
      if (seq === -1) return this.halt(`won epoch ${this.epoch}, but the guest had already ended in the log`);
      if (seq !== this.received_seq + 1) return this.halt(`went live at seq ${seq}, but the log received ends at ${this.received_seq}`);
      this.role = 'primary';
      // Sessions the old primary dropped past the log that reached us: dead to their clients either way.
      this.applyForgets(Infinity);
      this.server.goLive();
      this.gate.release(Infinity);
      this.note(`live as primary in epoch ${this.epoch} at log seq ${seq}, ${Math.round(performance.now() - t0)} ms after the primary was declared lost`);
      this.resolveLive(this.epoch);
      this.emit('live', this.epoch);
      if (this.options.replication) await this.adoptPrimarySide();
    } catch (error) {
      this.halt(`failover failed: ${(error as Error).message}`);
    }
  }

  /** Drops the sessions the primary dropped at or before `last_seq` of the log: the same place it did. */
  private applyForgets(last_seq: number): void {
    if (this.forgets_pending.size === 0) return;
    for (const f of this.forgets_pending.take(last_seq)) {
      this.server.forget(f.session);
      this.gate.forget(f.session);
      this.session_epochs.delete(f.session);
      if (this.history !== undefined && this.history.gone === undefined) this.forgets.add(f);
    }
  }

  /** Live, with options.replication: a Primary over this node's guest and clients serves new backups. */
  private async adoptPrimarySide(): Promise<void> {
    // From here the primary side takes the guest's frames and outputs (and keeps the history going).
    const runner = this.ensureRunner(); // live: made at failover
    runner.off('send', this.onSend);
    runner.off('frame', this.onOwnFrame);
    try {
      // The options both roles share go on as they are; the backup's own (primary, connect_timeout_ms, ...) stay.
      const { primary: _primary, connect_timeout_ms: _connect, log_queue_bytes_max: _queue, onLogBytes: _bytes, onSnapshot: _snapshot, ...shared } = this.options;
      const primary = await Primary.adopt(
        { ...shared, nodeId: this.nodeId, replication: this.options.replication!, onEvent: (text) => this.note(text) },
        { epoch: this.epoch, runner, server: this.server, gate: this.gate, feeder: this.feeder, history: this.history!, forgets: this.forgets },
      );
      if (this.role !== 'primary') return void (await primary.close());
      this.adopted = primary;
      primary.once('halted', (reason) => this.halt(reason));
    } catch (error) {
      // Still live and serving alone; it just cannot take a new backup.
      runner.on('send', this.onSend);
      runner.on('frame', this.onOwnFrame);
      this.note(`cannot serve new backups: ${(error as Error).message}`);
    }
  }

}

/** Starts a backup: client server bound (answering not_primary), replaying guest started, primary being reached; a bad option rejects the promise (it never throws synchronously). */
export async function startBackup(options: BackupOptions): Promise<Backup> {
  return startNode(new Backup(options));
}
