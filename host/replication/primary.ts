// The primary: wins an epoch, runs the guest in record mode, ships every sealed log frame to the backup,
// and lets accepts and outputs out only once the backup acknowledged the entries behind them.
import assert from 'node:assert/strict';
import { ReplicaNode, startNode } from './node.ts';
import net from 'node:net';
import { hostname } from 'node:os';
import type { Arbiter } from '../arbiter/index.ts';
import { ClientServer, isNodeAddress, NODE_ADDRESS_BYTES_MAX, PAYLOAD_BYTES_MAX_DEFAULT } from '../net/index.ts';
import type { ServerLimits, ServerEvent } from '../net/index.ts';
import { GuestRunner, MESSAGE_BYTES_MAX, THROTTLE_PAUSE_US_MAX } from '../vm/index.ts';
import { MODULE_HASH_BYTES } from '../log/index.ts';
import type { RunnerResult } from '../vm/index.ts';
import type { FrameFacts } from '../vm/runner.ts';
import { LogPeer, MessageType, readU64, readU64s, u64Payload, checkSecret } from './channel.ts';
import type { ChannelMessage } from './channel.ts';
import { ReplicationError } from './errors.ts';
import { InputFeeder, OutputGate } from './gate.ts';
import { defaultHistory, FrameTail, type HistoryFrame, type HistoryReader, type LogHistory } from './history.ts';
import { encodeTransfer, TransferSender } from './transfer.ts';
import { CatchupPacer } from './pacer.ts';
import { readInstrumentMeta } from '../instrument/index.ts';
import type { GuestSnapshot } from '../vm/index.ts';
import { ForgetLog, encodeForgets, type Forget } from './forgets.ts';

export interface Endpoint {
  host?: string;
  port?: number;
}

export interface ClientEndpoint extends Endpoint {
  limits?: Partial<ServerLimits>;
  allowNonLoopback?: boolean;
  /** host:port clients should use for this node (the backup's not_primary hint); default: the bound address. */
  advertise?: string;
}

/** Options both roles share. */
export interface ReplicaOptions {
  /** An instrumented module. */
  module: WebAssembly.Module;
  arbiter: Arbiter;
  /** Shared secret of the log channel, at least 16 bytes. */
  secret: Uint8Array;
  /** Unique per incarnation; default host:pid:startMs. */
  nodeId?: string;
  clients?: ClientEndpoint;
  heartbeat_interval_ms?: number;
  heartbeat_timeout_ms?: number;
  message_bytes_max?: number;
  held_outputs_max?: number;
  input_queue_max?: number;
  /** Operator-facing notes (connections, claims, refusals); never printed by this layer. */
  onEvent?: (text: string) => void;
  /**
   * SHA-256 of the guest module's bytes (as the CLI hashes them; 32 bytes). When both nodes give one, a
   * backup running another module is refused at HELLO, naming both: its replay would diverge at once.
   */
  module_hash?: Uint8Array;
  /**
   * Every sealed log frame this node holds, in seq order without gaps, from seq 1: on a primary the frames its
   * guest records; on a backup the frames received, then (once live) those its guest records. For archiving
   * (`ftwasm primary|backup --log FILE`) and tests. Called synchronously; the bytes must not be changed.
   */
  onLogFrames?: (frames: Uint8Array, firstSeq: number, lastSeq: number) => void;
}

export interface PrimaryOptions extends ReplicaOptions {
  /** Where the backup connects; default 127.0.0.1, a free port. */
  replication?: Endpoint & { allowNonLoopback?: boolean };
  /** Time from start for a backup to connect before the primary claims the next epoch and goes on alone. */
  backup_wait_ms?: number;
  /** Log bytes kept for a backup that has not acked them; beyond it the backup counts as lost. */
  retained_bytes_max?: number;
  /**
   * The whole log kept in memory (frames from seq 1), so that a backup started after this primary went on
   * alone can catch up from the beginning. Past it the history is dropped and such a backup is refused (it
   * would need state transfer). Default 256 MiB.
   */
  history_bytes_max?: number;
  /** Where the history is kept; default in memory (history_bytes_max). `ftwasm primary --log` reads it back from its file. */
  history?: LogHistory;
  /**
   * How far (in ms of the primary's recording) the backup's replay may trail before the primary is throttled:
   * its guest pauses at every check-in (slices shrink) and client input is held, until the lag is below half
   * of it. It bounds failover time: a backup replays all it holds before going live. Default 100.
   */
  replay_lag_ms_max?: number;
  /**
   * State transfer (a module prepared for snapshots): how long a joining backup waits for the guest to reach a
   * recv, where its snapshot is taken, before it is refused. Default SNAPSHOT_WAIT_MS.
   */
  snapshot_wait_ms?: number;
}

export type ReplicaRole = 'primary' | 'backup' | 'claiming' | 'halted' | 'closed';

export interface ReplicaState {
  role: ReplicaRole;
  epoch: number;
  /** Primary: entries recorded but not acked by the backup. Backup: entries received but not yet handed to the replaying guest. */
  lag_entries: number;
  last_seq: number;
  acked_seq: number;
  released_seq: number;
  held_outputs: number;
  /** Outputs handed to the clients (over all sessions). */
  outputs_released: number;
  /** Primary: alone after losing (or never having) a backup. */
  solo: boolean;
  peer_connected: boolean;
  guest_exited: boolean;
  /** Primary: how far the backup's replay trails, in ms of this primary's recording (0 when caught up). */
  replay_lag_ms?: number;
  /** Primary: the pause at each check-in while throttled, in us (0: not throttled). */
  throttle_pause_us?: number;
  /** Backup: the primary said SYNCED, so this backup may take over (a backup that joined a lone primary waits for it). */
  synced?: boolean;
  /**
   * Primary: a backup that joined after it went on alone is waiting for a snapshot of the guest (state
   * transfer), being caught up (the snapshot, then frames; or frames from the history), or synced.
   */
  rejoin?: 'snapshot' | 'catching_up' | 'syncing';
  /** Backup: restored from the primary's snapshot taken after this seq (state transfer); absent when it replayed from seq 1. */
  restored_seq?: number;
  /** Sessions whose requests the log bookkeeping counts: the live ones, as dropped sessions are forgotten. */
  sessions_counted: number;
}

export interface ReplicaEvents {
  live: [epoch: number];
  halted: [reason: string];
  exited: [result: RunnerResult];
  note: [text: string];
}

export const HEARTBEAT_INTERVAL_MS_DEFAULT = 50;
export const HEARTBEAT_TIMEOUT_MS_DEFAULT = 300;
export const BACKUP_WAIT_MS_DEFAULT = 10_000;
export const REPLAY_LAG_MS_MAX_DEFAULT = 100;
const WILDCARD_HOSTS = new Set(['0.0.0.0', '::', '']);

