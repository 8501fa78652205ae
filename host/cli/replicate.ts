// `ftwasm primary`, `ftwasm backup` and `ftwasm load`: the replication roles as processes, and a client load
// that checks exactly-once, in-order delivery across failovers (kv guest, INCR on one key per session).
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { openArbiter } from '../arbiter/index.ts';
import { FtClient, parseAddress } from '../net/index.ts';
import { FileHistory, LogArchive, nodeMetrics, serveMetrics, startBackup, startPrimary, type Backup, type LogHistory, type Primary } from '../replication/index.ts';
import type { GuestSnapshot, RunnerResult } from '../vm/index.ts';
import { decodeTransfer } from '../replication/index.ts';
import { encodeSnapshot } from '../vm/index.ts';
import { FTWASM_VERSION, loadGuestFor } from './guest.ts';

interface RoleOptions {
  clients: string;
  arbiter: string;
  secretFile: string;
  deployment?: string;
  heartbeatMs?: string;
  timeoutMs?: string;
  log?: string;
  metrics?: string;
  stateTransfer?: boolean;
  logSegmentMb?: string;
  logSegments?: string;
  /** host:port clients should use for this node (default: --clients unless a wildcard). */
  advertise?: string;
}

/** --log-segment-mb / --log-segments: segments need snapshots, so --state-transfer too. */
function logRotation(opts: RoleOptions): LogRotation | undefined {
  const mb = intOption(opts.logSegmentMb, 'log-segment-mb');
  const keep = intOption(opts.logSegments, 'log-segments');
  if (mb === undefined) {
    if (keep !== undefined) throw new Error('--log-segments needs --log-segment-mb');
    return undefined;
  }
  if (opts.log === undefined) throw new Error('--log-segment-mb needs --log FILE');
  if (!opts.stateTransfer) throw new Error('--log-segment-mb needs --state-transfer: each segment starts with a snapshot of the guest');
  if (mb < 1 || mb > 1024) throw new Error(`--log-segment-mb must be in 1..1024, got ${mb}`);
  if (keep !== undefined && (keep < 1 || keep > 1000)) throw new Error(`--log-segments must be in 1..1000, got ${keep}`);
  return { segment_bytes: mb << 20, keep: keep ?? LOG_SEGMENTS_DEFAULT };
}

export const LOG_SEGMENTS_DEFAULT = 3;

export interface PrimaryCommandOptions extends RoleOptions {
  replication: string;
  backupWaitMs?: string;
  replayLagMsMax?: string;
}

export interface BackupCommandOptions extends RoleOptions {
  primary: string;
  connectTimeoutMs?: string;
  replication?: string;
}

/** A live node stopped by a signal: time for its guest to return after its input closes. */
const FINISH_WAIT_MS = 10_000;
/** Then time for the backup (if any) to ack the log's tail, so that the last outputs go out. */
const DRAIN_WAIT_MS = 2_000;

/** The secret file's bytes, without a trailing newline (so `echo ... > F` works). */
function readSecret(path: string): Uint8Array {
  let bytes = readFileSync(path);
  while (bytes.length > 0 && (bytes[bytes.length - 1] === 0x0a || bytes[bytes.length - 1] === 0x0d)) bytes = bytes.subarray(0, bytes.length - 1);
  return new Uint8Array(bytes);
}

