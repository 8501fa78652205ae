// Replication benchmark: the key-value guest with and without a backup, in one process run, plus failover
// time over kill -9 of a real primary process. Prints, all measured in this run:
//   - throughput ratio replicated / unreplicated, and the latency the output rule adds (p50, p99);
//   - log bandwidth per workload (Mbit/s and bytes per request), after VMware FT's Table 1;
//   - failover time (kill -9 -> backup live, and -> first answer from the new primary), p50/p99/max.
//
//   node bench/replication.mjs [--quick] [--parts=kv,ticker,montecarlo,failover]
//
// Full run about 4 minutes, --quick under one. Writes bench/results/replication.json and .md (full run only,
// and only when every part ran). Everything is on 127.0.0.1; every loop is bounded in count and time.
//
// Every layer comes from the package (dist/index.js: run `npm run build` after changing host/), the same
// bundle the `ftwasm` processes of the failover part and of the process backup run.
import { freePort, median, quantile, rng, writeResults } from './common.mjs';
import { POOL, WORKLOADS, closedLoop, pool, saturate, setupPayloads, within } from './kv-workloads.mjs';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { ClientServer, FtClient, GuestRunner, instrument, openFileArbiter, startBackup, startPrimary } from 'ftwasm';

const root = new URL('..', import.meta.url).pathname;
const quick = process.argv.includes('--quick');
const partsArg = process.argv.find((a) => a.startsWith('--parts='));
const PARTS = new Set(partsArg ? partsArg.slice('--parts='.length).split(',') : ['kv', 'ticker', 'montecarlo', 'failover']);
const ALL_PARTS = PARTS.size === 4;

// ------------------------------------------------------------------------------------------------ limits

const ROUNDS = quick ? 1 : 3; // interleaved rounds per kv workload, every variant once per round
const WARM_MS = quick ? 200 : 300; // run, not counted, before each throughput window
const THROUGHPUT_MS = quick ? 500 : 1_500;
const TP_SESSIONS = 8; // saturating load: sessions x calls outstanding each
const TP_WINDOW = 32; // < requests_inflight_max (64)
const LATENCY_REQUESTS = quick ? 200 : 800; // closed loop, one outstanding request
const LATENCY_WARM_REQUESTS = 50;
const TICKER_ROUNDS = quick ? 1 : 2;
const TICKER_MS = quick ? 600 : 1_500;
const TICKER_SESSIONS = 4;
const TICK_MS = 1; // timer interrupt period raised into the ticker guest
const MONTECARLO_ROUNDS = quick ? 1 : 2;
const MONTECARLO_SAMPLES = quick ? 500_000 : 2_000_000;
const KILL_RUNS = quick ? 3 : 20;
const KILL_LOAD_SESSIONS = 3;
const KILL_LOAD_REQUESTS = 300;
const STEP_MS_MAX = 20_000; // any single wait (process ready, backup live, a window's calls to drain)
const RUN_MS_MAX = 45_000; // one kill run, start to verdict
const BENCH_MS_MAX = quick ? 120_000 : 540_000; // the whole script; beyond it, a part stops early
const HOLD_QUEUE_MAX = 100_000; // send times kept for the output-rule probe

// The throughput and latency parts measure the output rule, not failure detection: a saturated event loop
// (primary, backup and clients in one process) can stall past the default 300 ms timeout and fail over in
// the middle of a window. They run with a 2 s timeout; the failover part keeps the defaults (50 / 300 ms).
const KV_TIMING = { heartbeat_timeout_ms: 2_000 };
const TARGETS = { throughput_ratio_min: 0.95, added_p50_us_max: 200, failover_ms_max: 500 };
const SECRET = new TextEncoder().encode('bench replication secret, 32 bytes');

const t_start = performance.now();
const overBudget = () => performance.now() - t_start > BENCH_MS_MAX;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const text = (s) => new TextEncoder().encode(s);
const str = (b) => new TextDecoder().decode(b);

// ---------------------------------------------------------------------------------------------- helpers

/** Nearest-rank percentile of an ascending array (NaN when empty). */
const pct = (sorted, q) => (sorted.length === 0 ? NaN : quantile(sorted, q));
function summary(values) {
  const s = [...values].sort((a, b) => a - b);
  return { n: s.length, p50: pct(s, 0.5), p90: pct(s, 0.9), p99: pct(s, 0.99), max: s.at(-1) ?? NaN, mean: s.reduce((a, b) => a + b, 0) / (s.length || 1) };
}
const round1 = (x) => (Number.isFinite(x) ? Math.round(x * 10) / 10 : null);
const round3 = (x) => (Number.isFinite(x) ? Math.round(x * 1000) / 1000 : null);

/** Polls cond every 2 ms; throws naming `what` after timeout_ms. */
async function until(cond, what, timeout_ms = STEP_MS_MAX) {
  const t0 = performance.now();
  while (!cond()) {
    if (performance.now() - t0 > timeout_ms) throw new Error(`timed out after ${timeout_ms} ms waiting for ${what}`);
    await sleep(2);
  }
}

function gc() {
  if (typeof globalThis.gc === 'function') globalThis.gc();
}

const scratch = mkdtempSync(join(os.tmpdir(), 'ftwasm-bench-replication-'));
writeFileSync(join(scratch, 'secret'), SECRET);
const guestModule = (name) => new WebAssembly.Module(instrument(readFileSync(join(root, 'build/guest', `${name}.wasm`))));

// ------------------------------------------------------------------------------------------------ nodes
//
// Three ways to serve the same guest to the same FtClients:
//   bare        GuestRunner (record mode, frames streamed and dropped) + ClientServer; a request is
//               delivered and accepted as it is queued, an output released as the guest sends it. No log
//               decoding, no gate: what serving the guest costs without any replication machinery.
//   solo        startPrimary with no backup (backup_wait_ms 0): after the first heartbeat tick it claims the
//               next epoch and goes on alone, releasing at once. The same code as the replicated primary
//               (input feeder, frame decoding, output gate, client server): only the backup is missing.
//   replicated  startPrimary + startBackup in this process, file arbiter, log channel on loopback; outputs
//               and accepts wait for the backup's ack (the output rule).

let arbiters = 0;
const openArbiters = [];
async function arbiter() {
  const dir = join(scratch, `arbiter-${++arbiters}`);
  mkdirSync(dir, { recursive: true });
  const a = await openFileArbiter(dir, { deployment: 'bench' });
  openArbiters.push(a);
  return a;
}

