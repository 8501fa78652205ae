// What state transfer costs (docs/SNAPSHOT.md), measured on the kv guest in this thread (GuestCore, no
// worker, no network):
//
//   1. the price of preparing a guest for snapshots (Binaryen's Asyncify at ft.recv) on every request it
//      serves: instructions (icount, exact) and time per request, prepared vs plain, same requests, variants
//      interleaved over ROUNDS rounds (medians of per-round ratios);
//   2. taking a snapshot (unwind at recv, copy memory, rewind) and restoring one into a fresh instance, by
//      memory size (the guest is filled with 1000-character values first).
//
//   node bench/snapshot.mjs [--quick]
//
// Writes bench/results/snapshot.json and .md (full run only).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ArraySource, GuestCore, encodeSnapshot, decodeSnapshot, instrument, prepareUnwind } from 'ftwasm';
import { machineFacts, median, writeResults } from './common.mjs';
import { WORKLOADS, pool, setupPayloads } from './kv-workloads.mjs';

const root = new URL('..', import.meta.url).pathname;
const quick = process.argv.includes('--quick');
const ROUNDS = quick ? 2 : 7;
const REQUESTS = quick ? 20_000 : 100_000;
// Keys of 1000-character values loaded before the snapshots (the kv guest holds at most 10,000 keys).
const FILL_KEYS = quick ? [1000, 4000] : [1000, 4000, 10_000];
const SNAPSHOTS_PER_SIZE = quick ? 3 : 7;

const kvBytes = readFileSync(join(root, 'build/guest/kv.wasm'));
const plain = new WebAssembly.Module(instrument(kvBytes));
const preparedBytes = await prepareUnwind(kvBytes);
const prepared = new WebAssembly.Module(instrument(preparedBytes));

/** A world that hands out `messages` in order, then asks for a snapshot (when `snapshotAt` says) or ends. */
function world(messages, snapshotWanted = () => false) {
  let at = 0;
  let t = 1_700_000_000_000_000_000n;
  return {
    clockNow: () => (t += 1000n),
    clockMono: () => (t += 1000n),
    randomFill: (target) => target.fill(7),
    cpuId: () => 1,
    seed: () => 0.5,
    dateNow: () => Number(t / 1_000_000n),
    pendingInterrupt: () => undefined,
    snapshotWanted: () => snapshotWanted(at),
    recv: (cap) => {
      if (at >= messages.length) return -1;
      const m = messages[at];
      if (m.length > cap) return -m.length;
      at++;
      return m;
    },
  };
}

const sinkOf = () => {
  let seq = 0;
  return {
    append: () => ++seq,
    appendClock: () => ++seq,
    appendRandom: () => ++seq,
  };
};

const message = (session, payload) => {
  const out = new Uint8Array(4 + payload.length);
  new DataView(out.buffer).setUint32(0, session, true);
  out.set(payload, 4);
  return out;
};

// 1. Per-request cost, prepared vs plain.
const workload = WORKLOADS.find((w) => w.name === 'get90');
const setup = setupPayloads(workload).map((p) => message(1, p));
const payloads = pool(workload, 11);
const requests = Array.from({ length: REQUESTS }, (_, i) => message(1 + (i % 8), payloads[i % payloads.length]));

function serve(module) {
  const messages = [...setup, ...requests];
  const core = new GuestCore({ module, mode: 'record', world: world(messages), sink: sinkOf(), outputs: { send: () => {}, log: () => {} } });
  const t0 = performance.now();
  const r = core.run();
  return { ms: performance.now() - t0, icount: r.icount };
}

const rounds = [];
serve(plain); // warm-up of both
serve(prepared);
for (let round = 0; round < ROUNDS; round++) {
  const order = round % 2 === 0 ? ['plain', 'prepared'] : ['prepared', 'plain'];
  const got = {};
  for (const v of order) got[v] = serve(v === 'plain' ? plain : prepared);
  rounds.push(got);
  console.error(`round ${round + 1}: plain ${got.plain.ms.toFixed(0)} ms, prepared ${got.prepared.ms.toFixed(0)} ms`);
}
const perRequest = (ms) => (ms * 1000) / (setup.length + REQUESTS);
const cost = {
  requests: setup.length + REQUESTS,
  icount_per_request: {
    plain: Number(rounds[0].plain.icount) / (setup.length + REQUESTS),
    prepared: Number(rounds[0].prepared.icount) / (setup.length + REQUESTS),
  },
  icount_ratio: Number(rounds[0].prepared.icount) / Number(rounds[0].plain.icount),
  us_per_request: { plain: median(rounds.map((r) => perRequest(r.plain.ms))), prepared: median(rounds.map((r) => perRequest(r.prepared.ms))) },
  time_ratio: median(rounds.map((r) => r.prepared.ms / r.plain.ms)),
};