function intOption(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} must be a non-negative integer, got ${JSON.stringify(value)}`);
  return n;
}

function timing(opts: RoleOptions): { heartbeat_interval_ms?: number; heartbeat_timeout_ms?: number } {
  const interval = intOption(opts.heartbeatMs, 'heartbeat-ms');
  const timeout = intOption(opts.timeoutMs, 'timeout-ms');
  return { ...(interval !== undefined ? { heartbeat_interval_ms: interval } : {}), ...(timeout !== undefined ? { heartbeat_timeout_ms: timeout } : {}) };
}

/** `--log-segment-mb` / `--log-segments`: a new segment after this many bytes, and how many are kept. */
export interface LogRotation {
  segment_bytes: number;
  keep: number;
}

/** Frames held while a rotation waits for its snapshot; past it the rotation is given up (bounded memory). */
const ROTATION_BUFFER_BYTES_MAX = 64 << 20;
/** How long a rotation waits for the guest to reach a recv. */
const ROTATION_WAIT_MS = 10_000;

/**
 * `--log FILE`: the node's log as ftwasm log files, streamed frame by frame (ftwasm replay reads them). A
 * write error stops the archive (the node runs on) and is reported; the final line then says so.
 *
 * With a module prepared for snapshots and `rotation`, the log is cut into segments: once the current one
 * passes segment_bytes, the node's guest is snapshot at its next recv, the snapshot goes to FILE.k.snapshot
 * and the log after it to FILE.k (k = 1, 2, ...). Only the newest `keep` segments stay on disk, each one
 * replayable on its own (`ftwasm replay --snapshot FILE.k.snapshot --log FILE.k`). Frames sealed while the
 * snapshot is on its way wait in memory (bounded), so each segment ends exactly where its successor's
 * snapshot was taken.
 */
class NodeLog {
  private archive: LogArchive | undefined;
  private failure: string | undefined;
  private segment = 0;
  private rotating: { frames: Array<{ bytes: Uint8Array; firstSeq: number; lastSeq: number }>; bytes: number; timer: NodeJS.Timeout } | undefined;
  /** Set once the node runs: a snapshot of its guest, when it may be taken for a rotation now. */
  private snapshotSource: (() => Promise<GuestSnapshot> | undefined) | undefined;

  constructor(
    private readonly role: string,
    private readonly base: string | undefined,
    private readonly moduleHash: Uint8Array,
    private readonly rotation?: LogRotation,
  ) {
    if (base !== undefined) this.archive = LogArchive.create(base, { moduleHash, ftwasmVersion: FTWASM_VERSION });
  }

  get path(): string | undefined {
    return this.archive?.path;
  }

  /** With --log (and no state transfer), a joining backup is caught up from this file rather than from a copy of the log in memory. */
  history(stateTransfer: boolean | undefined): { history: LogHistory } | Record<string, never> {
    return this.archive && !stateTransfer ? { history: new FileHistory(this.archive) } : {};
  }

  /** Rotation needs snapshots of the node's guest: `take` gives one, or undefined when none may be taken now. */
  rotateWith(take: () => Promise<GuestSnapshot> | undefined): void {
    this.snapshotSource = take;
  }

  private segmentPath(k: number): string {
    return k === 0 ? this.base! : `${this.base}.${k}`;
  }

  /**
   * A backup restored from a snapshot: the guest's snapshot goes beside the log (FILE.snapshot, for
   * `ftwasm replay --snapshot`), and the file's log starts after it.
   */
  readonly onSnapshot = (transfer: Uint8Array, lastSeq: number): void => {
    if (this.archive === undefined || this.failure !== undefined) return;
    const t = decodeTransfer(transfer);
    try {
      if (typeof t === 'string') throw new Error(t);
      writeFileSync(`${this.archive.path}.snapshot`, Buffer.concat(encodeSnapshot(t.snapshot)), { flag: 'wx' });
      this.archive.startAt(lastSeq + 1);
      process.stderr.write(`${this.role}: --log ${this.archive.path} starts at seq ${lastSeq + 1}, after the snapshot in ${this.archive.path}.snapshot\n`);
    } catch (error) {
      this.stop(error as Error);
    }
  };

  readonly onLogFrames = (frames: Uint8Array, firstSeq: number, lastSeq: number): void => {
    if (this.archive === undefined || this.failure !== undefined) return;
    const r = this.rotating;
    if (r) {
      r.frames.push({ bytes: frames, firstSeq, lastSeq });
      r.bytes += frames.length;
      if (r.bytes > ROTATION_BUFFER_BYTES_MAX) this.giveUpRotation(`more than ${ROTATION_BUFFER_BYTES_MAX} bytes of log came while waiting for the snapshot`);
      return;
    }
    try {
      this.archive.append(frames, firstSeq, lastSeq);
    } catch (error) {
      return this.stop(error as Error);
    }
    if (this.rotation && this.archive.bytesWritten >= this.rotation.segment_bytes) this.rotate();
  };

  private stop(error: Error): void {
    this.failure = error.message;
    process.stderr.write(`${this.role}: --log ${this.archive?.path} stopped: ${this.failure}\n`);
  }

  private rotate(): void {
    const taking = this.snapshotSource?.();
    if (taking === undefined) return; // not now (a backup that is not live): the segment grows on
    const timer = setTimeout(() => this.giveUpRotation(`the guest reached no recv within ${ROTATION_WAIT_MS} ms`), ROTATION_WAIT_MS);
    this.rotating = { frames: [], bytes: 0, timer };
    taking.then(
      (snapshot) => this.rotated(snapshot),
      (error: Error) => this.giveUpRotation(error.message),
    );
  }

  /** No new segment: the frames held meanwhile go to the current one, which grows on (no rotation again). */
  private giveUpRotation(why: string): void {
    const r = this.rotating;
    if (!r) return;
    clearTimeout(r.timer);
    this.rotating = undefined;
    this.noMoreSegments(why, r.frames);
  }

  private noMoreSegments(why: string, held: ReadonlyArray<{ bytes: Uint8Array; firstSeq: number; lastSeq: number }>): void {
    process.stderr.write(`${this.role}: --log: no new segment (${why}); ${this.archive?.path} goes on\n`);
    this.rotation!.segment_bytes = Number.MAX_SAFE_INTEGER;
    for (const f of held) this.onLogFrames(f.bytes, f.firstSeq, f.lastSeq);
  }

  private rotated(snapshot: GuestSnapshot): void {
    const r = this.rotating;
    if (!r || this.archive === undefined) return;
    clearTimeout(r.timer);
    this.rotating = undefined;
    const old = this.archive;
    const mine = r.frames.filter((f) => f.lastSeq <= snapshot.lastSeq);
    const next = r.frames.filter((f) => f.lastSeq > snapshot.lastSeq);
    try {
      for (const f of mine) old.append(f.bytes, f.firstSeq, f.lastSeq);
      // A snapshot taken where no frame ends (a replaying guest) cannot start a segment.
      if (old.lastSeq !== snapshot.lastSeq || (next.length > 0 && next[0]!.firstSeq !== snapshot.lastSeq + 1)) {
        return this.noMoreSegments(`the snapshot at seq ${snapshot.lastSeq} is not at the end of a frame`, next);
      }
      old.close();
      const k = this.segment + 1;
      const path = this.segmentPath(k);
      writeFileSync(`${path}.snapshot`, Buffer.concat(encodeSnapshot(snapshot)), { flag: 'wx' });
      const archive = LogArchive.create(path, { moduleHash: this.moduleHash, ftwasmVersion: FTWASM_VERSION });
      archive.startAt(snapshot.lastSeq + 1);
      this.archive = archive;
      this.segment = k;
      for (const f of next) archive.append(f.bytes, f.firstSeq, f.lastSeq);
      const gone = k - this.rotation!.keep;
      if (gone >= 0) {
        rmSync(this.segmentPath(gone), { force: true });
        rmSync(`${this.segmentPath(gone)}.snapshot`, { force: true });
      }
      process.stderr.write(`${this.role}: --log segment ${path} from seq ${snapshot.lastSeq + 1}, after the snapshot in ${path}.snapshot${gone >= 0 ? `; removed ${this.segmentPath(gone)}` : ''}\n`);
    } catch (error) {
      this.stop(error as Error);
    }
  }

  /** Closes the file; a description of what it holds, for the final line. */
  close(lastSeq: number | undefined): string {
    const archive = this.archive;
    if (archive === undefined) return '';
    if (this.rotating) this.giveUpRotation('the node stopped');
    try {
      archive.close();
    } catch (error) {
      this.failure ??= (error as Error).message;
    }
    if (this.failure !== undefined) return `, log ${archive.path} INCOMPLETE (${this.failure})`;
    if (lastSeq !== undefined && archive.lastSeq !== lastSeq) return `, log ${archive.path} INCOMPLETE (ends at seq ${archive.lastSeq})`;
    const after = archive.firstSeq > 1 ? `, after the snapshot in ${archive.path}.snapshot` : '';
    return `, log ${archive.path} (${archive.bytesWritten} bytes, seq ${archive.firstSeq}..${archive.lastSeq}${after})`;
  }
}

function waitFor<T>(promise: Promise<T>, timeout_ms: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([promise, new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), timeout_ms)))]).finally(() => clearTimeout(timer));
}

/** `--metrics HOST:PORT`: Prometheus metrics of the node (and of this process) at GET /metrics. */
async function startMetrics(role: string, node: Primary | Backup, address: string | undefined): Promise<(() => Promise<void>) | undefined> {
  if (address === undefined) return undefined;
  const at = parseAddress(address, { listen: true });
  const server = await serveMetrics(nodeMetrics(node, { processMetrics: true }), { host: at.host, port: at.port });
  const a = server.address();
  process.stderr.write(`${role}: metrics at http://${a.host}:${a.port}/metrics\n`);
  return server.close;
}

