// The key-value workloads of bench/replication.mjs and bench/replication-cores.mjs: what a request is, and
// a fixed pool of payloads per workload drawn from a seeded generator (so every variant sends the same bytes).
import { rng } from './common.mjs';

export const KEYS = 1_000;
export const POOL = 4_096; // precomputed payloads per workload (a power of two)

const VALUE_16 = 'v'.repeat(16);
const VALUE_1K = 'x'.repeat(1024);
const text = (s) => new TextEncoder().encode(s);

export const WORKLOADS = [
  {
    name: 'get90',
    what: 'GET-heavy: 90% GET / 10% SET, 16-byte values, 1,000 keys',
    setup: () => Array.from({ length: KEYS }, (_, i) => `SET g${i} ${VALUE_16}`),
    make: (r) => (r() < 0.9 ? `GET g${Math.floor(r() * KEYS)}` : `SET g${Math.floor(r() * KEYS)} ${VALUE_16}`),
  },
  { name: 'set1k', what: 'SET of 1 KiB values, 1,000 keys', make: (r) => `SET s${Math.floor(r() * KEYS)} ${VALUE_1K}` },
  { name: 'incr', what: 'INCR on 1,000 counters', make: (r) => `INCR c${Math.floor(r() * KEYS)}` },
  { name: 'id', what: 'ID: 8 bytes of random_fill per request', make: () => 'ID' },
  {
    name: 'ttlget',
    what: 'GET of keys with a TTL: one clock_now per request',
    setup: () => Array.from({ length: KEYS }, (_, i) => `SET t${i} ${VALUE_16} 3600000`),
    make: (r) => `GET t${Math.floor(r() * KEYS)}`,
  },
];

/** POOL payloads of `workload`, the same for the same seed. */
export function pool(workload, seed) {
  const r = rng(seed);
  return Array.from({ length: POOL }, () => text(workload.make(r)));
}

/** The workload's setup requests (keys to preload), as payloads; empty when it has none. */
export function setupPayloads(workload) {
  return (workload.setup?.() ?? []).map(text);
}

/** Rejects naming `what` if `promise` has not settled within ms. */
export function within(promise, ms, what) {
  let timer;
  const limit = new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms)));
  return Promise.race([promise, limit]).finally(() => clearTimeout(timer));
}

/**
 * Saturating load: `window` calls outstanding on each client, payloads taken in turn from `payloads` (POOL of
 * them). The counted window opens at the first answer after `warmMs` and closes at the first answer after
 * `windowMs` more (answers come thousands a second, and a timer would fire late on a saturated event loop):
 * `onOpen` and `onClose` run at those two moments, so that whatever the caller reads there (CPU, log bytes)
 * covers exactly the answers counted. Resolves with the count, or rejects after `waitMaxMs` more.
 */
export async function saturate(clients, payloads, { window, warmMs, windowMs, waitMaxMs, onOpen, onClose, what }) {
  let next = 0;
  let counted = 0;
  let opened = false;
  let closed = false;
  const warmEnd = performance.now() + warmMs;
  const end = warmEnd + windowMs;
  const answered = () => {
    if (closed) return;
    const t = performance.now();
    if (!opened) {
      if (t >= warmEnd) {
        opened = true;
        onOpen();
      }
    } else if (t < end) counted++;
    else {
      closed = true;
      onClose();
    }
  };
  const loops = [];
  for (const c of clients) {
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
  await within(Promise.all(loops), warmMs + windowMs + waitMaxMs, what);
  if (!opened) throw new Error(`${what}: no answer after the warm-up`);
  if (!closed) {
    closed = true;
    onClose();
  }
  return counted;
}

/**
 * Closed loop on one client, one call outstanding: `warm` calls not counted, then up to `calls` timed (at most
 * `waitMaxMs` of them). `onStart` runs between the two. Latencies in microseconds.
 */
export async function closedLoop(client, payloads, { warm, calls, waitMaxMs, onStart = () => undefined }) {
  for (let i = 0; i < warm; i++) await within(client.call(payloads[i & (POOL - 1)]), waitMaxMs, 'a warm-up call');
  onStart();
  const samples = [];
  const end = performance.now() + waitMaxMs;
  for (let i = 0; i < calls && performance.now() < end; i++) {
    const p = payloads[(i * 7) & (POOL - 1)];
    const t0 = performance.now();
    await client.call(p);
    samples.push((performance.now() - t0) * 1e3);
  }
  return samples;
}