/**
 * Times each output from the guest's send to its release to the client server (the output rule's hold), by
 * reaching into the primary's runner and client server (private fields: no public hook exists). Returns
 * undefined if those fields are not there.
 */
function holdProbe(primary) {
  const runner = primary.runner;
  const server = primary.server;
  if (!runner || !server || typeof runner.prependListener !== 'function' || typeof server.output !== 'function') return undefined;
  const sent = new Map(); // session -> { times, at }
  let queued = 0;
  let broken = false;
  const probe = { recording: false, samples: [], broken: () => broken };
  runner.prependListener('send', (session) => {
    if (broken) return;
    let q = sent.get(session);
    if (!q) sent.set(session, (q = { times: [], at: 0 }));
    q.times.push(performance.now());
    if (++queued > HOLD_QUEUE_MAX) broken = true;
  });
  const output = server.output.bind(server);
  server.output = (session, outputSeq, payload, epoch) => {
    const q = sent.get(session);
    if (!broken && q && q.at < q.times.length) {
      const held = performance.now() - q.times[q.at++];
      queued -= 1;
      if (q.at > 1024 && q.at * 2 > q.times.length) {
        q.times = q.times.slice(q.at);
        q.at = 0;
      }
      if (probe.recording) probe.samples.push(held);
    }
    return output(session, outputSeq, payload, epoch);
  };
  return probe;
}

/** Counts the log bytes a primary's guest seals (its runner's frame events; private field, as above). */
function frameCounter(runner) {
  const counter = { bytes: 0, frames: 0 };
  runner?.on('frame', (bytes) => {
    counter.bytes += bytes.length;
    counter.frames += 1;
  });
  return counter;
}

async function startBare(module) {
  const runner = new GuestRunner({ module, mode: 'record', streamFrames: true });
  const outputs = new Map();
  const server = new ClientServer({ role: () => 'primary', epoch: () => 1 });
  server.onRequest = (session, seq, payload) => {
    const message = new Uint8Array(4 + payload.length);
    new DataView(message.buffer).setUint32(0, session, true);
    message.set(payload, 4);
    if (!runner.send(message)) throw new Error('the guest input ring is full');
    server.setDelivered(session, seq);
    server.accept(session, seq);
  };
  runner.on('send', (session, bytes) => {
    const n = (outputs.get(session) ?? 0) + 1;
    outputs.set(session, n);
    server.output(session, n, bytes, 1);
  });
  runner.done.catch(() => undefined);
  const frames = frameCounter(runner);
  await server.listen();
  return {
    name: 'bare',
    address: server.address(),
    runner,
    logBytes: () => frames.bytes,
    hold: undefined,
    close: async () => {
      await server.close();
      await runner.terminate();
    },
  };
}

async function startSolo(module) {
  const node = await startPrimary({ module, arbiter: await arbiter(), secret: SECRET, backup_wait_ms: 0, ...KV_TIMING });
  await within(new Promise((resolve) => node.once('live', resolve)), STEP_MS_MAX, 'the solo primary to go on alone');
  const frames = frameCounter(node.runner);
  return {
    name: 'solo',
    address: node.clientAddress(),
    runner: node.runner,
    logBytes: () => frames.bytes,
    hold: holdProbe(node),
    state: () => node.state(),
    close: () => node.close(),
  };
}

async function startReplicated(module) {
  const a = await arbiter();
  const primary = await startPrimary({ module, arbiter: a, secret: SECRET, ...KV_TIMING });
  const hold = holdProbe(primary);
  let logBytes = 0;
  const backup = await startBackup({ module, arbiter: a, secret: SECRET, primary: primary.replicationAddress(), onLogBytes: (b) => (logBytes += b.length), ...KV_TIMING });
  await until(() => primary.state().peer_connected, 'the backup to connect');
  return {
    name: 'replicated',
    address: primary.clientAddress(),
    runner: primary.runner,
    logBytes: () => logBytes,
    hold,
    state: () => primary.state(),
    close: async () => {
      await backup.close();
      await primary.close();
    },
  };
}

/** CPU seconds (user + system) a child process has used so far, from /proc; NaN where there is none. */
function childCpuSeconds(pid) {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
  } catch {
    return NaN;
  }
}

/** As startReplicated, but the backup is an `ftwasm backup` child process: its own event loop and threads. */
async function startReplicatedProc(module, guest) {
  const a = await arbiter();
  const dir = join(scratch, `arbiter-${arbiters}`);
  const primary = await startPrimary({ module, arbiter: a, secret: SECRET, ...KV_TIMING });
  const hold = holdProbe(primary);
  const frames = frameCounter(primary.runner);
  const r = primary.replicationAddress();
  const backup = ftwasm([
    'backup', join(root, 'build/guest', `${guest}.wasm`), '--primary', `${r.host}:${r.port}`, '--clients', `127.0.0.1:${await freePort()}`,
    '--arbiter', `file:${dir}`, '--deployment', 'bench', '--secret-file', join(scratch, 'secret'), '--timeout-ms', String(KV_TIMING.heartbeat_timeout_ms),
  ]);
  try {
    await until(() => primary.state().peer_connected, `the backup process to connect; it said: ${backup.err.slice(-500)}`);
  } catch (error) {
    await stop(backup);
    await primary.close();
    throw error;
  }
  return {
    name: 'replicated_proc',
    address: primary.clientAddress(),
    runner: primary.runner,
    logBytes: () => frames.bytes,
    hold,
    state: () => primary.state(),
    otherCpuSeconds: () => childCpuSeconds(backup.process.pid),
    close: async () => {
      await stop(backup, 'SIGTERM');
      await primary.close();
    },
  };
}

const STARTERS = { bare: startBare, solo: startSolo, replicated: startReplicated, replicated_proc: startReplicatedProc };

// ---------------------------------------------------------------------------------------------- clients

async function openClients(address, n) {
  const clients = [];
  for (let i = 0; i < n; i++) {
    const c = new FtClient({ servers: [`${address.host}:${address.port}`], requests_queued_max: 1_024 });
    c.on('error', () => undefined);
    clients.push(c);
  }
  await within(Promise.all(clients.map((c) => c.connect())), STEP_MS_MAX, `clients to connect to ${address.host}:${address.port}`);
  return clients;
}