async function untilState(node: Primary | Backup, cond: () => boolean, timeout_ms: number): Promise<void> {
  const deadline = Date.now() + timeout_ms;
  while (!cond() && Date.now() < deadline && node.state().role === 'primary') await new Promise((r) => setTimeout(r, 10));
}

/**
 * Runs until the node halts (exit 2), its guest ends (exit 0), or SIGTERM/SIGINT (exit 0). A live node
 * stopped by a signal first closes its guest's input and waits (bounded) for the guest to return. Whenever
 * the guest's result is known, the last lines are `ROLE: final state <state hash> icount <n> last seq <m>` (after
 * the --log file is complete and closed) and `ROLE: released up to seq <n>, <k> outputs`.
 */
async function runNode(role: string, node: Primary | Backup, log: NodeLog): Promise<void> {
  const exited = new Promise<RunnerResult>((resolve) => node.once('exited', resolve));
  const outcome = await new Promise<{ code: number; why: string; signal: boolean }>((resolve) => {
    node.once('halted', (reason) => resolve({ code: 2, why: `halted: ${reason}`, signal: false }));
    void exited.then((result) => resolve({ code: 0, why: `guest ended (${result.exit}, icount ${result.icount})`, signal: false }));
    process.once('SIGTERM', () => resolve({ code: 0, why: 'SIGTERM', signal: true }));
    process.once('SIGINT', () => resolve({ code: 0, why: 'SIGINT', signal: true }));
  });
  if (outcome.code !== 2) process.stderr.write(`${role}: ${outcome.why}\n`); // a halt was noted already
  let result = node.guestResult;
  if (outcome.signal && result === undefined && node.state().role === 'primary') {
    node.closeInput();
    const r = await waitFor(exited, FINISH_WAIT_MS);
    if (r === 'timeout') process.stderr.write(`${role}: the guest did not return within ${FINISH_WAIT_MS} ms of its input closing\n`);
    else result = r;
  }
  // A guest that ended still has outputs to release and a log tail to ship: give it a bounded moment.
  if (result !== undefined) {
    await untilState(node, () => node.state().held_outputs === 0, DRAIN_WAIT_MS);
    if (outcome.why.startsWith('guest ended')) await new Promise((r) => setTimeout(r, 500));
  }
  const state = node.state();
  await node.close(); // the guest is stopped: no frame comes after this
  const logNote = log.close(result?.lastSeq);
  if (result !== undefined) {
    process.stderr.write(`${role}: final state ${Buffer.from(result.stateHash).toString('hex')} icount ${result.icount} last seq ${result.lastSeq}${logNote}\n`);
  } else if (log.path !== undefined) {
    process.stderr.write(`${role}: no final state (the guest did not end)${logNote}\n`);
  }
  process.stderr.write(`${role}: released up to seq ${state.released_seq}, ${state.outputs_released} outputs, epoch ${state.epoch}\n`);
  process.exitCode = outcome.code;
}

