// Replication cost on the primary, with the client load in a process of its own (as clients would be on
// other machines), in two placements of the processes on this 2-core box:
//
//   split:  the primary (`ftwasm primary`: main thread and guest worker) pinned alone to cpu 0; the client
//           load (bench/kv-load.mjs) and, when replicated, `ftwasm backup` pinned to cpu 1 (taskset). The
//           nearest this box comes to VMware FT's backup on another machine, except that the backup shares
//           its core with the load.
//   shared: no pinning: every process on both cores, as bench/replication.mjs runs them.
//
// Per workload and placement: solo (the same primary with --backup-wait-ms 0: it goes on alone and releases
// at once) against replicated, alternating within every round, a fresh set of processes per run; ratios paired
// per round, medians reported. Also the primary process's CPU per request (user + system of all its threads
// over the counted window, from /proc): replicated over solo is what replication costs the primary itself,
// whatever core the backup and the clients take their CPU from.
//
//   node bench/replication-cores.mjs [--quick] [--workloads=get90,...]
//
// Environment (for investigation, not for recorded runs): BENCH_NODE_FLAGS (extra node flags for the primary
// and backup, e.g. --cpu-prof), BENCH_LAG_MAX (the primary's --replay-lag-ms-max), BENCH_SESSIONS (client sessions, default 8), BENCH_DEBUG (print what
// the nodes said). Needs taskset (util-linux) and 2 cores. Writes bench/results/replication-cores.json and
// .md (full run of every workload only). All on 127.0.0.1; every wait is bounded in time.
import { freePort, machineFacts, median, quantile, writeResults } from './common.mjs';
import { WORKLOADS } from './kv-workloads.mjs';
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const cli = join(root, 'dist/cli.js');
const quick = process.argv.includes('--quick');
const only = process.argv.find((a) => a.startsWith('--workloads='))?.slice('--workloads='.length).split(',');
// Extra node flags for the primary and backup processes (for example --cpu-prof), from the environment.
const NODE_FLAGS = (process.env.BENCH_NODE_FLAGS ?? '').split(' ').filter(Boolean);

const ROUNDS = quick ? 1 : 3;
const WARM_MS = quick ? 300 : 500;
const WINDOW_MS = quick ? 700 : 2_000;
const SESSIONS = Number(process.env.BENCH_SESSIONS ?? 8);
const WINDOW = 32; // calls outstanding per session (< requests_inflight_max, 64)
const LATENCY_CALLS = quick ? 200 : 800;
const STEP_MS_MAX = 20_000; // a process getting ready, a load run finishing
const LOAD_MS_MAX = 60_000;
const TARGETS = { throughput_ratio_min: 0.95, added_p50_us_max: 200 };
const VARIANTS = ['solo', 'replicated'];
const PLACEMENTS = {
  split: { primary: '0', other: '1' },
  shared: { primary: '0,1', other: '0,1' },
};

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const round1 = (x) => (Number.isFinite(x) ? Math.round(x * 10) / 10 : null);
const round3 = (x) => (Number.isFinite(x) ? Math.round(x * 1000) / 1000 : null);

if (os.cpus().length < 2) {
  console.error('bench/replication-cores: needs 2 cores');
  process.exit(2);
}
if (spawnSync('taskset', ['-c', '0', 'true']).status !== 0) {
  console.error('bench/replication-cores: needs taskset (Debian package util-linux)');
  process.exit(2);
}

const scratch = mkdtempSync(join(os.tmpdir(), 'ftwasm-bench-cores-'));
const secretFile = join(scratch, 'secret');
writeFileSync(secretFile, 'bench replication secret, 32 bytes');
const guest = join(root, 'build/guest/kv.wasm');

/** A child pinned to `cpu`; collects its stdout and stderr. */
function pinned(cpu, args) {
  const child = spawn('taskset', ['-c', cpu, process.execPath, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const p = { child, out: '', err: '', exited: new Promise((r) => child.once('exit', (code, signal) => r({ code, signal }))) };
  child.stdout.on('data', (d) => (p.out += d));
  child.stderr.on('data', (d) => (p.err += d));
  return p;
}

async function waitFor(p, cond, what) {
  const t0 = performance.now();
  while (!cond()) {
    if (p.child.exitCode !== null) throw new Error(`${what}: the process exited (${p.child.exitCode}); it said: ${p.err.slice(-600)}`);
    if (performance.now() - t0 > STEP_MS_MAX) throw new Error(`timed out waiting for ${what}; it said: ${p.err.slice(-600)}`);
    await sleep(5);
  }
}

async function stop(p) {
  if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGTERM');
  const r = await Promise.race([p.exited, sleep(5_000).then(() => 'timeout')]);
  if (r === 'timeout') {
    p.child.kill('SIGKILL');
    await p.exited;
  }
}

/** CPU seconds (user + system, all threads) of a process so far, from /proc. */
function cpuSeconds(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** BENCH_THREADS: CPU seconds per thread of a process so far, by tid (with its name), from /proc. */
function threadSeconds(pid) {
  const out = {};
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const name = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
      const f = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8').split(') ')[1].split(' ');
      out[tid] = { name, s: (Number(f[11]) + Number(f[12])) / 100 };
    } catch {
      // the thread ended
    }
  }
  return out;
}

