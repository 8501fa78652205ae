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