/** host:port as clients write it (an IPv6 host in brackets). */
function hostPort(a: { host: string; port: number }): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

/**
 * Where clients should reach a node (PRIMARY and CLIENTS messages, the client protocol's `nodes` and
 * `primary_hint`): `clients.advertise`, else the client server's bound address unless it is a wildcard (which
 * names no host a client could reach).
 */
export function advertisedAddress(clients: ClientEndpoint | undefined, server: ClientServer | undefined): string | undefined {
  if (clients?.advertise !== undefined) return clients.advertise;
  const bound = server?.address();
  return bound && !WILDCARD_HOSTS.has(bound.host) ? hostPort(bound) : undefined;
}

/** `clients.advertise`, if given, must be an address clients can use (isNodeAddress). */
export function checkAdvertise(clients: ClientEndpoint | undefined): void {
  const advertise = clients?.advertise;
  if (advertise !== undefined && !isNodeAddress(advertise)) {
    throw new ReplicationError('FTW_REPL_OPTION', `clients.advertise = ${JSON.stringify(advertise.slice(0, 80))} is not a host:port of at most ${NODE_ADDRESS_BYTES_MAX} bytes`);
  }
}

/** Throttling: the first pause per check-in (doubling each interval while the lag stays over), and the slice. */
const THROTTLE_PAUSE_US_FIRST = 500;
/** Connections to the replication port at once (beyond it the kernel's accept is answered by closing). */
export const REPLICATION_CONNECTIONS_MAX = 8;
const THROTTLE_SLICE = 100_000n;
const SEALED_SAMPLES_MAX = 8192;
export const RETAINED_BYTES_MAX_DEFAULT = 256 << 20;
export const HISTORY_BYTES_MAX_DEFAULT = 256 << 20;
/** A rejoining backup is synced once its ack and its replay are this close to the head of the log. */
const SYNC_SLACK_ENTRIES = 4096;
/** How long a joining backup waits for the guest to reach a recv, where its snapshot is taken. */
export const SNAPSHOT_WAIT_MS = 10_000;
/** SESSIONS: one record is a session id (u32 LE) and the epoch it was opened in (u64 LE); a message holds at most this many. */
export const SESSION_RECORD_BYTES = 12;
export const SESSION_RECORDS_MAX = 65_536;
/** Catching up: history frames are written while the socket holds less than this unsent. */
const CATCHUP_BUFFER_BYTES = 4 << 20;
export const HELD_OUTPUTS_MAX_DEFAULT = 65_536;
export const INPUT_QUEUE_MAX_DEFAULT = 4_096;
/** Frames batched into one FRAMES message at most (a single larger frame goes alone, as it is). */
export const FRAMES_BATCH_BYTES_MAX = 1 << 20;

export function defaultNodeId(): string {
  return `${hostname()}:${process.pid}:${Date.now()}`;
}

/** Microseconds on this process's monotonic clock, never 0: the stamp a primary puts on its heartbeats. */
export function stampNow(): number {
  return Math.floor(performance.now() * 1000) + 1;
}

/** A module hash (ReplicaOptions.module_hash) is a SHA-256, as a log file's header names its module. */
export function checkModuleHash(hash: Uint8Array | undefined): void {
  if (hash !== undefined && (!(hash instanceof Uint8Array) || hash.length !== MODULE_HASH_BYTES)) {
    throw new ReplicationError('FTW_REPL_OPTION', `module_hash must be ${MODULE_HASH_BYTES} bytes (a SHA-256)`);
  }
}

export function checkTimes(interval_ms: number, timeout_ms: number): void {
  if (!Number.isInteger(interval_ms) || interval_ms < 1 || interval_ms > 60_000) {
    throw new ReplicationError('FTW_REPL_OPTION', `heartbeat_interval_ms = ${interval_ms} is outside 1..60000`);
  }
  if (!Number.isInteger(timeout_ms) || timeout_ms < 2 * interval_ms || timeout_ms > 600_000) {
    throw new ReplicationError('FTW_REPL_OPTION', `heartbeat_timeout_ms = ${timeout_ms} must be in 2 x heartbeat_interval_ms (${2 * interval_ms})..600000`);
  }
}

/**
 * The payload limit of a node's client service, which is also its guest's `send` limit (an output must fit it).
 * Above MESSAGE_BYTES_MAX a request and its RECV entry would not fit one log frame: refused.
 */
export function clientPayloadMax(clients: ClientEndpoint | undefined): number {
  const max = clients?.limits?.payload_bytes_max ?? PAYLOAD_BYTES_MAX_DEFAULT;
  if (!Number.isInteger(max) || max < 0 || max > MESSAGE_BYTES_MAX) {
    throw new ReplicationError('FTW_REPL_OPTION', `clients.limits.payload_bytes_max = ${max} is outside 0..${MESSAGE_BYTES_MAX} (MESSAGE_BYTES_MAX: a request and its log entry must fit one log frame)`);
  }
  return max;
}

export function checkLoopback(host: string, allow: boolean | undefined, what: string): void {
  const v4 = host.startsWith('::ffff:') ? host.slice(7) : host;
  const loopback = host === 'localhost' || host === '::1' || (net.isIPv4(v4) && v4.startsWith('127.'));
  if (!loopback && allow !== true) {
    throw new ReplicationError('FTW_REPL_OPTION', `refusing to bind ${what} on ${host}: not a loopback address; pass allowNonLoopback: true`);
  }
}

/** A sealed frame as it is kept and sent: its bytes and the seqs of its first and last entry. */
export type RetainedFrame = HistoryFrame;

/** What a backup that went live hands to Primary.adopt. */
export interface AdoptedNode {
  epoch: number;
  runner: GuestRunner;
  server: ClientServer;
  gate: OutputGate;
  feeder: InputFeeder;
  /** The backup's history (every frame from seq 1 while it is complete). */
  history: LogHistory;
  /** The sessions dropped since seq 1, for backups that join later. */
  forgets: ForgetLog;
}

