// Catch-up of a backup that joins a primary which is alone: how fast it replays a log it did not see being
// written, and what that costs the primary's clients meanwhile. All in one process, against the same
// primary before, during and after the catch-up (the baseline is the primary alone, in the same run):
//
//   1. a primary alone (backup_wait_ms 0) serves a saturating kv load (get90) for BUILD_MS: the log to catch
//      up on, and the throughput alone;
//   2. a backup joins while the load goes on (in this process, then, in a second run, as an `ftwasm backup`
//      process; log channel on loopback); timed until the primary is protected again (SYNCED sent). Four
//      runs: by replaying the log from seq 1, and by state transfer (the guest prepared for snapshots,
//      --state-transfer: a snapshot at a recv and the frames after it; docs/SNAPSHOT.md);
//   3. the same load for WINDOW_MS with the pair protected (outputs wait for the backup's acks).
//
//   node bench/catchup.mjs [--quick]
//
// Writes bench/results/catchup.json and .md (full run only). Every wait is bounded in time.
import { freePort, machineFacts, writeResults } from './common.mjs';
import { POOL, WORKLOADS, pool, setupPayloads } from './kv-workloads.mjs';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import os from 'node:os';
import { join } from 'node:path';
import { FtClient, instrument, openFileArbiter, prepareUnwind, startBackup, startPrimary } from 'ftwasm';

const root = new URL('..', import.meta.url).pathname;
const quick = process.argv.includes('--quick');
const BUILD_MS = quick ? 2_000 : 8_000;
const WINDOW_MS = quick ? 1_000 : 3_000;
const SESSIONS = 8;
const WINDOW = 32;
const CATCHUP_MS_MAX = 120_000;
const STEP_MS_MAX = 20_000;
const SECRET = new TextEncoder().encode('bench catch-up secret, 32 bytes!');

const scratch = mkdtempSync(join(os.tmpdir(), 'ftwasm-catchup-'));
process.on('exit', () => rmSync(scratch, { recursive: true, force: true }));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(cond, what, timeout_ms) {
  const t0 = performance.now();
  while (!cond()) {
    if (performance.now() - t0 > timeout_ms) throw new Error(`timed out after ${timeout_ms} ms waiting for ${what}`);
    await sleep(5);
  }
}

/** A saturating load that runs until stop(); answers() counts replies so far. */
function load(clients, payloads) {
  let answered = 0;
  let stopped = false;
  let next = 0;
  const loops = [];
  for (const c of clients) for (let w = 0; w < WINDOW; w++) loops.push((async () => {
    while (!stopped) {
      await c.call(payloads[next++ & (POOL - 1)]);
      answered++;
    }
  })());
  return { answers: () => answered, stop: async () => { stopped = true; await Promise.race([Promise.all(loops), sleep(STEP_MS_MAX)]); } };
}

async function rateOver(l, ms) {
  const a0 = l.answers();
  const t0 = performance.now();
  await sleep(ms);
  return (l.answers() - a0) / ((performance.now() - t0) / 1000);
}

const workload = WORKLOADS.find((w) => w.name === 'get90');
const kvBytes = readFileSync(join(root, 'build/guest/kv.wasm'));
const plainModule = new WebAssembly.Module(instrument(kvBytes));
const preparedModule = new WebAssembly.Module(instrument(await prepareUnwind(kvBytes)));
const cli = join(root, 'dist/cli.js');
const secretFile = join(scratch, 'secret');
writeFileSync(secretFile, Buffer.from(SECRET));

