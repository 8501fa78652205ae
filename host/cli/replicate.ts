// `ftwasm primary`, `ftwasm backup` and `ftwasm load`: the replication roles as processes, and a client load
// that checks exactly-once, in-order delivery across failovers (kv guest, INCR on one key per session).
import { readFileSync } from 'node:fs';
import { openArbiter } from '../arbiter/index.ts';
import { FtClient, parseAddress } from '../net/index.ts';
import { startBackup, startPrimary, type Backup, type Primary } from '../replication/index.ts';
import { loadGuest } from './guest.ts';

interface RoleOptions {
  clients: string;
  arbiter: string;
  secretFile: string;
  deployment?: string;
  heartbeatMs?: string;
  timeoutMs?: string;
}

export interface PrimaryCommandOptions extends RoleOptions {
  replication: string;
  backupWaitMs?: string;
}

export interface BackupCommandOptions extends RoleOptions {
  primary: string;
  connectTimeoutMs?: string;
}

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

/** Runs until the node halts (exit 2), its guest ends (exit 0), or SIGTERM/SIGINT (exit 0). */
async function runNode(role: string, node: Primary | Backup): Promise<void> {
  const outcome = await new Promise<{ code: number; why: string }>((resolve) => {
    node.once('halted', (reason) => resolve({ code: 2, why: `halted: ${reason}` }));
    node.once('exited', (result) => resolve({ code: 0, why: `guest ended (${result.exit}, icount ${result.icount})` }));
    process.once('SIGTERM', () => resolve({ code: 0, why: 'SIGTERM' }));
    process.once('SIGINT', () => resolve({ code: 0, why: 'SIGINT' }));
  });
  process.stderr.write(`${role}: ${outcome.why}\n`);
  // A guest that ended still has outputs to release and a log tail to ship: give it a moment.
  if (outcome.why.startsWith('guest ended')) await new Promise((r) => setTimeout(r, 500));
  await node.close();
  process.exitCode = outcome.code;
}

export async function primaryCommand(path: string, opts: PrimaryCommandOptions): Promise<void> {
  const guest = loadGuest(path);
  const clients = parseAddress(opts.clients);
  const replication = parseAddress(opts.replication);
  const arbiter = await openArbiter(opts.arbiter, { deployment: opts.deployment ?? 'default' });
  const backupWait = intOption(opts.backupWaitMs, 'backup-wait-ms');
  const node = await startPrimary({
    module: guest.module,
    arbiter,
    secret: readSecret(opts.secretFile),
    clients: { host: clients.host, port: clients.port },
    replication: { host: replication.host, port: replication.port },
    ...timing(opts),
    ...(backupWait !== undefined ? { backup_wait_ms: backupWait } : {}),
    onEvent: (text) => process.stderr.write(`primary: ${text}\n`),
  });
  const c = node.clientAddress();
  const r = node.replicationAddress();
  process.stderr.write(`primary: ready in epoch ${node.state().epoch}, clients ${c.host}:${c.port}, replication ${r.host}:${r.port}\n`);
  try {
    await runNode('primary', node);
  } finally {
    await arbiter.close();
  }
}

export async function backupCommand(path: string, opts: BackupCommandOptions): Promise<void> {
  const guest = loadGuest(path);
  const clients = parseAddress(opts.clients);
  const primary = parseAddress(opts.primary);
  const arbiter = await openArbiter(opts.arbiter, { deployment: opts.deployment ?? 'default' });
  const connectTimeout = intOption(opts.connectTimeoutMs, 'connect-timeout-ms');
  const node = await startBackup({
    module: guest.module,
    arbiter,
    secret: readSecret(opts.secretFile),
    clients: { host: clients.host, port: clients.port },
    primary: { host: primary.host, port: primary.port },
    ...timing(opts),
    ...(connectTimeout !== undefined ? { connect_timeout_ms: connectTimeout } : {}),
    onEvent: (text) => process.stderr.write(`backup: ${text}\n`),
  });
  const c = node.clientAddress();
  process.stderr.write(`backup: ready, following ${opts.primary}, clients ${c.host}:${c.port}\n`);
  node.on('live', (epoch) => process.stderr.write(`backup: LIVE as primary in epoch ${epoch}\n`));
  try {
    await runNode('backup', node);
  } finally {
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
  const one = async (index: number): Promise<void> => {
    const client = new FtClient({ servers, backoff_ms_max: 200, retries_max: 100, request_timeout_ms: 2_000 });
    client.on('error', () => undefined);
    const seen = new Set<number>();
    let highest = 0;
    let done!: () => void;
    const finished = new Promise<void>((resolve) => (done = resolve));
    client.on('output', (_seq, payload) => {
      verdict.responses += 1;
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
  process.stdout.write(`${JSON.stringify(verdict)}\n`);
  if (verdict.lost + verdict.duplicated + verdict.out_of_order > 0) process.exitCode = 1;
}