function threadCores(a, b, seconds) {
  const rows = [];
  for (const [tid, t] of Object.entries(b)) {
    const c = (t.s - (a[tid]?.s ?? 0)) / seconds;
    if (c >= 0.01) rows.push(`${t.name}#${tid} ${c.toFixed(2)}`);
  }
  return rows.join(', ');
}

let runs = 0;
async function startNodes(variant, cpus) {
  const dir = join(scratch, `arbiter-${++runs}`);
  mkdirSync(dir);
  const clientsPort = await freePort();
  const replicationPort = await freePort();
  const primary = pinned(cpus.primary, [
    ...NODE_FLAGS, cli, 'primary', guest, '--clients', `127.0.0.1:${clientsPort}`, '--replication', `127.0.0.1:${replicationPort}`,
    '--arbiter', `file:${dir}`, '--deployment', 'bench', '--secret-file', secretFile,
    ...(variant === 'solo' ? ['--backup-wait-ms', '0'] : []),
    ...(process.env.BENCH_LAG_MAX ? ['--replay-lag-ms-max', process.env.BENCH_LAG_MAX] : []),
  ]);
  const nodes = { primary, backup: undefined, server: `127.0.0.1:${clientsPort}` };
  if (variant === 'solo') {
    await waitFor(primary, () => primary.err.includes('going on without a backup'), 'the solo primary to go live');
    return nodes;
  }
  await waitFor(primary, () => primary.err.includes('primary: ready'), 'the primary to start');
  nodes.backup = pinned(cpus.other, [
    ...NODE_FLAGS, cli, 'backup', guest, '--primary', `127.0.0.1:${replicationPort}`, '--clients', `127.0.0.1:${await freePort()}`,
    '--arbiter', `file:${dir}`, '--deployment', 'bench', '--secret-file', secretFile,
  ]);
  await waitFor(primary, () => /backup .* connected/.test(primary.err), 'the backup to connect');
  return nodes;
}

/** One load run against `nodes`: throughput window, CPU of each party over it, then closed-loop latency. */
async function measure(nodes, workload, seed, cpus) {
  const load = pinned(cpus.other, [
    join(root, 'bench/kv-load.mjs'), '--server', nodes.server, '--workload', workload.name, '--seed', String(seed),
    '--sessions', String(SESSIONS), '--window', String(WINDOW), '--warm-ms', String(WARM_MS), '--ms', String(WINDOW_MS), '--latency', String(LATENCY_CALLS),
  ]);
  const pids = { primary: nodes.primary.child.pid, backup: nodes.backup?.child.pid, load: load.child.pid };
  const sample = () => ({
    t: performance.now(),
    ...Object.fromEntries(Object.entries(pids).filter(([, pid]) => pid).map(([k, pid]) => [k, cpuSeconds(pid)])),
    ...(process.env.BENCH_THREADS ? { threads: Object.fromEntries(Object.entries(pids).filter(([k, pid]) => pid && k !== 'load').map(([k, pid]) => [k, threadSeconds(pid)])) } : {}),
  });
  let m0;
  let m1;
  const t0 = performance.now();
  while (m1 === undefined) {
    if (performance.now() - t0 > LOAD_MS_MAX) throw new Error(`the load run did not finish its window; it said: ${load.err.slice(-600)}`);
    if (load.child.exitCode !== null) throw new Error(`the load exited (${load.child.exitCode}): ${load.err.slice(-600)}`);
    if (m0 === undefined && load.out.includes('"window-start"')) m0 = sample();
    if (m0 !== undefined && load.out.includes('"window-end"')) m1 = sample();
    await sleep(1);
  }
  const r = await Promise.race([load.exited, sleep(LOAD_MS_MAX).then(() => 'timeout')]);
  if (r === 'timeout' || r.code !== 0) {
    await stop(load);
    throw new Error(`the load run failed: ${load.err.slice(-600)}`);
  }
  const result = JSON.parse(load.out.trim().split('\n').at(-1));
  const s = (m1.t - m0.t) / 1e3;
  const cores = Object.fromEntries(Object.keys(pids).filter((k) => m0[k] !== undefined).map((k) => [k, round3((m1[k] - m0[k]) / s)]));
  if (m0.threads) for (const k of Object.keys(m0.threads)) console.error(`  threads of the ${k}: ${threadCores(m0.threads[k], m1.threads[k], s)}`);
  return {
    requests_per_s: result.requests_per_s,
    cpu_us_per_request: Object.fromEntries(Object.entries(cores).map(([k, c]) => [k, round1((c * 1e6) / result.requests_per_s)])),
    cores,
    latency_us: result.latency_us,
  };
}