/** Saturating load (saturate): log bytes, CPU and event-loop use are read as the counted window opens and closes. */
async function throughput(node, clients, pool, window_ms) {
  const mark = () => ({ t: performance.now(), bytes: node.logBytes(), elu: performance.eventLoopUtilization(), cpu: process.cpuUsage(), other: node.otherCpuSeconds?.() });
  let m0;
  let m1;
  const counted = await saturate(clients, pool, {
    window: TP_WINDOW, warmMs: WARM_MS, windowMs: window_ms, waitMaxMs: STEP_MS_MAX, what: `${node.name}: the throughput window's calls`,
    onOpen: () => {
      m0 = mark();
      if (node.hold) node.hold.recording = true;
    },
    onClose: () => {
      m1 = mark();
      if (node.hold) node.hold.recording = false;
    },
  });
  const s = (m1.t - m0.t) / 1e3;
  const usage = {
    event_loop_utilization: round3(performance.eventLoopUtilization(m1.elu, m0.elu).utilization),
    // CPU of this process (main thread, guest workers, clients) in cores; the backup process's apart.
    cores_this_process: round3((m1.cpu.user - m0.cpu.user + m1.cpu.system - m0.cpu.system) / 1e6 / s),
    ...(m0.other !== undefined ? { cores_backup_process: round3((m1.other - m0.other) / s) } : {}),
  };
  return { requests_per_s: counted / s, requests: counted, seconds: s, log_bytes: m1.bytes - m0.bytes, usage };
}

/** Closed loop, one request outstanding on one client: latency in microseconds. */
async function latency(node, client, pool, n) {
  const samples = await closedLoop(client, pool, {
    warm: LATENCY_WARM_REQUESTS, calls: n, waitMaxMs: STEP_MS_MAX,
    onStart: () => {
      if (node.hold) node.hold.recording = true;
    },
  });
  if (node.hold) node.hold.recording = false;
  return samples;
}

/** Sends `payloads` through the client, at most 64 at a time. */
async function preload(client, payloads) {
  for (let i = 0; i < payloads.length; i += 64) await within(Promise.all(payloads.slice(i, i + 64).map((p) => client.call(p))), STEP_MS_MAX, 'preloading keys');
}

// -------------------------------------------------------------------------------------------- workloads

const VARIANTS = ['bare', 'solo', 'replicated', 'replicated_proc'];
// The ticker and montecarlo guests are measured against the solo primary only.
const SIDE_VARIANTS = ['solo', 'replicated', 'replicated_proc'];
const rotate = (list, by) => list.map((_, i) => list[(i + by) % list.length]);


// --------------------------------------------------------------------------------------- part 1 and 2: kv

async function kvPart(results) {
  const module = guestModule('kv');
  const nodes = {};
  const clients = {};
  for (const v of VARIANTS) {
    nodes[v] = await STARTERS[v](module, 'kv');
    const cs = await openClients(nodes[v].address, TP_SESSIONS + 1);
    clients[v] = { tp: cs.slice(0, TP_SESSIONS), lat: cs[TP_SESSIONS] };
  }
  const out = {};
  try {
    for (const [wi, workload] of WORKLOADS.entries()) {
      const payloads = pool(workload, 1000 + wi);
      if (workload.setup) for (const v of VARIANTS) await preload(clients[v].lat, setupPayloads(workload));
      const rows = Object.fromEntries(VARIANTS.map((v) => [v, { throughput: [], log_bytes: [], requests: [], seconds: [], usage: [], latency_us: [], hold_ms_load: [], hold_ms_closed: [] }]));
      for (let round = 0; round < ROUNDS && !overBudget(); round++) {
        // Rotate the order each round so that drift and warm-up hit every variant alike.
        const order = rotate(VARIANTS, round + wi);
        for (const v of order) {
          const node = nodes[v];
          gc();
          if (node.hold) node.hold.samples = [];
          const tp = await throughput(node, clients[v].tp, payloads, THROUGHPUT_MS);
          rows[v].throughput.push(tp.requests_per_s);
          rows[v].log_bytes.push(tp.log_bytes);
          rows[v].requests.push(tp.requests);
          rows[v].seconds.push(tp.seconds);
          rows[v].usage.push(tp.usage);
          if (node.hold) for (const x of node.hold.samples) rows[v].hold_ms_load.push(x); // can be 100k+: no spread
          if (node.hold) node.hold.samples = [];
          gc();
          rows[v].latency_us.push(...(await latency(node, clients[v].lat, payloads, LATENCY_REQUESTS)));
          if (node.hold) rows[v].hold_ms_closed.push(...node.hold.samples);
        }
      }
      for (const v of VARIANTS) nodeHoldBroken[v] = nodes[v].hold?.broken() ?? false;
      out[workload.name] = summarizeWorkload(workload, rows);
      printWorkload(out[workload.name]);
    }
  } finally {
    for (const v of VARIANTS) {
      await Promise.all([...clients[v].tp, clients[v].lat].map((c) => c.close().catch(() => undefined)));
      await nodes[v].close().catch(() => undefined);
    }
  }
  results.kv = out;
}

/** Variants whose output-rule probe gave up (more than HOLD_QUEUE_MAX sends unmatched). */
const nodeHoldBroken = {};

