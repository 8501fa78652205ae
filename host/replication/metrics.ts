// Prometheus metrics of a primary or backup (prom-client): what `state()` and the client server say, read at
// scrape time, plus an optional HTTP endpoint for them (`ftwasm primary|backup --metrics HOST:PORT`).
import http from 'node:http';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { checkLoopback } from './primary.ts';
import type { ReplicaRole, ReplicaState } from './primary.ts';
import { ReplicationError } from './errors.ts';

/** What the metrics read from a node: Primary and Backup both have it. */
export interface MeteredNode {
  state(): ReplicaState;
  clientStats(): ClientStats | undefined;
}

export interface ClientStats {
  connections: number;
  sessions: number;
  buffered_outputs: number;
  outputs_evicted_unacked: number;
}

export interface NodeMetricsOptions {
  /** Where to register; default a new Registry. */
  registry?: Registry;
  /** Also prom-client's process metrics (CPU, memory, event-loop lag, ...). Default false. */
  processMetrics?: boolean;
  /** Constant labels on every metric (for example `{ node: 'a' }` when several nodes share a registry). */
  labels?: Record<string, string>;
}

const ROLES: readonly ReplicaRole[] = ['primary', 'backup', 'claiming', 'halted', 'closed'];

/**
 * Registers the metrics of `node` and returns the registry. Every value is read from the node when the
 * registry is scraped, so nothing is counted twice and nothing runs between scrapes.
 */
export function nodeMetrics(node: MeteredNode, options: NodeMetricsOptions = {}): Registry {
  const registry = options.registry ?? new Registry();
  if (options.labels) registry.setDefaultLabels(options.labels);
  if (options.processMetrics) collectDefaultMetrics({ register: registry, prefix: 'ftwasm_' });
  const registers = [registry];
  // One scrape reads the node once: prom-client runs every collect() of a scrape in one synchronous stretch,
  // so they all see the same snapshot, dropped right after.
  let snapshot: { state: ReplicaState; clients: ClientStats | undefined } | undefined;
  const read = () => {
    if (snapshot === undefined) {
      snapshot = { state: node.state(), clients: node.clientStats() };
      queueMicrotask(() => (snapshot = undefined));
    }
    return snapshot;
  };

  const gauge = (name: string, help: string, value: (s: ReplicaState) => number | undefined) =>
    new Gauge({
      name,
      help,
      registers,
      collect() {
        const v = value(read().state);
        if (v !== undefined) this.set(v);
      },
    });
  new Gauge({
    name: 'ftwasm_role',
    help: 'The role this node is in now: 1 for the current role, 0 for the others.',
    labelNames: ['role'],
    registers,
    collect() {
      const role = read().state.role;
      for (const r of ROLES) this.set({ role: r }, r === role ? 1 : 0);
    },
  });
  gauge('ftwasm_epoch', 'Epoch this node serves (primary) or follows (backup).', (s) => s.epoch);
  gauge('ftwasm_log_last_seq', 'Seq of the last log entry this node holds.', (s) => s.last_seq);
  gauge('ftwasm_log_acked_seq', 'Primary: highest seq the backup acknowledged. Backup: highest seq received and acknowledged.', (s) => s.acked_seq);
  gauge('ftwasm_log_released_seq', 'Highest seq whose outputs were released to clients (on a backup: as the primary announced).', (s) => s.released_seq);
  gauge('ftwasm_lag_entries', 'Primary: entries recorded, not yet acknowledged. Backup: entries received, not yet handed to the replaying guest.', (s) => s.lag_entries);
  gauge('ftwasm_held_outputs', 'Outputs held by the output rule (waiting for an acknowledgement).', (s) => s.held_outputs);
  gauge('ftwasm_sessions_counted', 'Client sessions whose requests the log bookkeeping counts (dropped sessions are forgotten).', (s) => s.sessions_counted);
  gauge('ftwasm_solo', '1 when this primary went on without a backup.', (s) => (s.solo ? 1 : 0));
  gauge('ftwasm_peer_connected', '1 while the log channel to the peer is up.', (s) => (s.peer_connected ? 1 : 0));
  gauge('ftwasm_guest_exited', '1 once the guest returned.', (s) => (s.guest_exited ? 1 : 0));
  gauge('ftwasm_replay_lag_ms', "Primary: how far the backup's replay trails, in ms of recording.", (s) => s.replay_lag_ms);
  gauge('ftwasm_throttle_pause_us', 'Primary: the pause at each check-in while the guest is throttled (0: not throttled).', (s) => s.throttle_pause_us);
  gauge('ftwasm_synced', 'Backup: 1 once the primary said SYNCED (it may take over); a backup that joined a node that was alone is 0 while it catches up.', (s) => (s.synced === undefined ? undefined : s.synced ? 1 : 0));
  new Gauge({
    name: 'ftwasm_rejoin',
    help: 'Primary: a joining backup waits for a snapshot of the guest (phase="snapshot", state transfer), is being caught up (phase="catching_up") or synced (phase="syncing"): 1 for the current phase, else 0.',
    labelNames: ['phase'],
    registers,
    collect() {
      const phase = read().state.rejoin;
      for (const p of ['snapshot', 'catching_up', 'syncing'] as const) this.set({ phase: p }, p === phase ? 1 : 0);
    },
  });
  gauge('ftwasm_restored_seq', 'Backup: the log seq of the snapshot it was restored from (state transfer); 0 when it replayed from seq 1.', (s) => s.restored_seq ?? 0);
  const clientGauge = (name: string, help: string, value: (c: ClientStats) => number) =>
    new Gauge({
      name,
      help,
      registers,
      collect() {
        const c = read().clients;
        if (c) this.set(value(c));
      },
    });
  clientGauge('ftwasm_client_connections', 'Client connections open.', (c) => c.connections);
  clientGauge('ftwasm_client_sessions', 'Client sessions known.', (c) => c.sessions);
  clientGauge('ftwasm_client_buffered_outputs', 'Outputs kept for clients that have not acknowledged them.', (c) => c.buffered_outputs);
  // Counters: the node keeps totals, a scrape adds what grew since the last one.
  const counter = (name: string, help: string, value: () => number) => {
    let reported = 0;
    return new Counter({
      name,
      help,
      registers,
      collect() {
        const v = value();
        if (v > reported) this.inc(v - reported);
        reported = Math.max(reported, v);
      },
    });
  };
  counter('ftwasm_outputs_released_total', 'Outputs handed to clients.', () => read().state.outputs_released);
  counter('ftwasm_client_outputs_evicted_unacked_total', 'Outputs dropped from a full session buffer before the client acknowledged them.', () => read().clients?.outputs_evicted_unacked ?? 0);
  return registry;
}