/** A running primary; see startPrimary. */
export class Primary extends ReplicaNode {
  readonly nodeId: string;
  /** Resolves with the reason when this node halts (never, if it is closed first). */
  private epoch = 0;
  private solo = false;
  private runner: GuestRunner | undefined;
  /** The newest replay progress the backup reported (its HEARTBEAT): seq of the last entry its guest took. */
  private backup_replayed_seq = 0;
  /** (last seq, time) of recent sealed frames: the replay lag in time. */
  private sealed: Array<{ lastSeq: number; ms: number }> = [];
  private throttle_us = 0;
  /** The connected backup's client address, as it told it (CLIENTS). */
  private backup_clients: string | undefined;
  private progress_known = false;
  /** Client input waits (bounded by input_queue_max) while the backup's replay trails too far. */
  private input_held = false;
  private server: ClientServer | undefined;
  private listener: net.Server | undefined;
  private peer: LogPeer | undefined;
  private peer_ever = false;
  private last_heard_ms = performance.now();
  private started_ms = performance.now();
  private acked_seq = 0;
  /** The newest heartbeat stamp the backup echoed: it had heard this primary at or after that moment. */
  private lease_stamp_us = 0;
  private retained: RetainedFrame[] = [];
  /** Every frame from seq 1 (until a bound is passed): what a joining backup replays. */
  private history: LogHistory;
  /** Sessions dropped since seq 1 (host/replication/forgets.ts), told to a backup that joins later. */
  private forgets = new ForgetLog();
  /** Made by Primary.adopt from a backup that went live (which owns the guest and the client server). */
  private adopted = false;
  /** A backup that joined this primary while it was alone: the next history frame to send it, or (syncing) the seq its ack must reach. */
  private rejoin:
    | { phase: 'snapshot'; timer: NodeJS.Timeout }
    | { phase: 'catching_up'; reader: HistoryReader; transfer?: { sender: TransferSender; seq: number; tail: FrameTail } }
    | { phase: 'syncing'; released: number }
    | undefined;
  /** The module can be snapshot at a recv (prepareUnwind): a joining backup gets state transfer, not the whole log. */
  private readonly unwind: boolean;
  /** Whether a joining backup gains on the log; while it does not, input is held and the guest paused. */
  private readonly pacer = new CatchupPacer(undefined, SYNC_SLACK_ENTRIES);
  /** Frames sealed this event-loop turn and not yet sent: they go out together, as one FRAMES message. */
  private unsent: RetainedFrame[] = [];
  private flush_scheduled: NodeJS.Immediate | undefined;
  /** Highest log seq sent to the current backup: it cannot ack beyond it. */
  private sent_seq = 0;
  private retained_bytes = 0;
  private dropped_seq = 0;
  private guest_exited = false;
  private timer: NodeJS.Timeout | undefined;
  private gate!: OutputGate;
  private feeder!: InputFeeder;
  private readonly interval_ms: number;
  private readonly timeout_ms: number;
  /** How long after a stamp the backup echoed this primary may still release: see leaseHeld. */
  private readonly lease_ms: number;
  private result: RunnerResult | undefined;
  /** Largest request and output payload (the client service's limit; the guest's send limit). */
  private readonly payload_max: number;

  constructor(private readonly options: PrimaryOptions) {
    super('primary', options.onEvent);
    checkSecret(options.secret);
    this.nodeId = options.nodeId ?? defaultNodeId();
    this.interval_ms = options.heartbeat_interval_ms ?? HEARTBEAT_INTERVAL_MS_DEFAULT;
    this.timeout_ms = options.heartbeat_timeout_ms ?? HEARTBEAT_TIMEOUT_MS_DEFAULT;
    checkTimes(this.interval_ms, this.timeout_ms);
    checkModuleHash(options.module_hash);
    checkAdvertise(options.clients);
    // One heartbeat interval of margin for clocks of two hosts running at slightly different rates.
    this.lease_ms = this.timeout_ms - this.interval_ms;
    this.payload_max = clientPayloadMax(options.clients);
    this.unwind = readInstrumentMeta(options.module)?.unwind === true;
    this.history = options.history ?? defaultHistory(this.unwind, options.history_bytes_max ?? HISTORY_BYTES_MAX_DEFAULT);
  }

  /** Claims the next epoch, starts listening for the backup and the clients, and starts the guest. */
  async start(): Promise<void> {
    const arbiter = this.options.arbiter;
    const current = await arbiter.current();
    const target = (current?.epoch ?? 0) + 1;
    const won = await arbiter.claim(target, this.nodeId);
    if (!won.won) throw new ReplicationError('FTW_REPL_EPOCH', `epoch ${target} went to ${won.holder.nodeId} (epoch ${won.holder.epoch}) in ${arbiter.where}`);
    this.epoch = target;
    this.note(`primary ${this.nodeId}: won epoch ${target} in ${arbiter.where}`);

    const server = new ClientServer({
      host: this.options.clients?.host ?? '127.0.0.1',
      port: this.options.clients?.port ?? 0,
      ...(this.options.clients?.allowNonLoopback ? { allowNonLoopback: true } : {}),
      ...(this.options.clients?.limits ? { limits: this.options.clients.limits } : {}),
      role: () => (this.role === 'primary' || this.role === 'claiming' ? 'primary' : 'backup'),
      epoch: () => this.epoch,
      onEvent: (e: ServerEvent) => {
        if (e.kind === 'host_error' || e.kind === 'outputs_evicted') this.note(`clients: ${e.message}`);
      },
    });
    this.server = server;
    this.gate = new OutputGate({
      server,
      epoch: () => this.epoch,
      held_outputs_max: this.options.held_outputs_max ?? HELD_OUTPUTS_MAX_DEFAULT,
      onOverflow: (what) => this.backupLost(what),
    });
    this.feeder = new InputFeeder(() => (this.input_held ? undefined : this.runner), (s) => this.gate.deliveredOf(s), this.options.input_queue_max ?? INPUT_QUEUE_MAX_DEFAULT);
    server.onRequest = (session, seq, payload) => this.feeder.onRequest(session, seq, payload);
    server.onSessionExpired = (session) => this.onSessionDropped(session);

    await this.listenReplication();
    await server.listen();
    this.advertiseNodes();

    const runner = new GuestRunner({ module: this.options.module, mode: 'record', streamFrames: true, messageBytesMax: this.payload_max });
    this.attach(runner);
  }

  /**
   * A backup that went live hands its running guest, client server and log bookkeeping to a Primary, which
   * serves new backups from then on (it is alone in `epoch` until one has caught up). The backup keeps owning
   * the runner and the client server: this node's shutdown leaves them to it.
   */
  static async adopt(options: PrimaryOptions, from: AdoptedNode): Promise<Primary> {
    const p = new Primary(options);
    p.adopted = true;
    p.epoch = from.epoch;
    p.solo = true;
    p.server = from.server;
    p.gate = from.gate;
    p.feeder = from.feeder;
    p.history = from.history;
    p.forgets = from.forgets;
    p.server.onSessionExpired = (session) => p.onSessionDropped(session);
    const detach = p.attach(from.runner);
    try {
      await p.listenReplication();
    } catch (error) {
      detach(); // the backup takes its guest's frames and outputs back
      await p.close();
      throw error;
    }
    p.advertiseNodes();
    p.note(`serving new backups on ${hostPort(p.replicationAddress())} (alone in epoch ${p.epoch} until one catches up)`);
    return p;
  }