function summarizeWorkload(workload, rows) {
  const variants = {};
  for (const [v, r] of Object.entries(rows)) {
    const lat = summary(r.latency_us);
    const totalRequests = r.requests.reduce((a, b) => a + b, 0);
    const totalBytes = r.log_bytes.reduce((a, b) => a + b, 0);
    variants[v] = {
      throughput_rps: r.throughput.map(Math.round),
      throughput_rps_median: Math.round(median(r.throughput)),
      usage_saturated: r.usage,
      event_loop_utilization_median: round3(median(r.usage.map((u) => u.event_loop_utilization))),
      cores_this_process_median: round3(median(r.usage.map((u) => u.cores_this_process))),
      ...(r.usage[0]?.cores_backup_process !== undefined ? { cores_backup_process_median: round3(median(r.usage.map((u) => u.cores_backup_process))) } : {}),
      // CPU time per answered request at saturation: this process (servers, guest workers, clients), and the backup process.
      cpu_us_per_request_this_process: Math.round(median(r.usage.map((u, i) => (u.cores_this_process * 1e6) / r.throughput[i]))),
      ...(r.usage[0]?.cores_backup_process !== undefined ? { cpu_us_per_request_backup_process: Math.round(median(r.usage.map((u, i) => (u.cores_backup_process * 1e6) / r.throughput[i]))) } : {}),
      latency_us: { n: lat.n, p50: round1(lat.p50), p90: round1(lat.p90), p99: round1(lat.p99), max: round1(lat.max), mean: round1(lat.mean) },
      log_bytes_per_request: round1(totalBytes / totalRequests),
      window_s: r.seconds.map(round3),
      log_mbit_s: r.log_bytes.map((b, i) => round3((b * 8) / r.seconds[i] / 1e6)),
      log_mbit_s_median: round3(median(r.log_bytes.map((b, i) => (b * 8) / r.seconds[i] / 1e6))),
      ...(nodeHoldBroken[v] ? { output_hold_probe_overflowed: true } : {}),
      ...(r.hold_ms_load.length || r.hold_ms_closed.length
        ? {
            output_hold_us_saturated: holdSummary(r.hold_ms_load),
            output_hold_us_closed_loop: holdSummary(r.hold_ms_closed),
          }
        : {}),
    };
  }
  const rounds = rows.replicated.throughput.length;
  const pairedRatio = (base) => round3(median(rows.replicated.throughput.map((t, i) => t / rows[base].throughput[i])));
  return {
    workload: workload.name,
    what: workload.what,
    rounds,
    variants,
    throughput_ratio_vs_solo: pairedRatio('solo'),
    throughput_ratio_proc_vs_solo: round3(median(rows.replicated_proc.throughput.map((t, i) => t / rows.solo.throughput[i]))),
    throughput_ratio_vs_bare: pairedRatio('bare'),
    added_latency_us_vs_solo: { p50: round1(variants.replicated.latency_us.p50 - variants.solo.latency_us.p50), p99: round1(variants.replicated.latency_us.p99 - variants.solo.latency_us.p99) },
    added_latency_us_proc_vs_solo: { p50: round1(variants.replicated_proc.latency_us.p50 - variants.solo.latency_us.p50), p99: round1(variants.replicated_proc.latency_us.p99 - variants.solo.latency_us.p99) },
    added_latency_us_vs_bare: { p50: round1(variants.replicated.latency_us.p50 - variants.bare.latency_us.p50), p99: round1(variants.replicated.latency_us.p99 - variants.bare.latency_us.p99) },
  };
}

function holdSummary(ms) {
  const s = summary(ms.map((x) => x * 1e3));
  return { n: s.n, p50: round1(s.p50), p99: round1(s.p99), max: round1(s.max) };
}

function printWorkload(w) {
  const v = w.variants;
  console.log(`\n${w.workload}: ${w.what} (${w.rounds} rounds)`);
  console.log('  variant           req/s   latency p50 / p99 us   log Mbit/s   log B/req   hold p50 / p99 us   loop util   cores (+backup)');
  for (const name of VARIANTS) {
    const x = v[name];
    const hold = x.output_hold_us_closed_loop ? `${x.output_hold_us_closed_loop.p50} / ${x.output_hold_us_closed_loop.p99}` : '-';
    const cores = `${x.cores_this_process_median}${x.cores_backup_process_median !== undefined ? ` + ${x.cores_backup_process_median}` : ''}`;
    console.log(`  ${name.padEnd(15)} ${String(x.throughput_rps_median).padStart(7)}   ${`${x.latency_us.p50} / ${x.latency_us.p99}`.padStart(20)}   ${String(x.log_mbit_s_median).padStart(10)}   ${String(x.log_bytes_per_request).padStart(9)}   ${hold.padStart(17)}   ${String(x.event_loop_utilization_median).padStart(9)}   ${cores}`);
  }
  console.log(`  replicated/solo: throughput ${w.throughput_ratio_vs_solo}, added latency p50 ${w.added_latency_us_vs_solo.p50} us, p99 ${w.added_latency_us_vs_solo.p99} us  (vs bare: ${w.throughput_ratio_vs_bare}, +${w.added_latency_us_vs_bare.p50} / +${w.added_latency_us_vs_bare.p99} us)`);
  console.log(`  replicated_proc/solo: throughput ${w.throughput_ratio_proc_vs_solo}, added latency p50 ${w.added_latency_us_proc_vs_solo.p50} us, p99 ${w.added_latency_us_proc_vs_solo.p99} us`);
}

// ------------------------------------------------------------------------------------ part 2b: ticker

/** The ticker guest: compute-bound, timer interrupts every TICK_MS (raised into the primary's runner), answering polls. */
async function tickerPart(results) {
  const module = guestModule('ticker');
  const rows = Object.fromEntries(SIDE_VARIANTS.map((v) => [v, []]));
  for (let round = 0; round < TICKER_ROUNDS && !overBudget(); round++) {
    for (const v of rotate(SIDE_VARIANTS, round)) {
      const node = await STARTERS[v](module, 'ticker');
      let ticks = 0;
      const timer = setInterval(() => node.runner?.interrupt(1, ++ticks), TICK_MS);
      const clients = await openClients(node.address, TICKER_SESSIONS);
      try {
        await sleep(WARM_MS);
        let answered = 0;
        const bytes0 = node.logBytes();
        const ticks0 = ticks;
        const t0 = performance.now();
        const end = t0 + TICKER_MS;
        await within(
          Promise.all(clients.map(async (c) => {
            while (performance.now() < end) {
              await c.call(text('poll'));
              answered++;
            }
          })),
          TICKER_MS + STEP_MS_MAX,
          `${v}: ticker calls`,
        );
        const s = (performance.now() - t0) / 1e3;
        const bytes = node.logBytes() - bytes0;
        rows[v].push({ seconds: round3(s), answers_per_s: Math.round(answered / s), ticks_per_s: Math.round((ticks - ticks0) / s), log_mbit_s: round3((bytes * 8) / s / 1e6), log_bytes_per_s: Math.round(bytes / s) });
      } finally {
        clearInterval(timer);
        await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
        await node.close();
      }
    }
  }
  const med = (v, k) => median(rows[v].map((r) => r[k]));
  results.ticker = {
    what: `ticker guest: compute loop, timer interrupt every ${TICK_MS} ms (raised into the primary's runner), ${TICKER_SESSIONS} clients asking closed-loop; it polls its input every 256 rounds`,
    rounds: rows,
    variants: Object.fromEntries(SIDE_VARIANTS.map((v) => [v, { answers_per_s: Math.round(med(v, 'answers_per_s')), ticks_per_s: Math.round(med(v, 'ticks_per_s')), log_mbit_s: round3(med(v, 'log_mbit_s')), log_bytes_per_s: Math.round(med(v, 'log_bytes_per_s')) }])),
    answers_ratio_vs_solo: round3(med('replicated', 'answers_per_s') / med('solo', 'answers_per_s')),
    answers_ratio_proc_vs_solo: round3(med('replicated_proc', 'answers_per_s') / med('solo', 'answers_per_s')),
  };
  const t = results.ticker;
  console.log(`\nticker: ${t.what}`);
  for (const v of SIDE_VARIANTS) {
    const x = t.variants[v];
    console.log(`  ${v.padEnd(15)} ${x.answers_per_s} answers/s, ${x.ticks_per_s} ticks/s, log ${x.log_mbit_s} Mbit/s (${x.log_bytes_per_s} B/s)`);
  }
  console.log(`  answers ratio vs solo: replicated ${t.answers_ratio_vs_solo}, replicated_proc ${t.answers_ratio_proc_vs_solo}`);
}