export async function primaryCommand(path: string, opts: PrimaryCommandOptions): Promise<void> {
  const guest = await loadGuestFor(path, opts.stateTransfer);
  const clients = parseAddress(opts.clients, { listen: true });
  const replication = parseAddress(opts.replication, { listen: true });
  const backupWait = intOption(opts.backupWaitMs, 'backup-wait-ms');
  const replayLagMax = intOption(opts.replayLagMsMax, 'replay-lag-ms-max');
  const log = new NodeLog('primary', opts.log, guest.moduleHash, logRotation(opts));
  const arbiter = await openArbiter(opts.arbiter, { deployment: opts.deployment ?? 'default' });
  const node = await startPrimary({
    module: guest.module,
    module_hash: guest.moduleHash,
    arbiter,
    secret: readSecret(opts.secretFile),
    clients: { host: clients.host, port: clients.port, ...(opts.advertise !== undefined ? { advertise: opts.advertise } : {}) },
    replication: { host: replication.host, port: replication.port },
    ...timing(opts),
    ...(backupWait !== undefined ? { backup_wait_ms: backupWait } : {}),
    ...(replayLagMax !== undefined ? { replay_lag_ms_max: replayLagMax } : {}),
    ...log.history(opts.stateTransfer),
    onEvent: (text) => process.stderr.write(`primary: ${text}\n`),
    onLogFrames: log.onLogFrames,
  });
  log.rotateWith(() => node.snapshot());
  const c = node.clientAddress();
  const r = node.replicationAddress();
  process.stderr.write(`primary: ready in epoch ${node.state().epoch}, clients ${c.host}:${c.port}, replication ${r.host}:${r.port}, arbiter ${arbiter.where}\n`);
  let closeMetrics: (() => Promise<void>) | undefined;
  try {
    closeMetrics = await startMetrics('primary', node, opts.metrics);
    await runNode('primary', node, log);
  } finally {
    await node.close();
    await closeMetrics?.();
    await arbiter.close();
  }
}