  /**
   * The node's guest: its frames, outputs and end go through this primary; then the heartbeat timer starts.
   * Returns what undoes the frame and output listeners.
   */
  private attach(runner: GuestRunner): () => void {
    this.runner = runner;
    const onFrame = (bytes: Uint8Array, firstSeq: number, lastSeq: number, facts: FrameFacts): void => this.onFrame(bytes, firstSeq, lastSeq, facts);
    const onSend = (session: number, bytes: Uint8Array, seq: number): void => {
      this.gate.onSend(session, bytes, seq);
      this.releaseAcked();
    };
    const onSnapshot = (snapshot: GuestSnapshot): void => this.onSnapshot(snapshot);
    runner.on('frame', onFrame);
    runner.on('send', onSend);
    runner.on('snapshot', onSnapshot);
    if (!this.adopted) runner.on('log', (text) => this.note(`[guest] ${text}`));
    runner.done.then(
      (result) => {
        this.result = result;
        this.guest_exited = true;
        // The guest's last frames (its END) go out now, before whoever awaits 'exited' closes this node.
        if (this.flush_scheduled) {
          clearImmediate(this.flush_scheduled);
          this.flushFrames();
        }
        this.emit('exited', result);
      },
      (error: Error) => this.halt(`the guest failed: ${error.message}`),
    );
    this.started_ms = performance.now();
    this.timer = setInterval(() => this.tick(), this.interval_ms);
    return () => {
      runner.off('frame', onFrame);
      runner.off('send', onSend);
      runner.off('snapshot', onSnapshot);
    };
  }

  /**
   * A snapshot of the guest at its next recv (a module prepared for snapshots): every frame up to its lastSeq
   * has reached onLogFrames first. For an archive that starts a new segment after it (`ftwasm primary --log`).
   */
  snapshot(): Promise<GuestSnapshot> {
    return this.runner ? this.runner.snapshot() : Promise.reject(new ReplicationError('FTW_REPL_STATE', 'no guest yet'));
  }

  /** The epoch this primary serves now (it moves on when it claims the next one after losing a backup). */
  get currentEpoch(): number {
    return this.epoch;
  }

  /** The client server's counts (connections, sessions, outputs kept for clients), once it is up. */
  clientStats(): ReturnType<ClientServer['stats']> | undefined {
    return this.server?.stats();
  }

  /** The guest's result once it ended. */
  get guestResult(): RunnerResult | undefined {
    return this.result;
  }

  replicationAddress(): { host: string; port: number } {
    const a = this.listener?.address();
    assert(a && typeof a !== 'string', 'the replication listener is not bound');
    return { host: a.address, port: a.port };
  }

  clientAddress(): { host: string; port: number } {
    assert(this.server, 'not started');
    return this.server.address();
  }

  /** What this primary tells its backup and clients to use (see advertisedAddress). */
  private advertisedAddress(): string | undefined {
    return advertisedAddress(this.options.clients, this.server);
  }

  /**
   * The client protocol's `nodes` (for clients that ask): this primary, then its backup while one is connected
   * and said where it serves clients. A client that learns the backup's address finds it when it takes over,
   * even if the client was started before the backup joined.
   */
  private advertiseNodes(): void {
    const own = this.advertisedAddress();
    if (own === undefined || this.server === undefined) return;
    const backup = this.peer?.isOpen ? this.backup_clients : undefined;
    this.server.setNodes(backup !== undefined && backup !== own ? [own, backup] : [own]);
  }

  state(): ReplicaState {
    return {
      role: this.role,
      epoch: this.epoch,
      lag_entries: this.gate ? this.gate.last_seq - this.acked_seq : 0,
      last_seq: this.gate?.last_seq ?? 0,
      acked_seq: this.acked_seq,
      released_seq: this.gate?.released_seq ?? 0,
      held_outputs: this.gate?.held_outputs ?? 0,
      outputs_released: this.gate?.outputs_released ?? 0,
      solo: this.solo,
      peer_connected: this.peer?.isOpen ?? false,
      guest_exited: this.guest_exited,
      replay_lag_ms: Math.round(this.replayLagMs()),
      throttle_pause_us: this.throttle_us,
      sessions_counted: this.gate?.sessions_counted ?? 0,
      ...(this.rejoin ? { rejoin: this.rejoin.phase } : {}),
    };
  }

  /**
   * No more client input reaches the guest: requests not yet in its input ring are refused (the client sends
   * them again elsewhere), and the guest's recv returns -1 once the ring is empty (the kv guest then returns).
   */
  closeInput(): void {
    this.feeder?.stop();
    this.runner?.closeInput();
  }