// -------------------------------------------------------------------------------- part 2c: montecarlo

/** The montecarlo guest: one request, MONTECARLO_SAMPLES x 8 random bytes, all of them in the log. */
async function montecarloPart(results) {
  const module = guestModule('montecarlo');
  const rows = Object.fromEntries(SIDE_VARIANTS.map((v) => [v, []]));
  for (let round = 0; round < MONTECARLO_ROUNDS && !overBudget(); round++) {
    for (const v of rotate(SIDE_VARIANTS, round)) {
      const node = await STARTERS[v](module, 'montecarlo');
      const [client] = await openClients(node.address, 1);
      try {
        gc();
        const bytes0 = node.logBytes();
        const t0 = performance.now();
        const answer = str(await within(client.call(text(String(MONTECARLO_SAMPLES))), STEP_MS_MAX * 3, `${v}: montecarlo answer`));
        const s = (performance.now() - t0) / 1e3;
        if (!answer.startsWith('PI ')) throw new Error(`montecarlo answered ${JSON.stringify(answer)}`);
        // The guest's END entry and the last frames may reach the backup after the answer: wait for them.
        if (v !== 'solo') await until(() => node.state().guest_exited && node.state().lag_entries === 0, 'the log tail to be acked', 5_000).catch(() => undefined);
        const bytes = node.logBytes() - bytes0;
        rows[v].push({ seconds: round3(s), log_bytes: bytes, log_mbit_s: round3((bytes * 8) / s / 1e6) });
      } finally {
        await client.close().catch(() => undefined);
        await node.close();
      }
    }
  }
  const med = (v, k) => median(rows[v].map((r) => r[k]));
  results.montecarlo = {
    what: `montecarlo guest: one request of ${MONTECARLO_SAMPLES.toLocaleString('en-US')} samples (8 random bytes each, random_fill of 4 KiB); the answer leaves once the backup acked the whole log`,
    rounds: rows,
    variants: Object.fromEntries(SIDE_VARIANTS.map((v) => [v, { seconds: round3(med(v, 'seconds')), log_bytes: Math.round(med(v, 'log_bytes')), log_mbit_s: round3(med(v, 'log_mbit_s')) }])),
    speed_ratio_vs_solo: round3(med('solo', 'seconds') / med('replicated', 'seconds')),
    speed_ratio_proc_vs_solo: round3(med('solo', 'seconds') / med('replicated_proc', 'seconds')),
  };
  const m = results.montecarlo;
  console.log(`\nmontecarlo: ${m.what}`);
  for (const v of SIDE_VARIANTS) {
    const x = m.variants[v];
    console.log(`  ${v.padEnd(15)} ${x.seconds} s, log ${x.log_bytes} B = ${x.log_mbit_s} Mbit/s`);
  }
  console.log(`  speed vs solo (solo time / replicated time): replicated ${m.speed_ratio_vs_solo}, replicated_proc ${m.speed_ratio_proc_vs_solo}`);
}

// ------------------------------------------------------------------------------- part 3: real failover

const cli = join(root, 'dist/cli.js');
const children = new Set();
process.on('exit', () => {
  for (const c of children) if (c.process.exitCode === null && c.process.signalCode === null) c.process.kill('SIGKILL');
  rmSync(scratch, { recursive: true, force: true });
});
// Interrupted: the exit handler above still stops the child processes and removes the scratch directory.
for (const signal of ['SIGINT', 'SIGTERM']) process.once(signal, () => process.exit(130));

/** `node dist/cli.js ...args`, keeping every stderr line with the time it arrived. */
function ftwasm(args) {
  const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const p = { process: child, out: '', err: '', lines: [], partial: '' };
  child.stdout.on('data', (d) => (p.out += d));
  child.stderr.on('data', (d) => {
    const t = performance.now();
    p.err += d;
    p.partial += d;
    for (let i = p.partial.indexOf('\n'); i >= 0; i = p.partial.indexOf('\n')) {
      p.lines.push({ t, line: p.partial.slice(0, i) });
      p.partial = p.partial.slice(i + 1);
    }
  });
  p.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  children.add(p);
  p.exited.then(() => children.delete(p));
  return p;
}

async function stop(p, signal = 'SIGKILL') {
  if (p.process.exitCode === null && p.process.signalCode === null) p.process.kill(signal);
  const code = await within(p.exited, 5_000, 'exit').catch(() => 'timeout');
  if (code === 'timeout' && p.process.exitCode === null) {
    p.process.kill('SIGKILL');
    await within(p.exited, 5_000, 'exit').catch(() => undefined);
  }
}

/**
 * A client in this process doing closed-loop INCRs on a key of its own through the failover; notes when
 * each answer arrived and the epoch of the node it came from, and checks it got 1, 2, 3, ... exactly.
 */
function probe(servers, name, options) {
  const client = new FtClient({ servers, ...options });
  client.on('error', () => undefined);
  const p = { name, client, epoch: 0, answers: [], bad: 0, stopped: false };
  client.on('connected', (info) => (p.epoch = info.epoch));
  client.on('output', (_seq, payload) => {
    const value = Number(/^VALUE (\d+)\n$/.exec(str(payload))?.[1]);
    if (value !== p.answers.length + 1) p.bad += 1;
    p.answers.push({ t: performance.now(), epoch: p.epoch });
  });
  p.loop = (async () => {
    const key = text(`INCR probe-${name}`);
    while (!p.stopped) await client.request(key).catch(() => sleep(5));
  })();
  p.firstAfter = (t, epoch) => p.answers.find((a) => a.t > t && a.epoch >= epoch)?.t;
  p.stop = async () => {
    p.stopped = true;
    await client.close().catch(() => undefined);
    await within(p.loop, 5_000, `probe ${name} to stop`).catch(() => undefined);
  };
  return p;
}

