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
import { POOL, WORKLOADS, pool, setupPayloads } from './kv-workloads.mjs';

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

function within(promise, ms, what) {
  let timer;
  const limit = new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms)));
  return Promise.race([promise, limit]).finally(() => clearTimeout(timer));
}

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

// Saturating window: opens at the first answer after the warm-up, closes at the first answer after its end.
let next = 0;
let counted = 0;
const t0 = performance.now();
const warmEnd = t0 + warmMs;
const end = warmEnd + windowMs;
let opened;
let closed;
const answered = () => {
  const t = performance.now();
  if (opened === undefined) {
    if (t >= warmEnd) {
      opened = t;
      say({ event: 'window-start' });
    }
  } else if (closed === undefined) {
    if (t < end) counted++;
    else {
      closed = t;
      say({ event: 'window-end' });
    }
  }
};
const loops = [];
for (const c of clients.slice(0, sessions)) {
  for (let w = 0; w < window; w++) {
    loops.push(
      (async () => {
        while (performance.now() < end) {
          await c.call(payloads[next++ & (POOL - 1)]);
          answered();
        }
      })(),
    );
  }
}
await within(Promise.all(loops), warmMs + windowMs + STEP_MS_MAX, 'the throughput window');
if (opened === undefined) throw new Error('no answer after the warm-up');
if (closed === undefined) {
  closed = performance.now();
  say({ event: 'window-end' });
}
const seconds = (closed - opened) / 1e3;

// Closed loop, one call outstanding.
for (let i = 0; i < LATENCY_WARM; i++) await within(lat.call(payloads[i & (POOL - 1)]), STEP_MS_MAX, 'a latency warm-up call');
const latency_us = [];
const latencyEnd = performance.now() + STEP_MS_MAX;
for (let i = 0; i < latencyCalls && performance.now() < latencyEnd; i++) {
  const p = payloads[(i * 7) & (POOL - 1)];
  const s = performance.now();
  await lat.call(p);
  latency_us.push((performance.now() - s) * 1e3);
}
say({ event: 'result', requests: counted, seconds, requests_per_s: counted / seconds, latency_us });
await Promise.all(clients.map((c) => c.close()));
process.exit(0);