  protected async shutdown(reason: string): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    if (this.flush_scheduled) clearImmediate(this.flush_scheduled);
    this.flush_scheduled = undefined;
    // Frames of this last turn still go out (the END of a guest that just returned, say): sealed frames
    // were always sent as they came, stopping must not hold any back. Nothing is released here.
    if (this.peer?.isOpen && !this.solo && this.unsent.length > 0) this.sendFrames(this.peer, this.unsent);
    this.unsent = [];
    this.peer?.close(reason);
    this.endRejoin();
    const listener = this.listener;
    const closing = listener ? new Promise<void>((resolve) => listener.close(() => resolve())) : undefined;
    // An adopted node's guest and client server belong to the backup that went live: it stops them.
    if (this.adopted) return void (await closing);
    this.feeder?.stop();
    this.server?.checkRole();
    await Promise.all([this.runner?.terminate(), this.server?.close(), closing]);
  }

  // -------------------------------------------------------------------------------------------------------

  private async listenReplication(): Promise<void> {
    const host = this.options.replication?.host ?? '127.0.0.1';
    checkLoopback(host, this.options.replication?.allowNonLoopback, 'the replication channel');
    const listener = net.createServer((socket) => this.onConnection(socket));
    // One backup at a time; a few more may be in their handshake (a stranger's is cut off after 2 s).
    listener.maxConnections = REPLICATION_CONNECTIONS_MAX;
    this.listener = listener;
    await new Promise<void>((resolve, reject) => {
      listener.once('error', (e) => reject(new ReplicationError('FTW_REPL_OPTION', `cannot listen for the backup on ${host}:${this.options.replication?.port ?? 0}: ${e.message}`, { cause: e })));
      listener.listen(this.options.replication?.port ?? 0, host, () => resolve());
    });
    listener.on('error', (e) => this.note(`replication listener: ${e.message}`));
  }

  private onConnection(socket: net.Socket): void {
    if (this.role !== 'primary' && this.role !== 'claiming') {
      socket.destroy();
      return;
    }
    const peer = new LogPeer(socket, 'primary', {
      secret: this.options.secret,
      epoch: () => this.epoch,
      ...(this.options.message_bytes_max ? { message_bytes_max: this.options.message_bytes_max } : {}),
    });
    peer.ready.then(
      () => {
        peer.on('message', (m) => this.onMessage(peer, m));
        // The acks and echoes of one read are taken first, then released from at once (one RELEASED).
        peer.on('drained', () => {
          if (peer === this.peer) this.releaseAcked();
        });
        peer.on('close', (reason) => {
          this.note(`backup ${peer.peer} disconnected: ${reason}`);
          this.advertiseNodes(); // without this backup's address once it is not the connected one
        });
      },
      (error: Error) => this.note(`refused backup connection from ${peer.peer}: ${error.message}`),
    );
  }

  private onMessage(peer: LogPeer, m: ChannelMessage): void {
    if (m.epoch > this.epoch) return this.halt(`the backup at ${peer.peer} speaks for epoch ${m.epoch}, above this primary's ${this.epoch}`);
    if (m.type === MessageType.HELLO) {
      // next_seq u64, payload_max u64, then (optional) the backup's module hash
      if (m.payload.length !== 16 && m.payload.length !== 16 + MODULE_HASH_BYTES) return peer.refuse(`HELLO of ${m.payload.length} bytes, expected 16 or ${16 + MODULE_HASH_BYTES}`);
      const [next_seq, payload_max] = readU64s(m.payload.subarray(0, 16), 2, 'HELLO');
      const theirs = m.payload.length > 16 ? m.payload.subarray(16) : undefined;
      const mine = this.options.module_hash;
      if (theirs && mine && Buffer.compare(Buffer.from(theirs), Buffer.from(mine)) !== 0) {
        return peer.refuse(`the backup runs another guest module (sha256 ${Buffer.from(theirs).toString('hex').slice(0, 16)}…, this primary's ${Buffer.from(mine).toString('hex').slice(0, 16)}…): start both with the same module (and both with or without --state-transfer)`);
      }
      // The limit is also the guests' `send` limit, and a request one node takes must be one the other's guest
      // can replay: the two must be equal.
      if (payload_max !== this.payload_max) {
        return peer.refuse(`the backup's client payload limit is ${payload_max} bytes, this primary's ${this.payload_max}: set clients.limits.payload_bytes_max alike on both`);
      }
      return this.onHello(peer, next_seq!);
    }
    if (peer !== this.peer) return peer.refuse('not the current backup');
    this.last_heard_ms = performance.now();
    switch (m.type) {
      case MessageType.ACK: {
        // Released from on 'drained', once for every message of this read.
        const [seq, echo] = readU64s(m.payload, 2, 'ACK');
        this.onAck(seq!);
        return this.onEcho(peer, echo!);
      }
      case MessageType.HEARTBEAT: {
        // echo, then the seq its replay has reached (ftwasm backups always send it; without it, no throttling)
        if (m.payload.length === 8) return this.onEcho(peer, readU64(m.payload, 'HEARTBEAT'));
        const [echo, replayed] = readU64s(m.payload, 2, 'HEARTBEAT');
        this.progress_known = true;
        if (replayed! > this.backup_replayed_seq) this.backup_replayed_seq = Math.min(replayed!, this.sent_seq);
        return this.onEcho(peer, echo!);
      }
      case MessageType.CLIENTS: {
        const text = Buffer.from(m.payload).toString('utf8');
        if (!isNodeAddress(text)) return peer.refuse(`CLIENTS of ${m.payload.length} bytes is not a host:port of at most ${NODE_ADDRESS_BYTES_MAX} bytes`);
        this.backup_clients = text;
        return this.advertiseNodes();
      }
      default:
        peer.refuse(`unexpected message type ${m.type} from a backup`);
    }
  }

  /** Takes `peer` as the backup: a new lease, its first heartbeat stamp, and where clients reach this primary. */
  private greet(peer: LogPeer): void {
    this.peer = peer;
    this.backup_clients = undefined; // until this backup says (CLIENTS)
    this.last_heard_ms = performance.now();
    // A new connection starts a new lease: the first stamp goes out before any frame.
    this.lease_stamp_us = 0;
    peer.send(MessageType.HEARTBEAT, u64Payload(stampNow()));
    // Where this primary serves clients, for the backup's not_primary answers (not when bound to a wildcard
    // address, which names no host a client could reach).
    const advertised = this.advertisedAddress();
    if (advertised !== undefined) peer.send(MessageType.PRIMARY, new TextEncoder().encode(advertised));
    // Every session dropped since seq 1: a backup applies each when its log passes the seq (again is harmless).
    for (const chunk of this.forgets.chunks(SESSION_RECORDS_MAX)) peer.send(MessageType.FORGET, encodeForgets(chunk));
  }

  /** A backup asks for the log from next_seq: served from the retained frames, if they reach back that far. */
  private onHello(peer: LogPeer, next_seq: number): void {
    if (this.peer?.isOpen && this.peer !== peer) return peer.refuse(`a backup is already connected (${this.peer.peer})`);
    if (this.solo) return this.onRejoin(peer, next_seq);
    // The backup must have everything this primary dropped, and ask from a frame boundary it still holds.
    const boundary = next_seq === this.gate.last_seq + 1 || this.retained.some((f) => f.firstSeq === next_seq);
    if (next_seq <= this.dropped_seq || !boundary) {
      return peer.refuse(`cannot serve the log from seq ${next_seq}: retained ${this.dropped_seq + 1}..${this.gate.last_seq}; a new backup needs state transfer (run every node with --state-transfer: the module prepared for snapshots)`);
    }
    this.peer_ever = true;
    this.greet(peer);
    this.note(`backup ${peer.peer} connected, log from seq ${next_seq}`);
    // Nothing was released that this backup will not hold: from the first frame on, outputs waited for acks.
    peer.send(MessageType.SYNCED, u64Payload(next_seq - 1));
    // The backup holds the log up to next_seq - 1 (all of it from this primary: next_seq is checked above).
    this.sent_seq = next_seq - 1;
    if (next_seq - 1 > this.acked_seq) {
      this.onAck(next_seq - 1);
      this.releaseAcked();
    }
    // Every retained frame from next_seq (the unsent ones of this turn too), batched.
    this.unsent = [];
    this.sendFrames(peer, this.retained.filter((f) => f.firstSeq >= next_seq));
  }

  private onFrame(bytes: Uint8Array, firstSeq: number, lastSeq: number, facts?: FrameFacts): void {
    assert(firstSeq === this.gate.last_seq + 1, `frame ${firstSeq}..${lastSeq} after seq ${this.gate.last_seq}`);
    // When each frame was sealed, to tell how far behind the backup's replay is (bounded: oldest dropped).
    this.sealed.push({ lastSeq, ms: performance.now() });
    if (this.sealed.length > SEALED_SAMPLES_MAX) this.sealed.splice(0, this.sealed.length - SEALED_SAMPLES_MAX / 2);
    // This node's own guest sealed the frame: its worker says what is in it, no decoding here.
    if (facts) this.gate.onFrameFacts(firstSeq, lastSeq, facts);
    else this.gate.onFrames(bytes);
    this.options.onLogFrames?.(bytes, firstSeq, lastSeq);
    this.keepHistory({ bytes, firstSeq, lastSeq });
    if (this.solo) {
      this.releaseAcked();
      const transfer = this.rejoin?.phase === 'catching_up' ? this.rejoin.transfer : undefined;
      if (transfer && !transfer.tail.push({ bytes, firstSeq, lastSeq })) {
        const peer = this.peer;
        this.endRejoin();
        return peer?.refuse(`the log after the snapshot passed retained_bytes_max before this backup caught up`);
      }
      return this.pumpCatchup();
    }
    const frame = { bytes, firstSeq, lastSeq };
    this.retained.push(frame);
    this.retained_bytes += bytes.length;
    // Sent at the end of this event-loop turn with every other frame sealed in it: one message, one MAC, one
    // write. (An output waits for the ack of its entry anyway, so this only delays what is held already.)
    if (this.peer?.isOpen) {
      this.unsent.push(frame);
      this.flush_scheduled ??= setImmediate(() => this.flushFrames());
    }
    if (this.retained_bytes > (this.options.retained_bytes_max ?? RETAINED_BYTES_MAX_DEFAULT)) {
      this.backupLost(`${this.retained_bytes} log bytes not acked > retained_bytes_max`);
    }
  }

  /** The frames sealed this turn, to the backup, batched (still retained: a new connection gets them from there). */
  private flushFrames(): void {
    this.flush_scheduled = undefined;
    const frames = this.unsent;
    this.unsent = [];
    if (this.role !== 'primary' || this.solo || !this.peer?.isOpen) return;
    this.sendFrames(this.peer, frames);
  }

  /** Frames in seq order as few FRAMES messages: each up to FRAMES_BATCH_BYTES_MAX (a larger frame alone). */
  private sendFrames(peer: LogPeer, frames: readonly RetainedFrame[]): void {
    const cap = Math.min(FRAMES_BATCH_BYTES_MAX, this.options.message_bytes_max ?? FRAMES_BATCH_BYTES_MAX);
    let batch: Uint8Array[] = [];
    let bytes = 0;
    for (const f of frames) {
      if (batch.length > 0 && bytes + f.bytes.length > cap) {
        peer.sendParts(MessageType.FRAMES, batch);
        batch = [];
        bytes = 0;
      }
      batch.push(f.bytes);
      bytes += f.bytes.length;
    }
    if (batch.length > 0) peer.sendParts(MessageType.FRAMES, batch);
    if (frames.length > 0) this.sent_seq = frames.at(-1)!.lastSeq;
  }

  private onAck(seq: number): void {
    if (seq > this.sent_seq) return this.peer?.refuse(`ack of seq ${seq} beyond the last sent ${this.sent_seq}`);
    if (seq <= this.acked_seq) return;
    this.acked_seq = seq;
    if (this.rejoin?.phase === 'catching_up') this.rejoin.transfer?.tail.ack(seq);
    let n = 0;
    while (n < this.retained.length && this.retained[n]!.lastSeq <= seq) {
      const f = this.retained[n++]!;
      this.retained_bytes -= f.bytes.length;
      this.dropped_seq = f.lastSeq;
    }
    if (n > 0) this.retained.splice(0, n);
  }

  /** The backup echoed a heartbeat stamp: it heard this primary at or after that moment. */
  private onEcho(peer: LogPeer, echo: number): void {
    if (echo === 0 || echo <= this.lease_stamp_us) return;
    if (echo > stampNow()) return peer.refuse(`echoed heartbeat stamp ${echo} is in the future`);
    this.lease_stamp_us = echo;
  }

  /**
   * Whether the backup surely has not gone live. It fails over only after hearing nothing for
   * heartbeat_timeout_ms, and an echo of stamp S means it heard this primary at or after S, so before
   * S + timeout it is still a backup. An ack read late (this process was stopped, or starved, while the
   * backup took over) carries an old stamp, so it cannot let out anything: the primary holds until a fresh
   * echo comes, or until the heartbeat timeout makes it claim the next epoch (and halt if the backup has it).
   */
  private leaseHeld(): boolean {
    return this.lease_stamp_us > 0 && (stampNow() - this.lease_stamp_us) / 1000 < this.lease_ms;
  }

  /** The output rule: only what the backup acked leaves, and nothing at all while an epoch is in question. */
  private releaseAcked(): void {
    if (this.role !== 'primary') return;
    if (!this.solo && !this.leaseHeld()) return;
    // Not alone and no backup to tell: nothing leaves until one is back (or this node goes on alone).
    if (!this.solo && !this.peer?.isOpen) return;
    const watermark = this.solo ? Infinity : this.acked_seq;
    // The backup hears of a release before any client sees it: whatever stops this process midway, every
    // output that left is at or below the last RELEASED the backup got (so it knows what clients may hold).
    const target = Math.min(watermark, this.gate.last_seq);
    if (target > this.gate.released_seq && !this.solo) this.peer!.send(MessageType.RELEASED, u64Payload(target));
    this.gate.release(watermark);
    this.checkRejoin();
  }

  // -------------------------------------------------------------------------------------------------------
  // A backup joining a primary that went on alone (catch-up from the history)

  private keepHistory(frame: RetainedFrame): void {
    if (!this.history.add(frame)) return;
    this.note(`${this.history.gone}: a backup joining after this primary went on alone can no longer be caught up (that needs state transfer)`);
    this.forgets.clear();
    if (this.rejoin?.phase === 'catching_up') this.peer?.refuse(`${this.history.gone} while catching up`);
  }

  /**
   * A backup asks for the log while this primary is alone (it lost its backup, or none came in time). It gets
   * the whole history from next_seq while this primary goes on releasing at once; it may not take over until
   * SYNCED (see checkRejoin), because until then clients hold outputs it has not seen.
   */
  private onRejoin(peer: LogPeer, next_seq: number): void {
    if (next_seq === 1 && this.unwind) return this.rejoinBySnapshot(peer);
    if (!this.history.complete) {
      return peer.refuse(`this primary went on alone in epoch ${this.epoch} and ${this.history.gone}: a new backup needs state transfer (run every node with --state-transfer: the module prepared for snapshots)`);
    }
    const reader = this.history.reader(next_seq, this.gate.last_seq);
    if (!reader) return peer.refuse(`cannot serve the log from seq ${next_seq}: not a frame boundary of the history 1..${this.gate.last_seq}`);
    this.endRejoin();
    this.progress_known = false;
    this.backup_replayed_seq = next_seq - 1;
    this.acked_seq = next_seq - 1;
    this.sent_seq = next_seq - 1;
    this.rejoin = { phase: 'catching_up', reader };
    this.pacer.reset();
    this.greetJoining(peer);
    this.note(`backup ${peer.peer} joined this primary, which is alone in epoch ${this.epoch}: catching it up from seq ${next_seq} to ${this.gate.last_seq}`);
    this.sendSessionEpochs(peer);
    this.pumpCatchup();
  }

  /** A backup joining a lone primary is greeted; if it goes away before it is synced, the primary stays alone. */
  private greetJoining(peer: LogPeer): void {
    this.greet(peer);
    peer.on('close', () => {
      if (this.peer !== peer || this.rejoin === undefined) return;
      if (this.rejoin.phase === 'syncing') return; // judged as any backup: lost, this primary claims the next epoch
      this.endRejoin();
      this.note(`the backup catching up (${peer.peer}) went away at seq ${this.acked_seq}: still alone in epoch ${this.epoch}`);
    });
  }

  /**
   * State transfer (docs/SNAPSHOT.md): a backup asking for the log from seq 1 of a module prepared for
   * unwinding gets a snapshot of the guest at its next recv, with the log bookkeeping at the same seq, and
   * then the frames after it, instead of the whole log. This primary goes on serving meanwhile.
   */
  private rejoinBySnapshot(peer: LogPeer): void {
    this.endRejoin();
    this.progress_known = false;
    this.backup_replayed_seq = 0;
    this.acked_seq = 0;
    this.sent_seq = 0;
    const wait_ms = this.options.snapshot_wait_ms ?? SNAPSHOT_WAIT_MS;
    const timer = setTimeout(() => {
      if (this.rejoin?.phase !== 'snapshot' || this.peer !== peer) return;
      this.endRejoin();
      peer.refuse(`the guest reached no recv within ${wait_ms} ms: no snapshot to send`);
    }, wait_ms);
    this.rejoin = { phase: 'snapshot', timer };
    this.greetJoining(peer);
    this.note(`backup ${peer.peer} joined this primary, which is alone in epoch ${this.epoch}: state transfer from a snapshot at the guest's next recv`);
    this.runner!.snapshot().catch((error: Error) => {
      if (this.rejoin?.phase !== 'snapshot' || this.peer !== peer) return;
      this.endRejoin();
      peer.refuse(`no snapshot of the guest: ${error.message}`);
    });
  }

  /**
   * The guest's snapshot (every frame up to it was handled already, so the log bookkeeping is at its seq):
   * sent with the client server's session table, then the frames after it, as the socket drains.
   */
  private onSnapshot(snapshot: GuestSnapshot): void {
    const peer = this.peer;
    if (this.rejoin?.phase !== 'snapshot' || !peer?.isOpen || this.role !== 'primary') return;
    clearTimeout(this.rejoin.timer);
    assert(snapshot.lastSeq === this.gate.last_seq, `snapshot at seq ${snapshot.lastSeq}, log bookkeeping at ${this.gate.last_seq}`);
    // Alone, this node released every output up to the snapshot at once, so its client server's table is at
    // the snapshot's seq too, with the outputs clients have not acknowledged yet.
    const table = this.server!.snapshot();
    const sessions = table.sessions;
    let sender: TransferSender;
    try {
      sender = new TransferSender(encodeTransfer({ table, snapshot }));
    } catch (error) {
      this.endRejoin();
      return peer.refuse(`cannot send the snapshot: ${(error as Error).message}`);
    }
    const tail = new FrameTail(this.options.retained_bytes_max ?? RETAINED_BYTES_MAX_DEFAULT);
    this.rejoin = { phase: 'catching_up', reader: tail, transfer: { sender, seq: snapshot.lastSeq, tail } };
    this.note(`snapshot of the guest at seq ${snapshot.lastSeq} (${sender.total} bytes, ${sessions.length} sessions): sending it to ${peer.peer}`);
    this.pumpCatchup();
  }

  /**
   * The client server dropped a session (idle, or evicted from a full table): its counters go, here at the
   * seq the log has reached, and on the backup when its log passes that seq (FORGET).
   */
  private onSessionDropped(session: number): void {
    this.gate.forget(session);
    this.feeder.forget(session);
    const f: Forget = { session, at_seq: this.gate.last_seq };
    if (this.history.gone === undefined) this.forgets.add(f);
    if (this.peer?.isOpen) this.peer.send(MessageType.FORGET, encodeForgets([f]));
  }

  /**
   * The log says which session each request came from, not in which epoch the session was opened; a backup
   * following from the start knows (its primary's), one joining later does not (the log spans epochs): it is
   * told, before any frame, as SESSIONS messages of at most SESSION_RECORDS_MAX records.
   */
  private sendSessionEpochs(peer: LogPeer): void {
    let records: Buffer[] = [];
    const flush = () => {
      if (records.length > 0) peer.sendParts(MessageType.SESSIONS, records);
      records = [];
    };
    for (const [session, epoch] of this.server!.sessionEpochs()) {
      const r = Buffer.allocUnsafe(SESSION_RECORD_BYTES);
      r.writeUInt32LE(session, 0);
      r.writeBigUInt64LE(BigInt(epoch), 4);
      records.push(r);
      if (records.length === SESSION_RECORDS_MAX) flush();
    }
    flush();
  }

  /** Sends history frames to a catching-up backup while its socket has room; goes on when it drains. */
  private pumpCatchup(): void {
    const rejoin = this.rejoin;
    const peer = this.peer;
    if (rejoin?.phase !== 'catching_up' || !peer?.isOpen) return;
    const cap = Math.min(FRAMES_BATCH_BYTES_MAX, this.options.message_bytes_max ?? FRAMES_BATCH_BYTES_MAX);
    while (peer.bufferedBytes < CATCHUP_BUFFER_BYTES) {
      const transfer = rejoin.transfer;
      if (transfer && !transfer.sender.done) {
        peer.sendParts(MessageType.SNAPSHOT, transfer.sender.next(cap)!);
        // Sent whole: the backup holds the log up to the snapshot's seq once it restored it.
        if (transfer.sender.done) this.sent_seq = transfer.seq;
        continue;
      }
      const frames = rejoin.reader.next(cap);
      if (frames.length === 0) return; // sent all there is: new frames come through onFrame
      peer.sendParts(MessageType.FRAMES, frames.map((f) => f.bytes));
      this.sent_seq = frames.at(-1)!.lastSeq;
    }
    peer.whenDrained(() => this.pumpCatchup());
  }

  /** Stops a catch-up in progress (its reader holds the log file open). */
  private endRejoin(): void {
    if (this.rejoin?.phase === 'catching_up') this.rejoin.reader.close();
    if (this.rejoin?.phase === 'snapshot') clearTimeout(this.rejoin.timer);
    this.rejoin = undefined;
  }

  /**
   * Catching up -> syncing: once the backup has acked and replayed to near the head, this primary stops
   * releasing at once (outputs wait for acks again). Syncing -> protected: once the ack covers everything
   * released while alone, SYNCED tells the backup it may take over; from then on it is the backup.
   */
  private checkRejoin(): void {
    const rejoin = this.rejoin;
    const peer = this.peer;
    if (!rejoin || !peer?.isOpen || this.role !== 'primary') return;
    const head = this.gate.last_seq;
    if (rejoin.phase === 'snapshot') return;
    if (rejoin.phase === 'catching_up') {
      if (this.sent_seq < head || !this.progress_known) return;
      if (head - this.acked_seq > SYNC_SLACK_ENTRIES || head - this.backup_replayed_seq > SYNC_SLACK_ENTRIES) return;
      // From here frames go out as to any backup, and those not acked yet are kept for a reconnection.
      if (rejoin.transfer) {
        this.retained = rejoin.transfer.tail.unacked();
      } else {
        const rest = this.history.reader(this.acked_seq + 1, head);
        this.retained = rest ? rest.next(Infinity) : [];
        rest?.close();
      }
      this.endRejoin();
      this.rejoin = { phase: 'syncing', released: this.gate.released_seq };
      this.solo = false;
      this.peer_ever = true;
      this.last_heard_ms = performance.now();
      this.retained_bytes = this.retained.reduce((n, f) => n + f.bytes.length, 0);
      this.dropped_seq = this.acked_seq;
      this.unsent = [];
      this.note(`the joining backup is at seq ${this.acked_seq} of ${head}: outputs wait for its acks again until it holds seq ${this.gate.released_seq}`);
      return;
    }
    if (this.acked_seq < rejoin.released) return;
    this.rejoin = undefined;
    peer.send(MessageType.SYNCED, u64Payload(this.acked_seq));
    this.note(`backup ${peer.peer} caught up at seq ${this.acked_seq}: protected again in epoch ${this.epoch}`);
  }

  /** How long ago the first entry the backup has not replayed was sealed here; 0 when it replayed all sent. */
  private replayLagMs(): number {
    if (this.solo || !this.peer_ever || !this.progress_known) return 0;
    const behind = this.sealed.find((f) => f.lastSeq > this.backup_replayed_seq);
    return behind ? performance.now() - behind.ms : 0;
  }

  /** Once per heartbeat interval: throttle the guest and hold input while the backup's replay trails too far. */
  private throttleStep(): void {
    const runner = this.runner;
    if (!runner) return;
    const max = this.options.replay_lag_ms_max ?? REPLAY_LAG_MS_MAX_DEFAULT;
    const lag = this.role === 'primary' && this.peer?.isOpen ? this.replayLagMs() : 0;
    // A joining backup is paced by whether it gains on the log; a following one by how far its replay trails.
    const catchup = this.catchupPacing();
    const over = catchup ?? lag > max;
    const under = catchup === undefined ? lag < max / 2 : !catchup;
    let next = this.throttle_us;
    if (over) next = Math.min(THROTTLE_PAUSE_US_MAX, next > 0 ? next * 2 : THROTTLE_PAUSE_US_FIRST);
    else if (under) next = next >= 2 * THROTTLE_PAUSE_US_FIRST ? Math.floor(next / 2) : 0;
    this.input_held = over;
    if (next === this.throttle_us) return;
    const gap = this.gate.last_seq - this.backup_replayed_seq;
    if (this.throttle_us === 0) {
      this.note(catchup === undefined
        ? `the backup's replay trails by ${Math.round(lag)} ms (replay_lag_ms_max ${max}): throttling the guest and holding input`
        : `the joining backup does not gain on the log (${gap} entries behind): throttling the guest and holding input until it does`);
    }
    if (next === 0) this.note(catchup === undefined ? `the backup's replay caught up (${Math.round(lag)} ms behind): throttle lifted` : `the joining backup gains on the log (${gap} entries behind): throttle lifted`);
    this.throttle_us = next;
    runner.throttle(next, THROTTLE_SLICE);
  }

  /**
   * While a backup catches up (the frames, after any snapshot was sent whole): whether it failed to gain on
   * the log over the pacer's window (hold back), or undefined when no catch-up is being paced.
   */
  private catchupPacing(): boolean | undefined {
    const rejoin = this.rejoin;
    if (rejoin?.phase !== 'catching_up' || this.role !== 'primary' || !this.peer?.isOpen) return undefined;
    if (rejoin.transfer && !rejoin.transfer.sender.done) {
      this.pacer.reset(); // the snapshot is still on its way: nothing to replay yet
      return undefined;
    }
    if (!this.progress_known) return undefined;
    return this.pacer.step(performance.now(), this.gate.last_seq - this.backup_replayed_seq);
  }

  private tick(): void {
    if (this.role !== 'primary') return;
    this.throttleStep();
    if (this.peer?.isOpen) this.peer.send(MessageType.HEARTBEAT, u64Payload(stampNow()));
    if (this.solo) return;
    // Judged after the event loop's next poll: if this process was stopped or starved, what the backup sent
    // meanwhile is read first, instead of counting as silence.
    setImmediate(() => this.judgeBackup());
  }

  private judgeBackup(): void {
    if (this.role !== 'primary' || this.solo) return;
    const now = performance.now();
    if (!this.peer_ever) {
      if (now - this.started_ms > (this.options.backup_wait_ms ?? BACKUP_WAIT_MS_DEFAULT)) this.backupLost('no backup connected within backup_wait_ms');
      return;
    }
    if (now - this.last_heard_ms > this.timeout_ms) this.backupLost(`nothing heard from the backup for ${Math.round(now - this.last_heard_ms)} ms`);
  }

  /** VMware FT's race for the bit: claim the next epoch before letting any more output out; lose and halt. */
  private backupLost(why: string): void {
    if (this.role !== 'primary' || this.solo) return;
    this.role = 'claiming';
    this.note(`backup lost (${why}): claiming epoch ${this.epoch + 1}`);
    this.peer?.close(`backup lost: ${why}`);
    void this.claimNext().catch((error: Error) => this.halt(`could not claim epoch ${this.epoch + 1}: ${error.message}`));
  }

  private async claimNext(): Promise<void> {
    const arbiter = this.options.arbiter;
    const current = await arbiter.current();
    if ((current?.epoch ?? 0) !== this.epoch) {
      return this.halt(`epoch ${current?.epoch} is held by ${current?.nodeId}: this primary (epoch ${this.epoch}) is stale`);
    }
    const result = await arbiter.claim(this.epoch + 1, this.nodeId);
    if (!result.won) return this.halt(`lost epoch ${this.epoch + 1} to ${result.holder.nodeId}`);
    if (this.role !== 'claiming') return;
    this.epoch = this.epoch + 1;
    this.solo = true;
    this.role = 'primary';
    this.endRejoin();
    this.retained = [];
    this.retained_bytes = 0;
    this.note(`won epoch ${this.epoch}: going on without a backup`);
    this.releaseAcked();
    this.emit('live', this.epoch);
  }

}

/** Starts a primary: epoch won, replication and client listeners bound, guest running. */
/** Starts a primary; a bad option rejects the promise (it never throws synchronously). */
export async function startPrimary(options: PrimaryOptions): Promise<Primary> {
  return startNode(new Primary(options));
}