// The load's client options (host/cli/replicate.ts), and an eager client that retries every few ms.
const PROBES = {
  load_like: { backoff_ms_max: 200, retries_max: 100, request_timeout_ms: 2_000 },
  eager: { backoff_ms_min: 5, backoff_ms_max: 20, retries_max: 1_000, request_timeout_ms: 2_000 },
};

async function failoverRun(run, random) {
  const dir = join(scratch, `kill-${run}`);
  mkdirSync(join(dir, 'arbiter'), { recursive: true });
  const kv = join(root, 'build/guest/kv.wasm');
  const [clientsP, replication, clientsB] = [await freePort(), await freePort(), await freePort()];
  const common = ['--arbiter', `file:${join(dir, 'arbiter')}`, '--secret-file', join(scratch, 'secret')];
  const servers = [`127.0.0.1:${clientsP}`, `127.0.0.1:${clientsB}`];
  const primary = ftwasm(['primary', kv, '--clients', servers[0], '--replication', `127.0.0.1:${replication}`, ...common]);
  const backup = ftwasm(['backup', kv, '--primary', `127.0.0.1:${replication}`, '--clients', servers[1], ...common]);
  const probes = [];
  let load;
  const t_run = performance.now();
  try {
    await until(() => primary.err.includes('primary: ready in epoch 1'), `run ${run}: the primary to be ready`);
    await until(() => backup.err.includes('connected to the primary'), `run ${run}: the backup to connect`);
    for (const [name, options] of Object.entries(PROBES)) probes.push(probe(servers, name, options));
    load = ftwasm(['load', '--servers', servers.join(','), '--sessions', String(KILL_LOAD_SESSIONS), '--requests', String(KILL_LOAD_REQUESTS), '--interval-ms', '2', '--timeout-ms', '30000']);
    // The moment: after 100..400 load answers (as the load reports them), plus 0..20 ms.
    const hundreds = 1 + Math.floor(random() * 4);
    await until(() => load.err.includes(`load: ${hundreds * 100} responses`), `run ${run}: ${hundreds * 100} load answers`);
    await sleep(Math.floor(random() * 20));
    const probeAnswersBefore = probes.map((p) => p.answers.length);
    const t_kill = performance.now();
    primary.process.kill('SIGKILL');
    await until(() => /LIVE as primary in epoch 2/.test(backup.err), `run ${run}: the backup to go live`, 10_000);
    const t_live = backup.lines.find((l) => /LIVE as primary in epoch 2/.test(l.line)).t;
    // The backup's own figure: from declaring the primary lost to live (claim + replay of the tail).
    const declared = /live as primary in epoch 2 at log seq (\d+), (\d+) ms after the primary was declared lost/.exec(backup.err);
    const t_lost = backup.lines.find((l) => /primary lost \(/.test(l.line))?.t;
    await until(() => probes.every((p) => p.firstAfter(t_kill, 2) !== undefined), `run ${run}: every probe to get an answer from epoch 2`, 10_000);
    const code = await within(load.exited, RUN_MS_MAX, `run ${run}: the load to finish`);
    const verdict = JSON.parse(load.out.trim().split('\n').at(-1) ?? '{}');
    const ok = code === 0 && verdict.lost === 0 && verdict.duplicated === 0 && verdict.out_of_order === 0 && probes.every((p) => p.bad === 0);
    return {
      run,
      ok,
      killed_after_load_answers: hundreds * 100,
      probe_answers_before_kill: probeAnswersBefore,
      kill_to_live_ms: round1(t_live - t_kill),
      kill_to_lost_ms: t_lost !== undefined ? round1(t_lost - t_kill) : null,
      lost_to_live_ms_backup_note: declared ? Number(declared[2]) : null,
      live_log_seq: declared ? Number(declared[1]) : null,
      kill_to_first_answer_ms: Object.fromEntries(probes.map((p) => [p.name, round1(p.firstAfter(t_kill, 2) - t_kill)])),
      load_verdict: verdict,
      probe_bad_answers: probes.map((p) => p.bad),
      run_ms: Math.round(performance.now() - t_run),
    };
  } finally {
    await Promise.all(probes.map((p) => p.stop()));
    await Promise.all([primary, backup, ...(load ? [load] : [])].map((p) => stop(p)));
    rmSync(dir, { recursive: true, force: true });
  }
}

async function failoverPart(results) {
  const seed = 20260601;
  const random = rng(seed);
  const runs = [];
  const failures = [];
  for (let run = 0; run < KILL_RUNS && !overBudget(); run++) {
    try {
      const r = await within(failoverRun(run, random), RUN_MS_MAX + STEP_MS_MAX, `kill run ${run}`);
      runs.push(r);
      const fa = r.kill_to_first_answer_ms;
      console.log(`  kill ${String(run + 1).padStart(2)}/${KILL_RUNS}: live ${r.kill_to_live_ms} ms, first answer ${fa.load_like} ms (eager client ${fa.eager} ms), verdict ${r.ok ? 'ok' : JSON.stringify(r.load_verdict)}`);
    } catch (error) {
      failures.push({ run, error: error.message.slice(0, 2_000) });
      console.log(`  kill ${run + 1}/${KILL_RUNS}: FAILED: ${error.message.split('\n')[0]}`);
    }
  }
  const ms = (f) => {
    const s = summary(runs.map(f).filter(Number.isFinite));
    return { n: s.n, p50: round1(s.p50), p99: round1(s.p99), max: round1(s.max) };
  };
  results.failover = {
    what: `kill -9 of an \`ftwasm primary\` process (kv guest) during \`ftwasm load\` (${KILL_LOAD_SESSIONS} sessions x ${KILL_LOAD_REQUESTS} INCR, 2 ms apart); backup as \`ftwasm backup\`, file arbiter; heartbeat 50 ms, timeout 300 ms (defaults)`,
    seed,
    runs_planned: KILL_RUNS,
    runs_done: runs.length,
    runs_ok: runs.filter((r) => r.ok).length,
    failures,
    kill_to_live_ms: ms((r) => r.kill_to_live_ms),
    kill_to_declared_lost_ms: ms((r) => r.kill_to_lost_ms ?? NaN),
    declared_lost_to_live_ms: ms((r) => r.lost_to_live_ms_backup_note ?? NaN),
    kill_to_first_answer_ms: Object.fromEntries(Object.keys(PROBES).map((k) => [k, ms((r) => r.kill_to_first_answer_ms[k])])),
    probe_client_options: PROBES,
    runs,
  };
  const f = results.failover;
  console.log(`  failover over ${f.runs_done} kills (${f.runs_ok} with a clean verdict): kill -> LIVE p50 ${f.kill_to_live_ms.p50} ms, p99 ${f.kill_to_live_ms.p99} ms, max ${f.kill_to_live_ms.max} ms`);
  console.log(`    of which kill -> declared lost p50 ${f.kill_to_declared_lost_ms.p50} ms, declared lost -> live p50 ${f.declared_lost_to_live_ms.p50} ms`);
  console.log(`    kill -> first answer from the new primary: load-like client p50 ${f.kill_to_first_answer_ms.load_like.p50} / p99 ${f.kill_to_first_answer_ms.load_like.p99} ms, eager client p50 ${f.kill_to_first_answer_ms.eager.p50} / p99 ${f.kill_to_first_answer_ms.eager.p99} ms`);
}

// ----------------------------------------------------------------------------------------------- report

const fmt = (x, digits = 0) => (Number.isFinite(x) ? x.toFixed(digits) : '-');
const verdict = (ok) => (ok === undefined ? '-' : ok ? 'met' : 'missed');

/** The headline figures against the targets, for both ways of running the backup. */
function headline(results) {
  const h = {};
  const w = results.kv?.[HEADLINE_WORKLOAD];
  if (w) {
    const hold = (v) => w.variants[v].output_hold_us_closed_loop;
    h.throughput_ratio = { in_process: w.throughput_ratio_vs_solo, backup_process: w.throughput_ratio_proc_vs_solo, target_min: TARGETS.throughput_ratio_min };
    h.added_latency_p50_us = { in_process: w.added_latency_us_vs_solo.p50, backup_process: w.added_latency_us_proc_vs_solo.p50, target_max: TARGETS.added_p50_us_max };
    h.added_latency_p99_us = { in_process: w.added_latency_us_vs_solo.p99, backup_process: w.added_latency_us_proc_vs_solo.p99 };
    h.output_hold_us = { in_process: hold('replicated'), backup_process: hold('replicated_proc') };
    h.throughput_ratio.met = { in_process: h.throughput_ratio.in_process >= TARGETS.throughput_ratio_min, backup_process: h.throughput_ratio.backup_process >= TARGETS.throughput_ratio_min };
    h.added_latency_p50_us.met = { in_process: h.added_latency_p50_us.in_process <= TARGETS.added_p50_us_max, backup_process: h.added_latency_p50_us.backup_process <= TARGETS.added_p50_us_max };
  }
  const f = results.failover;
  if (f && f.runs_done > 0) {
    h.failover_ms = { kill_to_live: f.kill_to_live_ms, kill_to_first_answer: f.kill_to_first_answer_ms, target_max: TARGETS.failover_ms_max, met: f.kill_to_live_ms.p99 <= TARGETS.failover_ms_max && f.runs_ok === f.runs_done };
  }
  return h;
}

function markdown(results) {
  const h = results.headline;
  const m = results.machine;
  const lines = [];
  const w = results.kv?.[HEADLINE_WORKLOAD];
  lines.push('| measure | target | backup in-process | backup as a process | met |', '| --- | ---: | ---: | ---: | --- |');
  if (w) {
    const hp = (x) => (x ? `${fmt(x.p50)} / ${fmt(x.p99)}` : '-');
    lines.push(`| throughput, replicated / solo primary (${HEADLINE_WORKLOAD}) | >= ${TARGETS.throughput_ratio_min} | ${fmt(h.throughput_ratio.in_process, 2)} | ${fmt(h.throughput_ratio.backup_process, 2)} | ${verdict(h.throughput_ratio.met.in_process)} / ${verdict(h.throughput_ratio.met.backup_process)} |`);
    lines.push(`| added latency p50, 1 client closed loop (us) | <= ${TARGETS.added_p50_us_max} | ${fmt(h.added_latency_p50_us.in_process)} | ${fmt(h.added_latency_p50_us.backup_process)} | ${verdict(h.added_latency_p50_us.met.in_process)} / ${verdict(h.added_latency_p50_us.met.backup_process)} |`);
    lines.push(`| added latency p99 (us) | | ${fmt(h.added_latency_p99_us.in_process)} | ${fmt(h.added_latency_p99_us.backup_process)} | |`);
    lines.push(`| output held by the output rule, p50 / p99 (us) | | ${hp(h.output_hold_us.in_process)} | ${hp(h.output_hold_us.backup_process)} | |`);
    const v = w.variants;
    lines.push(`| CPU per request at saturation, us (solo primary: ${v.solo.cpu_us_per_request_this_process}) | | ${v.replicated.cpu_us_per_request_this_process} | ${v.replicated_proc.cpu_us_per_request_this_process} + ${v.replicated_proc.cpu_us_per_request_backup_process} (backup) | |`);
  }
  if (h.failover_ms) {
    const f = results.failover;
    const q = (x) => `${fmt(x.p50)} / ${fmt(x.p99)} / ${fmt(x.max)}`;
    lines.push(`| failover, kill -9 -> backup live, p50 / p99 / max (ms, ${f.runs_done} kills) | <= ${TARGETS.failover_ms_max} | | ${q(f.kill_to_live_ms)} | ${verdict(h.failover_ms.met)} |`);
    lines.push(`| kill -9 -> first answer from the new primary, client as in \`ftwasm load\` (backoff <= 200 ms) | | | ${q(f.kill_to_first_answer_ms.load_like)} | |`);
    lines.push(`| kill -9 -> first answer, eager client (backoff <= 20 ms) | | | ${q(f.kill_to_first_answer_ms.eager)} | |`);
  }
  lines.push('');
  if (results.kv) {
    lines.push('| workload | solo req/s | replicated req/s (in-process / process) | ratio (in-process / process) | added latency p50 / p99 us | log Mbit/s | log bytes / request |', '| --- | ---: | ---: | ---: | ---: | ---: | ---: |');
    for (const x of Object.values(results.kv)) {
      const v = x.variants;
      lines.push(`| ${x.what} | ${v.solo.throughput_rps_median} | ${v.replicated.throughput_rps_median} / ${v.replicated_proc.throughput_rps_median} | ${fmt(x.throughput_ratio_vs_solo, 2)} / ${fmt(x.throughput_ratio_proc_vs_solo, 2)} | ${fmt(x.added_latency_us_vs_solo.p50)} / ${fmt(x.added_latency_us_vs_solo.p99)} | ${fmt(v.replicated.log_mbit_s_median, 2)} | ${fmt(v.replicated.log_bytes_per_request)} |`);
    }
  }
  if (results.ticker) {
    const t = results.ticker;
    const v = t.variants;
    lines.push(`| ticker: compute loop, ${1000 / TICK_MS} timer interrupts/s asked (${v.replicated.ticks_per_s} delivered), ${TICKER_SESSIONS} clients | ${v.solo.answers_per_s} answers/s | ${v.replicated.answers_per_s} / ${v.replicated_proc.answers_per_s} | ${fmt(t.answers_ratio_vs_solo, 2)} / ${fmt(t.answers_ratio_proc_vs_solo, 2)} | | ${fmt(v.replicated.log_mbit_s, 2)} | |`);
  }
  if (results.montecarlo) {
    const mc = results.montecarlo;
    const v = mc.variants;
    lines.push(`| montecarlo: one request, ${MONTECARLO_SAMPLES.toLocaleString('en-US')} samples of 8 random bytes | ${fmt(v.solo.seconds, 2)} s | ${fmt(v.replicated.seconds, 2)} / ${fmt(v.replicated_proc.seconds, 2)} s | ${fmt(mc.speed_ratio_vs_solo, 2)} / ${fmt(mc.speed_ratio_proc_vs_solo, 2)} | | ${fmt(v.replicated.log_mbit_s, 1)} | ${v.replicated.log_bytes} |`);
  }
  lines.push('');
  lines.push(
    `Baseline ("solo"): the same \`startPrimary\` without a backup, releasing every output at once; throughput is saturating (${TP_SESSIONS} sessions x ${TP_WINDOW} calls outstanding), ` +
      `latency is one client with one call outstanding; variants interleaved over ${results.setup.rounds} rounds, medians (ratios paired per round). ` +
      'Throughput and latency with the backup in the same process (one event loop for primary, backup and clients) and as an `ftwasm backup` child process; ' +
      `Heartbeat timeout ${KV_TIMING.heartbeat_timeout_ms} ms for throughput and latency, the default 300 ms for failover, ` +
      'failover with `ftwasm primary` / `ftwasm backup` processes killed with SIGKILL during `ftwasm load`. ' +
      `Log Mbit/s = log frame bytes the backup received at the measured throughput (the channel adds 29 bytes a message: length, type, epoch, GCM tag). All on 127.0.0.1.`,
  );
  lines.push(`Measured by \`node bench/replication.mjs\` on ${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB, Node ${m.node}, ${m.date.slice(0, 10)}, load average ${m.loadavg_start[0]} at the start, ${m.loadavg_end[0]} at the end.`);
  return lines.join('\n') + '\n';
}

// ------------------------------------------------------------------------------------------------- main

const HEADLINE_WORKLOAD = 'get90';

/** True when some host/ source is newer than dist/cli.js: this bench (dist/index.js) and its processes would run older code. */
function distStale() {
  const newest = (dir) => {
    let t = 0;
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, e.name);
      t = Math.max(t, e.isDirectory() ? newest(path) : statSync(path).mtimeMs);
    }
    return t;
  };
  return newest(join(root, 'host')) > statSync(join(root, 'dist/cli.js')).mtimeMs;
}

