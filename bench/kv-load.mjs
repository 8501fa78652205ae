// Client load for bench/replication-cores.mjs, run as its own process (so that its CPU is not the server's):
// FtClient sessions against one key-value server, first saturating (sessions x window calls outstanding),
// then a closed loop of one call at a time for latency. Prints one JSON line per event on stdout:
//   {"event":"window-start"} and {"event":"window-end"} when the counted window opens and closes (the
//   parent reads the servers' CPU from /proc at those moments), then {"event":"result", ...}.
//
//   node bench/kv-load.mjs --server HOST:PORT --workload get90 --seed N --sessions 8 --window 32
//        --warm-ms 300 --ms 1500 --latency 800
//
// Every wait is bounded (STEP_MS_MAX); the process exits non-zero with the reason on stderr otherwise.
import { FtClient } from 'ftwasm';
import { WORKLOADS, closedLoop, pool, saturate, setupPayloads, within } from './kv-workloads.mjs';

const STEP_MS_MAX = 20_000;
const LATENCY_WARM = 50;

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) {
    if (fallback === undefined) throw new Error(`--${name} is required`);
    return fallback;
  }
  return process.argv[i + 1];
}
const server = arg('server');
const workload = WORKLOADS.find((w) => w.name === arg('workload'));
if (!workload) throw new Error(`unknown workload ${arg('workload')}`);
const seed = Number(arg('seed', '1'));
const sessions = Number(arg('sessions', '8'));
const window = Number(arg('window', '32'));
const warmMs = Number(arg('warm-ms', '300'));
const windowMs = Number(arg('ms', '1500'));
const latencyCalls = Number(arg('latency', '800'));
const say = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);

const payloads = pool(workload, seed);
const clients = [];
for (let i = 0; i <= sessions; i++) {
  const c = new FtClient({ servers: [server], requests_queued_max: 1_024 });
  c.on('error', () => undefined);
  clients.push(c);
}
await within(Promise.all(clients.map((c) => c.connect())), STEP_MS_MAX, `clients to connect to ${server}`);
const lat = clients[sessions];
const setup = setupPayloads(workload);
for (let i = 0; i < setup.length; i += 64) await within(Promise.all(setup.slice(i, i + 64).map((p) => lat.call(p))), STEP_MS_MAX, 'preloading keys');

// Saturating window (see saturate): the parent reads the servers' CPU when it sees window-start and -end.
let opened = 0;
let closed = 0;
const counted = await saturate(clients.slice(0, sessions), payloads, {
  window, warmMs, windowMs, waitMaxMs: STEP_MS_MAX, what: 'the throughput window',
  onOpen: () => {
    opened = performance.now();
    say({ event: 'window-start' });
  },
  onClose: () => {
    closed = performance.now();
    say({ event: 'window-end' });
  },
});
const seconds = (closed - opened) / 1e3;

const latency_us = await closedLoop(lat, payloads, { warm: LATENCY_WARM, calls: latencyCalls, waitMaxMs: STEP_MS_MAX });
say({ event: 'result', requests: counted, seconds, requests_per_s: counted / seconds, latency_us });
await Promise.all(clients.map((c) => c.close()));
process.exit(0);
