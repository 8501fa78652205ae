// Catch-up of a backup that joins a primary which is alone: how fast it replays a log it did not see being
// written, and what that costs the primary's clients meanwhile. All in one process, against the same
// primary before, during and after the catch-up (the baseline is the primary alone, in the same run):
//
//   1. a primary alone (backup_wait_ms 0) serves a saturating kv load (get90) for BUILD_MS: the log to catch
//      up on, and the throughput alone;
//   2. a backup joins (in this process, log channel on loopback) while the load goes on; timed until the
//      primary says it is protected again (SYNCED sent): catch-up time, entries and log bytes replayed;
//   3. the same load for WINDOW_MS with the pair protected (outputs wait for the backup's acks).
//
//   node bench/catchup.mjs [--quick]
//
// Writes bench/results/catchup.json and .md (full run only). Every wait is bounded in time.
import { machineFacts } from './common.mjs';
import { POOL, WORKLOADS, pool, setupPayloads } from './kv-workloads.mjs';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { FtClient, instrument, openFileArbiter, startBackup, startPrimary } from 'ftwasm';

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
const module = new WebAssembly.Module(instrument(readFileSync(join(root, 'build/guest/kv.wasm'))));
mkdirSync(join(scratch, 'arbiter'));
const arbiter = await openFileArbiter(join(scratch, 'arbiter'), { deployment: 'catchup' });
let logBytes = 0;
const primary = await startPrimary({ module, arbiter, secret: SECRET, backup_wait_ms: 0, onLogFrames: (b) => (logBytes += b.length) });
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
let caughtUpCount = 0;
const t0 = performance.now();
const a0 = l.answers();
const backup = await startBackup({ module, arbiter, secret: SECRET, primary: primary.replicationAddress() });
await until(() => primary.state().rejoin === undefined && !primary.state().solo && backup.state().synced === true, 'the backup to be synced', CATCHUP_MS_MAX);
const catchupMs = performance.now() - t0;
const during = (l.answers() - a0) / (catchupMs / 1000);
caughtUpCount = backup.state().acked_seq;

// 3. Protected.
const protectedRate = await rateOver(l, WINDOW_MS);
await l.stop();
for (const c of clients) await c.close();
const state = primary.state();
await backup.close();
await primary.close();
await arbiter.close();

const recordEntriesPerS = joinSeq / (BUILD_MS / 1000); // the log's growth while alone (includes the warm-up)
const results = {
  benchmark: 'catchup',
  machine: machineFacts(),
  config: { quick, build_ms: BUILD_MS, window_ms: WINDOW_MS, sessions: SESSIONS, calls_outstanding_per_session: WINDOW, workload: workload.name, backup: 'in this process, log channel on 127.0.0.1' },
  join: { seq: joinSeq, log_bytes: joinBytes },
  catchup: {
    ms: Math.round(catchupMs),
    entries_acked_at_sync: caughtUpCount,
    entries_per_s: Math.round(caughtUpCount / (catchupMs / 1000)),
    log_mb_per_s: +((caughtUpCount / Math.max(1, joinSeq)) * joinBytes / 1e6 / (catchupMs / 1000)).toFixed(1),
    speed_vs_recording: +(caughtUpCount / (catchupMs / 1000) / recordEntriesPerS).toFixed(2),
  },
  throughput_req_per_s: { alone: Math.round(alone), during_catchup: Math.round(during), protected: Math.round(protectedRate) },
  ratios: { during_catchup_vs_alone: +(during / alone).toFixed(2), protected_vs_alone: +(protectedRate / alone).toFixed(2) },
  final_state: { last_seq: state.last_seq, epoch: state.epoch },
};
console.log(JSON.stringify(results, null, 2));
if (!quick) {
  const dir = join(root, 'bench/results');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'catchup.json'), `${JSON.stringify(results, null, 2)}\n`);
  const m = results.machine;
  const md = [
    '| measure | value |',
    '| --- | ---: |',
    `| log at join: entries / bytes | ${joinSeq} / ${joinBytes} |`,
    `| catch-up time (join -> SYNCED) | ${results.catchup.ms} ms |`,
    `| entries caught up per second | ${results.catchup.entries_per_s} (${results.catchup.log_mb_per_s} MB/s of log) |`,
    `| catch-up speed / the log's recording speed | ${results.catchup.speed_vs_recording}x |`,
    `| throughput alone (get90, 8 x 32 outstanding) | ${results.throughput_req_per_s.alone} req/s |`,
    `| throughput during catch-up (ratio to alone) | ${results.throughput_req_per_s.during_catchup} req/s (${results.ratios.during_catchup_vs_alone}) |`,
    `| throughput protected again (ratio to alone) | ${results.throughput_req_per_s.protected} req/s (${results.ratios.protected_vs_alone}) |`,
    '',
    `Measured by \`node bench/catchup.mjs\` on ${m.cpu ?? m.cpuModel ?? 'this machine'}, ${m.cores ?? os.cpus().length} cores, Node ${process.version}, ${new Date().toISOString().slice(0, 10)}; primary, backup and clients in one process.`,
  ].join('\n');
  writeFileSync(join(dir, 'catchup.md'), `${md}\n`);
}
process.exit(0);