export async function backupCommand(path: string, opts: BackupCommandOptions): Promise<void> {
  const guest = await loadGuestFor(path, opts.stateTransfer);
  const clients = parseAddress(opts.clients, { listen: true });
  const primary = parseAddress(opts.primary);
  const connectTimeout = intOption(opts.connectTimeoutMs, 'connect-timeout-ms');
  const replication = opts.replication !== undefined ? parseAddress(opts.replication, { listen: true }) : undefined;
  const log = new NodeLog('backup', opts.log, guest.moduleHash, logRotation(opts));
  const arbiter = await openArbiter(opts.arbiter, { deployment: opts.deployment ?? 'default' });
  const node = await startBackup({
    module: guest.module,
    module_hash: guest.moduleHash,
    arbiter,
    secret: readSecret(opts.secretFile),
    clients: { host: clients.host, port: clients.port, ...(opts.advertise !== undefined ? { advertise: opts.advertise } : {}) },
    primary: { host: primary.host, port: primary.port },
    ...timing(opts),
    ...(connectTimeout !== undefined ? { connect_timeout_ms: connectTimeout } : {}),
    ...(replication ? { replication: { host: replication.host, port: replication.port }, ...log.history(opts.stateTransfer) } : {}),
    onEvent: (text) => process.stderr.write(`backup: ${text}\n`),
    onLogFrames: log.onLogFrames,
    onSnapshot: log.onSnapshot,
  });
  // A following backup's log is the primary's frames, which a snapshot of its replay need not end: segments
  // start once it is live and records.
  log.rotateWith(() => (node.state().role === 'primary' ? node.snapshot() : undefined));
  const c = node.clientAddress();
  process.stderr.write(`backup: ready, following ${opts.primary}, clients ${c.host}:${c.port}, arbiter ${arbiter.where}\n`);
  node.on('live', (epoch) => process.stderr.write(`backup: LIVE as primary in epoch ${epoch}\n`));
  let closeMetrics: (() => Promise<void>) | undefined;
  try {
    closeMetrics = await startMetrics('backup', node, opts.metrics);
    await runNode('backup', node, log);
  } finally {
    await node.close();
    await closeMetrics?.();
    await arbiter.close();
  }
}

const OUTSTANDING_MAX = 256;

export interface LoadOptions {
  servers: string;
  sessions: string;
  requests: string;
  intervalMs?: string;
  timeoutMs?: string;
  /** false with --no-discover. */
  discover?: boolean;
}

export interface LoadVerdict {
  sent: number;
  responses: number;
  lost: number;
  duplicated: number;
  out_of_order: number;
}