const summary = (values) => {
  const s = [...values].sort((a, b) => a - b);
  return { n: s.length, p50: round1(quantile(s, 0.5)), p90: round1(quantile(s, 0.9)), p99: round1(quantile(s, 0.99)) };
};

const t_start = performance.now();
const results = { benchmark: 'replication-cores', machine: machineFacts(), config: {}, workloads: {} };
results.config = {
  rounds: ROUNDS, warm_ms: WARM_MS, window_ms: WINDOW_MS, sessions: SESSIONS, calls_outstanding_per_session: WINDOW, latency_calls: LATENCY_CALLS,
  placements: {
    split: `primary pinned to cpu ${PLACEMENTS.split.primary}; client load process and backup pinned to cpu ${PLACEMENTS.split.other} (taskset)`,
    shared: 'no pinning: primary, backup and client load share both cores',
  },
  heartbeat: 'defaults: 50 ms interval, 300 ms timeout', arbiter: 'file',
};

/**
 * The most requests per second the box could carry replicated, were every core of a placement busy all the
 * time at the replicated run's CPU cost per request: per cpu set, its cores over the CPU per request of the
 * processes pinned to it; the tightest set bounds. Over the solo rate: the throughput ratio this box allows.
 */
function ceiling(cpuPerRequest, cpus) {
  const sets = new Map();
  for (const [party, set] of [['primary', cpus.primary], ['load', cpus.other], ['backup', cpus.other]]) {
    sets.set(set, (sets.get(set) ?? 0) + (cpuPerRequest[party] ?? 0));
  }
  return Math.min(...[...sets].map(([set, us]) => (set.split(',').length * 1e6) / us));
}

/** Medians over the rounds of one workload in one placement. */
function summarize(workload, rows, cpus) {
  const ratios = rows.replicated.map((r, i) => r.requests_per_s / rows.solo[i].requests_per_s);
  const lat = Object.fromEntries(VARIANTS.map((v) => [v, summary(rows[v].flatMap((r) => r.latency_us))]));
  const med = (v, f) => Object.fromEntries(Object.keys(rows[v][0][f]).map((k) => [k, round3(median(rows[v].map((r) => r[f][k])))]));
  const cpu = Object.fromEntries(VARIANTS.map((v) => [v, med(v, 'cpu_us_per_request')]));
  return {
    requests_per_s: Object.fromEntries(VARIANTS.map((v) => [v, Math.round(median(rows[v].map((r) => r.requests_per_s)))])),
    throughput_ratio: round3(median(ratios)),
    throughput_ratios: ratios.map(round3),
    latency_us: lat,
    added_latency_us: { p50: round1(lat.replicated.p50 - lat.solo.p50), p99: round1(lat.replicated.p99 - lat.solo.p99) },
    cpu_us_per_request: cpu,
    // Solo's primary CPU per request over the replicated primary's: the throughput ratio of a primary whose
    // own core is the bottleneck, with its backup and clients elsewhere.
    primary_cpu_ratio: round3(cpu.solo.primary / cpu.replicated.primary),
    cores: Object.fromEntries(VARIANTS.map((v) => [v, med(v, 'cores')])),
    // What the two cores allow at these costs (see ceiling): when the replicated rate is near it, the cores
    // are the bound, not the pipeline.
    replicated_ceiling_per_s: Math.round(ceiling(cpu.replicated, cpus)),
    ceiling_ratio: round3(ceiling(cpu.replicated, cpus) / median(rows.solo.map((r) => r.requests_per_s))),
  };
}