const results = {
  benchmark: 'replication',
  quick,
  machine: {
    cpu: os.cpus()[0]?.model.trim(),
    cores: os.cpus().length,
    memoryGiB: +(os.totalmem() / 2 ** 30).toFixed(1),
    node: process.version,
    date: new Date().toISOString(),
    loadavg_start: os.loadavg().map(round1),
  },
  setup: {
    in_process:
      'kv, ticker and montecarlo parts: every node, its guest worker and the FtClients run in this one process (one event loop for the primary, the backup and the clients; the guest workers are threads), so a backup costs the primary CPU it would not on its own machine',
    baseline:
      'solo = the same startPrimary with no backup (it claims the next epoch after the first heartbeat tick and releases outputs at once); bare = GuestRunner + ClientServer with no log decoding or gate',
    clients: `saturating: ${TP_SESSIONS} FtClient sessions x ${TP_WINDOW} calls outstanding, ${WARM_MS} ms warm-up then ${THROUGHPUT_MS} ms counted; latency: 1 session, 1 call outstanding, ${LATENCY_REQUESTS} calls per round`,
    rounds: ROUNDS,
    heartbeat: `kv, ticker and montecarlo parts: interval 50 ms, timeout ${KV_TIMING.heartbeat_timeout_ms} ms (no failover in a saturated window); failover part: defaults 50 / 300 ms`,
    log_bytes: 'replicated: bytes of log frames the backup received (onLogBytes); bare, solo and replicated_proc: frames the guest of the primary sealed (runner frame events). The channel adds 29 bytes per message (length, type, epoch, AES-GCM tag).',
    output_hold: "time from the guest's send (runner 'send' event) to the client server's output() call, by wrapping the primary's private runner and server fields",
  },
  targets: TARGETS,
  dist_stale: distStale(),
};
if (results.dist_stale) console.log('warning: host/ has sources newer than dist/cli.js: run `npm run build` so that this bench and its processes run the current code');

try {
  if (PARTS.has('kv')) {
    console.log('\n-- kv guest: bare / solo primary / primary + backup, interleaved rounds');
    await kvPart(results);
  }
  if (PARTS.has('ticker') && !overBudget()) await tickerPart(results);
  if (PARTS.has('montecarlo') && !overBudget()) await montecarloPart(results);
  if (PARTS.has('failover') && !overBudget()) {
    console.log(`\n-- failover: ${KILL_RUNS} kill -9 runs with real processes`);
    await failoverPart(results);
  }
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
results.machine.loadavg_end = os.loadavg().map(round1);
results.seconds = Math.round((performance.now() - t_start) / 1e3);
results.headline = headline(results);
const md = markdown(results);
console.log(`\n${md}`);
console.log(`(${results.seconds} s)`);
if (!quick && ALL_PARTS) {
  writeResults('replication', results, md);
}
for (const a of openArbiters) await a.close().catch(() => undefined);