/**
 * N sessions, each sending M `INCR <key>` requests on a key of its own. A faithful system answers each
 * session VALUE 1, 2, ..., M exactly in order: a repeated value is a duplicated output, a value beyond M
 * (or a skipped one) a request run twice, a smaller one out of order, a missing one lost.
 */
export async function loadCommand(opts: LoadOptions): Promise<void> {
  const servers = opts.servers.split(',').map((s) => s.trim()).filter((s) => s !== '');
  const sessions = intOption(opts.sessions, 'sessions') ?? 1;
  const requests = intOption(opts.requests, 'requests') ?? 1;
  const interval_ms = intOption(opts.intervalMs, 'interval-ms') ?? 0;
  const timeout_ms = intOption(opts.timeoutMs, 'timeout-ms') ?? 60_000;
  if (sessions < 1 || sessions > 1024) throw new Error('--sessions must be in 1..1024');
  if (requests < 1 || requests > 1_000_000) throw new Error('--requests must be in 1..1000000');
  const run = `${process.pid}-${Date.now()}`;
  const verdict: LoadVerdict = { sent: 0, responses: 0, lost: 0, duplicated: 0, out_of_order: 0 };
  const deadline = Date.now() + timeout_ms;
  let progress = 0;
  // Outputs by the epoch of the primary the session was connected to when each arrived (informational).
  const byEpoch: Record<number, number> = {};
  const one = async (index: number): Promise<void> => {
    const client = new FtClient({ servers, backoff_ms_max: 200, retries_max: 100, request_timeout_ms: 2_000, discover: opts.discover !== false });
    if (index === 1) client.on('discovered', (addresses) => process.stderr.write(`load: the primary named ${addresses.join(', ')}: tried too from now on\n`));
    // A session that fails for good (its requests then count as lost) says why, once.
    client.on('error', (error) => process.stderr.write(`load: session ${index} failed: ${error.message}\n`));
    const seen = new Set<number>();
    let highest = 0;
    let done!: () => void;
    const finished = new Promise<void>((resolve) => (done = resolve));
    client.on('output', (_seq, payload) => {
      verdict.responses += 1;
      const epoch = client.stats().epoch;
      byEpoch[epoch] = (byEpoch[epoch] ?? 0) + 1;
      const match = /^VALUE (\d+)\n$/.exec(new TextDecoder().decode(payload));
      const value = match ? Number(match[1]) : NaN;
      if (!Number.isInteger(value) || seen.has(value) || value > requests) verdict.duplicated += 1;
      else if (value < highest) verdict.out_of_order += 1;
      if (Number.isInteger(value)) seen.add(value);
      highest = Math.max(highest, value || 0);
      if (++progress % 100 === 0) process.stderr.write(`load: ${progress} responses\n`);
      if (seen.size >= requests) done();
    });
    const key = `load-${run}-${index}`;
    // At most OUTSTANDING_MAX requests not yet accepted: the client's queue is bounded too.
    let outstanding = 0;
    for (let i = 0; i < requests && Date.now() < deadline; i++) {
      while (outstanding >= OUTSTANDING_MAX && Date.now() < deadline) await new Promise((r) => setTimeout(r, 2));
      verdict.sent += 1;
      outstanding += 1;
      void client
        .request(new TextEncoder().encode(`INCR ${key}`))
        .catch(() => undefined)
        .finally(() => (outstanding -= 1));
      if (interval_ms > 0) await new Promise((r) => setTimeout(r, interval_ms));
    }
    const left = deadline - Date.now();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([finished, new Promise<void>((r) => (timer = setTimeout(r, Math.max(0, left))))]);
    clearTimeout(timer);
    for (let v = 1; v <= requests; v++) if (!seen.has(v)) verdict.lost += 1;
    await client.close().catch(() => undefined);
  };
  await Promise.all(Array.from({ length: sessions }, (_, i) => one(i + 1)));
  process.stderr.write(`load: outputs by epoch ${JSON.stringify(byEpoch)}\n`);
  process.stdout.write(`${JSON.stringify(verdict)}\n`);
  if (verdict.lost + verdict.duplicated + verdict.out_of_order > 0) process.exitCode = 1;
}