export interface MetricsServerOptions {
  host?: string;
  port?: number;
  allowNonLoopback?: boolean;
}

/** Most scrapes served at once; more wait in the listen backlog. */
const METRICS_CONNECTIONS_MAX = 16;
const METRICS_REQUEST_TIMEOUT_MS = 5_000;

/**
 * Serves `registry` at GET /metrics over HTTP (127.0.0.1 unless told otherwise); any other path is 404, any
 * other method 405. Resolves once listening.
 */
export async function serveMetrics(registry: Registry, options: MetricsServerOptions = {}): Promise<{ address(): { host: string; port: number }; close(): Promise<void> }> {
  const host = options.host ?? '127.0.0.1';
  checkLoopback(host, options.allowNonLoopback, 'the metrics endpoint');
  const server = http.createServer({ requestTimeout: METRICS_REQUEST_TIMEOUT_MS, headersTimeout: METRICS_REQUEST_TIMEOUT_MS, maxHeaderSize: 8192 }, (req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (path !== '/metrics') return void res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics\n');
    if (req.method !== 'GET' && req.method !== 'HEAD') return void res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('method not allowed\n');
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(req.method === 'HEAD' ? undefined : text),
      (error: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics failed: ${error.message}\n`),
    );
  });
  server.maxConnections = METRICS_CONNECTIONS_MAX;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) => reject(new ReplicationError('FTW_REPL_OPTION', `cannot serve metrics on ${host}:${options.port ?? 0}: ${e.message}`, { cause: e })));
    server.listen(options.port ?? 0, host, () => resolve());
  });
  return {
    address() {
      const a = server.address();
      if (!a || typeof a === 'string') throw new Error('the metrics server is not listening');
      return { host: a.address, port: a.port };
    },
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