// 2. Taking and restoring snapshots, by memory size.
const VALUE_1K = 'x'.repeat(1000);
const sizes = [];
for (const keys of FILL_KEYS) {
  const fill = Array.from({ length: keys }, (_, i) => message(1, new TextEncoder().encode(`SET f${i} ${VALUE_1K}`)));
  const take = [];
  const encode = [];
  const restore = [];
  let memoryBytes = 0;
  let snapshotBytes = 0;
  let last;
  // Snapshots at several recvs after the fill: each unwinds, copies memory and rewinds.
  const at = new Set(Array.from({ length: SNAPSHOTS_PER_SIZE }, (_, i) => fill.length + i));
  let t0 = 0;
  const core = new GuestCore({
    module: prepared, mode: 'record', sink: sinkOf(), outputs: { send: () => {}, log: () => {} },
    world: world([...fill, ...Array.from({ length: SNAPSHOTS_PER_SIZE + 1 }, () => message(1, new TextEncoder().encode('GET f1')))], (n) => {
      if (!at.has(n)) return false;
      at.delete(n);
      t0 = performance.now();
      return true;
    }),
    onSnapshot: (s) => {
      take.push(performance.now() - t0); // unwind + memory copy (the rewind follows; timed with the next request below)
      const e0 = performance.now();
      const bytes = Buffer.concat(encodeSnapshot(s));
      encode.push(performance.now() - e0);
      memoryBytes = s.memory.length;
      snapshotBytes = bytes.length;
      last = bytes;
    },
  });
  core.run();
  for (let i = 0; i < SNAPSHOTS_PER_SIZE; i++) {
    const r0 = performance.now();
    const s = decodeSnapshot(last);
    const restored = new GuestCore({ module: prepared, mode: 'replay', source: new ArraySource([]), restore: s });
    restored.run(); // rewinds into recv, then the log ends
    restore.push(performance.now() - r0);
  }
  sizes.push({ keys, memory_bytes: memoryBytes, snapshot_bytes: snapshotBytes, take_ms: median(take), encode_ms: median(encode), restore_ms: median(restore) });
  console.error(`${keys} keys: memory ${(memoryBytes / 2 ** 20).toFixed(1)} MiB, take ${median(take).toFixed(2)} ms, encode ${median(encode).toFixed(2)} ms, restore ${median(restore).toFixed(2)} ms`);
}

const results = {
  benchmark: 'snapshot',
  machine: machineFacts(),
  config: { quick, rounds: ROUNDS, workload: workload.name, module_bytes: { plain: kvBytes.length, prepared: preparedBytes.length } },
  per_request: cost,
  snapshots: sizes,
};
console.log(JSON.stringify(results, null, 2));
if (!quick) {
  const m = results.machine;
  const md = [
    '| kv guest, get90 | plain | prepared for snapshots | ratio |',
    '| --- | ---: | ---: | ---: |',
    `| module bytes (before the meter) | ${kvBytes.length} | ${preparedBytes.length} | ${(preparedBytes.length / kvBytes.length).toFixed(2)} |`,
    `| instructions per request (icount, exact) | ${cost.icount_per_request.plain.toFixed(1)} | ${cost.icount_per_request.prepared.toFixed(1)} | ${cost.icount_ratio.toFixed(3)} |`,
    `| time per request in the guest, us (median of ${ROUNDS} rounds) | ${cost.us_per_request.plain.toFixed(2)} | ${cost.us_per_request.prepared.toFixed(2)} | ${cost.time_ratio.toFixed(3)} |`,
    '',
    '| keys loaded (1000-character values) | guest memory | snapshot bytes | take (unwind + copy), ms | encode, ms | restore (decode + instance + rewind), ms |',
    '| ---: | ---: | ---: | ---: | ---: | ---: |',
    ...sizes.map((s) => `| ${s.keys} | ${(s.memory_bytes / 2 ** 20).toFixed(1)} MiB | ${(s.snapshot_bytes / 2 ** 20).toFixed(1)} MiB | ${s.take_ms.toFixed(2)} | ${s.encode_ms.toFixed(2)} | ${s.restore_ms.toFixed(2)} |`),
    '',
    `Measured by \`node bench/snapshot.mjs\` on ${m.cpu}, ${m.cores} cores, Node ${m.node}, ${m.date.slice(0, 10)}; in one thread, ${setup.length + REQUESTS} requests per round; load average ${m.loadAverageStart} at the start.`,
  ].join('\n');
  writeResults('snapshot', results, md);
}