/** One run: a primary alone under load, then a backup joining (in this process or as `ftwasm backup`). */
async function run(variant, by) {
  const dir = join(scratch, `arbiter-${variant}-${by}`);
  mkdirSync(dir);
  const arbiter = await openFileArbiter(dir, { deployment: 'catchup' });
  const module = by === 'snapshot' ? preparedModule : plainModule;
  let logBytes = 0;
  let transferBytes = 0;
  const onEvent = (text) => {
    const m = /snapshot of the guest at seq \d+ \((\d+) bytes/.exec(text);
    if (m) transferBytes = Number(m[1]);
  };
  const primary = await startPrimary({ module, arbiter, secret: SECRET, backup_wait_ms: 0, onLogFrames: (b) => (logBytes += b.length), onEvent });
  await new Promise((r) => primary.once('live', r));
  const servers = [primary.clientAddress()].map(({ host, port }) => `${host}:${port}`);
  const clients = Array.from({ length: SESSIONS }, () => new FtClient({ servers }));
  for (const p of setupPayloads(workload)) await clients[0].call(p);
  const l = load(clients, pool(workload, 7));

  // 1. Alone: build the log, then measure.
  await sleep(BUILD_MS - WINDOW_MS);
  const alone = await rateOver(l, WINDOW_MS);
  const joinSeq = primary.state().last_seq;
  const joinBytes = logBytes;

  // 2. A backup joins while the load goes on.
  const t0 = performance.now();
  const a0 = l.answers();
  let backup;
  let child;
  if (variant === 'in-process') {
    backup = await startBackup({ module, arbiter, secret: SECRET, primary: primary.replicationAddress() });
  } else {
    const r = primary.replicationAddress();
    const flags = by === 'snapshot' ? ['--state-transfer'] : [];
    child = spawn(process.execPath, [cli, 'backup', join(root, 'build/guest/kv.wasm'), '--primary', `${r.host}:${r.port}`, '--clients', `127.0.0.1:${await freePort()}`, '--arbiter', `file:${dir}`, '--deployment', 'catchup', '--secret-file', secretFile, ...flags], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d) => (err = (err + d).slice(-2000)));
    child.once('exit', (code) => code !== null && code !== 0 && console.error(`ftwasm backup exited ${code}: ${err}`));
  }
  await until(() => primary.state().rejoin === undefined && !primary.state().solo, 'the backup to be synced', CATCHUP_MS_MAX);
  const catchupMs = performance.now() - t0;
  const during = (l.answers() - a0) / (catchupMs / 1000);
  const caughtUp = primary.state().acked_seq;

  // 3. Protected.
  const protectedRate = await rateOver(l, WINDOW_MS);
  await l.stop();
  for (const c of clients) await c.close();
  const state = primary.state();
  if (backup) await backup.close();
  if (child) child.kill('SIGKILL');
  await primary.close();
  await arbiter.close();
  const recordEntriesPerS = joinSeq / (BUILD_MS / 1000); // the log's growth while alone (warm-up included)
  return {
    variant,
    by,
    join: { seq: joinSeq, log_bytes: joinBytes },
    ...(by === 'snapshot' ? { transfer_bytes: transferBytes } : {}),
    catchup: {
      ms: Math.round(catchupMs),
      entries_acked_at_sync: caughtUp,
      entries_per_s: Math.round(caughtUp / (catchupMs / 1000)),
      speed_vs_recording: +(caughtUp / (catchupMs / 1000) / recordEntriesPerS).toFixed(2),
    },
    throughput_req_per_s: { alone: Math.round(alone), during_catchup: Math.round(during), protected: Math.round(protectedRate) },
    ratios: { during_catchup_vs_alone: +(during / alone).toFixed(2), protected_vs_alone: +(protectedRate / alone).toFixed(2) },
    final_state: { last_seq: state.last_seq, epoch: state.epoch },
  };
}

const runs = [];
for (const by of ['log', 'snapshot']) for (const variant of ['in-process', 'process']) runs.push(await run(variant, by));
const results = {
  benchmark: 'catchup',
  machine: machineFacts(),
  config: { quick, build_ms: BUILD_MS, window_ms: WINDOW_MS, sessions: SESSIONS, calls_outstanding_per_session: WINDOW, workload: workload.name, primary_and_clients: 'this process', backup: 'in this process, or an `ftwasm backup` child process; log channel on 127.0.0.1' },
  runs,
};
console.log(JSON.stringify(results, null, 2));
if (!quick) {
  const m = results.machine;
  const row = (label, f) => `| ${label} | ${runs.map(f).join(' | ')} |`;
  const md = [
    `| measure | ${runs.map((r) => `${r.by === 'snapshot' ? 'state transfer' : 'log from seq 1'}, backup ${r.variant}`).join(' | ')} |`,
    `| --- | ${runs.map(() => '---:').join(' | ')} |`,
    row('log at join: entries / MB', (r) => `${r.join.seq} / ${(r.join.log_bytes / 1e6).toFixed(1)}`),
    row('sent to the joining backup before the frames after it, MB', (r) => (r.by === 'snapshot' ? `${(r.transfer_bytes / 1e6).toFixed(2)} (snapshot)` : `${(r.join.log_bytes / 1e6).toFixed(1)} (log)`)),
    row('catch-up time (join -> SYNCED), ms', (r) => r.catchup.ms),
    row('entries caught up per second', (r) => r.catchup.entries_per_s),
    row("catch-up speed / the log's recording speed", (r) => `${r.catchup.speed_vs_recording}x`),
    row('throughput alone, req/s (get90, 8 x 32 outstanding)', (r) => r.throughput_req_per_s.alone),
    row('throughput during catch-up, req/s (ratio to alone)', (r) => `${r.throughput_req_per_s.during_catchup} (${r.ratios.during_catchup_vs_alone})`),
    row('throughput protected again, req/s (ratio to alone)', (r) => `${r.throughput_req_per_s.protected} (${r.ratios.protected_vs_alone})`),
    '',
    `Measured by \`node bench/catchup.mjs\` on ${m.cpu}, ${m.cores} cores, Node ${m.node}, ${m.date.slice(0, 10)}; the primary and the clients in one process, the backup in it too or as an \`ftwasm backup\` process (with --state-transfer for state transfer); load average ${m.loadAverageStart} at the start. The throughput-alone column of each run is that run's own baseline; the state-transfer runs use the guest prepared for snapshots.`,
  ].join('\n');
  writeResults('catchup', results, md);
}
process.exit(0);