try {
  for (const [wi, workload] of WORKLOADS.entries()) {
    if (only && !only.includes(workload.name)) continue;
    const w = { what: workload.what };
    for (const [pi, [placement, cpus]] of Object.entries(PLACEMENTS).entries()) {
      const rows = Object.fromEntries(VARIANTS.map((v) => [v, []]));
      for (let round = 0; round < ROUNDS; round++) {
        const order = (round + wi + pi) % 2 === 0 ? VARIANTS : [...VARIANTS].reverse();
        for (const v of order) {
          const nodes = await startNodes(v, cpus);
          try {
            rows[v].push(await measure(nodes, workload, 1000 + wi, cpus));
          } finally {
            if (nodes.backup) await stop(nodes.backup);
            await stop(nodes.primary);
            if (process.env.BENCH_DEBUG) console.error(`--- ${v} primary:\n${nodes.primary.err}\n--- backup:\n${nodes.backup?.err ?? ''}`);
          }
        }
      }
      const x = (w[placement] = summarize(workload, rows, cpus));
      console.log(
        `${workload.name.padEnd(7)} ${placement.padEnd(6)} solo ${String(x.requests_per_s.solo).padStart(6)} req/s  replicated ${String(x.requests_per_s.replicated).padStart(6)}  ratio ${x.throughput_ratio.toFixed(3)}  ` +
          `added p50/p99 ${x.added_latency_us.p50}/${x.added_latency_us.p99} us  primary CPU/req ${x.cpu_us_per_request.solo.primary} -> ${x.cpu_us_per_request.replicated.primary} us (${x.primary_cpu_ratio})  ` +
          `cores primary ${x.cores.replicated.primary}, load ${x.cores.replicated.load} + backup ${x.cores.replicated.backup}  ` +
          `CPU/req load ${x.cpu_us_per_request.replicated.load} backup ${x.cpu_us_per_request.replicated.backup}  ceiling ${x.replicated_ceiling_per_s} req/s (ratio ${x.ceiling_ratio})`,
      );
    }
    results.workloads[workload.name] = w;
  }
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
const g = results.workloads.get90;
if (g) {
  results.summary = {
    get90: Object.fromEntries(Object.keys(PLACEMENTS).map((p) => [p, { throughput_ratio: g[p].throughput_ratio, ceiling_ratio: g[p].ceiling_ratio, added_latency_p50_us: g[p].added_latency_us.p50, primary_cpu_ratio: g[p].primary_cpu_ratio }])),
    targets: TARGETS,
  };
}
results.machine.loadAverageEnd = round1(os.loadavg()[0]);
results.seconds = round1((performance.now() - t_start) / 1e3);

const m = results.machine;
const md = [
  '| workload | placement | solo req/s | replicated req/s | throughput ratio | ceiling: req/s (ratio) the cores allow replicated | added latency p50 / p99 us | primary CPU us/request, solo -> replicated (ratio) | CPU us/request replicated: load / backup | cores, replicated: primary / load / backup |',
  '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ...Object.values(results.workloads).flatMap((w) =>
    Object.keys(PLACEMENTS).map((p) => {
      const x = w[p];
      return `| ${w.what} | ${p} | ${x.requests_per_s.solo} | ${x.requests_per_s.replicated} | ${x.throughput_ratio.toFixed(2)} | ${x.replicated_ceiling_per_s} (${x.ceiling_ratio.toFixed(2)}) | ${x.added_latency_us.p50} / ${x.added_latency_us.p99} | ${x.cpu_us_per_request.solo.primary} -> ${x.cpu_us_per_request.replicated.primary} (${x.primary_cpu_ratio.toFixed(2)}) | ${x.cpu_us_per_request.replicated.load} / ${x.cpu_us_per_request.replicated.backup} | ${x.cores.replicated.primary} / ${x.cores.replicated.load} / ${x.cores.replicated.backup} |`;
    }),
  ),
  '',
  `Processes: \`ftwasm primary\` (solo: --backup-wait-ms 0), \`ftwasm backup\`, and the client load (${SESSIONS} sessions x ${WINDOW} calls outstanding, then one call at a time for latency) in a process of its own. ` +
    `split: primary alone on cpu ${PLACEMENTS.split.primary}, load and backup on cpu ${PLACEMENTS.split.other}; shared: no pinning. ${ROUNDS} rounds, variants alternating, fresh processes per run; ratios = medians of per-round ratios. ` +
    'Primary CPU = user + system of all its threads over the counted window (/proc). ' +
    'Ceiling = the rate at which the replicated run\'s CPU per request (primary, backup, load) would keep every core of the placement busy (split: the tighter of cpu 0 and cpu 1); its ratio is over the solo rate. All on 127.0.0.1.',
  `Measured by \`node bench/replication-cores.mjs\` on ${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB, Node ${m.node}, ${m.date.slice(0, 10)}, load average ${m.loadAverageStart} at the start, ${m.loadAverageEnd} at the end.`,
].join('\n');
console.log(`\n${md}\n\n(${results.seconds} s)`);
if (!quick && !only) {
  writeResults('replication-cores', results, md);
}
