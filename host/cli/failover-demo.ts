// `npm start`: the main job on an embedded default. A primary and a backup of the key-value guest on
// loopback (file arbiter in a temporary directory), a client load with a progress line, a kill -9 of the
// primary midway, then the failover time; a new backup joins the survivor by state transfer (a snapshot of
// its guest, then the log after it: every node runs with --state-transfer), and the survivor is killed too;
// then the client's verdict.
import { existsSync, mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { guestDir } from './demo.ts';
import { portsFrom as portsFromMs, spawnCli, stopCli, until as untilMs, type CliProcess } from './procs.ts';


const STEP_MS_MAX = 20_000;
const until = (cond: () => boolean, what: string): Promise<void> => untilMs(cond, what, STEP_MS_MAX);

/** dist/cli.js: this file is bundled into it, or sits two levels below the repository root. */
function cliPath(): string {
  for (const candidate of ['./cli.js', '../../dist/cli.js']) {
    const path = fileURLToPath(new URL(candidate, import.meta.url));
    if (existsSync(path)) return path;
  }
  throw new Error('dist/cli.js not found: run npm install');
}

const portsFrom = (p: CliProcess, pattern: RegExp, what: string): Promise<number[]> => portsFromMs(p, pattern, what, STEP_MS_MAX);

export async function failoverDemoCommand(opts: { sessions: string; requests: string }): Promise<void> {
  const cli = cliPath();
  const kv = join(guestDir(), 'kv.wasm');
  const dir = mkdtempSync(join(tmpdir(), 'ftwasm-demo-'));
  mkdirSync(join(dir, 'arbiter'));
  writeFileSync(join(dir, 'secret'), randomBytes(32).toString('hex'));
  const procs: CliProcess[] = [];
  // Each line overwrites the progress line (a terminal shows one moving counter).
  const say = (text: string): void => void process.stdout.write(`\r${text.padEnd(40)}\n`);
  try {
    // Nodes listen on ports the system picks (:0) and name them in their ready lines. The client load starts
    // with the first two; the primary names a backup's client address to its clients (the protocol's `nodes`),
    // so the load finds the third node too.
    const common = ['--arbiter', `file:${join(dir, 'arbiter')}`, '--secret-file', join(dir, 'secret'), '--state-transfer'];
    const primary = spawnCli(cli, ['primary', kv, '--clients', '127.0.0.1:0', '--replication', '127.0.0.1:0', ...common]);
    procs.push(primary);
    const [clientsP, replication] = await portsFrom(primary, /ready in epoch 1, clients 127\.0\.0\.1:(\d+), replication 127\.0\.0\.1:(\d+)/, 'the primary');
    say(`primary  pid ${primary.process.pid}: kv guest, clients 127.0.0.1:${clientsP}, epoch 1`);
    const backup = spawnCli(cli, ['backup', kv, '--primary', `127.0.0.1:${replication}`, '--clients', '127.0.0.1:0', '--replication', '127.0.0.1:0', ...common]);
    procs.push(backup);
    const [clientsB] = await portsFrom(backup, /backup: ready, following \S+, clients 127\.0\.0\.1:(\d+)/, 'the backup');
    await until(() => backup.stderr().includes('connected to the primary'), 'the backup');
    say(`backup   pid ${backup.process.pid}: replaying the primary's log, clients 127.0.0.1:${clientsB}`);
    const sessions = Number(opts.sessions);
    const requests = Number(opts.requests);
    const total = sessions * requests;
    const servers = [clientsP, clientsB].map((p) => `127.0.0.1:${p}`).join(',');
    const load = spawnCli(cli, ['load', '--servers', servers, '--sessions', String(sessions), '--requests', String(requests), '--interval-ms', '10']);
    procs.push(load);
    say(`clients: ${sessions} sessions x ${requests} INCR requests, answered only after the backup has the log (output rule)`);
    // The last whole `load: N responses` line (stderr may end in a line still being written).
    const progress = (): number => Number(load.stderr().match(/load: (\d+) responses\n/g)?.at(-1)?.match(/\d+/)?.[0] ?? 0);
    const killAt = Math.floor(total * 0.3 / 100) * 100 || 100;
    const timer = setInterval(() => process.stdout.write(`\r  responses ${String(progress()).padStart(6)} / ${total}`), 100);
    await until(() => progress() >= killAt, `${killAt} responses`);
    const killed = Date.now();
    primary.process.kill('SIGKILL');
    process.stdout.write(`\r  responses ${String(progress()).padStart(6)} / ${total}\n`);
    say(`kill -9 of the primary after ${progress()} responses`);
    await until(() => /LIVE as primary in epoch 2/i.test(backup.stderr()), 'the backup to take over');
    const failoverMs = Date.now() - killed;
    say(`backup won epoch 2 from the arbiter and went live ${failoverMs} ms after the kill`);
    // Act two: protection restored. A new backup joins the survivor while the load goes on, restored from a
    // snapshot of the survivor's guest rather than by replaying the whole log, and the survivor is killed in turn.
    const [replicationB] = await portsFrom(backup, /serving new backups on 127\.0\.0\.1:(\d+)/, 'the survivor to take new backups');
    const joined = Date.now();
    const third = spawnCli(cli, ['backup', kv, '--primary', `127.0.0.1:${replicationB}`, '--clients', '127.0.0.1:0', ...common]);
    procs.push(third);
    const [clientsC] = await portsFrom(third, /backup: ready, following \S+, clients 127\.0\.0\.1:(\d+)/, 'the new backup');
    await until(() => /protected again in epoch 2/.test(backup.stderr()), 'the new backup to catch up');
    // The load's sessions heard of it from the survivor; without that they could not find it after the next kill.
    await until(() => load.stderr().includes(`load: the primary named 127.0.0.1:${clientsC}`), 'the clients to learn the new backup\'s address');
    const snapshot = /snapshot of the guest at seq (\d+) \((\d+) bytes/.exec(backup.stderr());
    const how = snapshot ? `restored from a ${(Number(snapshot[2]) / 1e6).toFixed(2)} MB snapshot at log seq ${snapshot[1]}` : 'caught up';
    say(`new backup pid ${third.process.pid} joined the survivor, ${how}, in ${Date.now() - joined} ms: protected again`);
    say(`the clients learned its address (127.0.0.1:${clientsC}) from the survivor`);
    if (progress() < total) {
      const killed2 = Date.now();
      backup.process.kill('SIGKILL');
      process.stdout.write(`\r  responses ${String(progress()).padStart(6)} / ${total}\n`);
      say(`kill -9 of the survivor after ${progress()} responses`);
      await until(() => /LIVE as primary in epoch 3/i.test(third.stderr()), 'the new backup to take over');
      say(`new backup won epoch 3 and went live ${Date.now() - killed2} ms after the kill`);
    } else {
      say('the load ended before the second kill; the survivor stays primary');
    }
    let loadTimer: NodeJS.Timeout | undefined;
    const code = await Promise.race([load.exited, new Promise<'timeout'>((r) => (loadTimer = setTimeout(() => r('timeout'), 60_000)))]);
    clearTimeout(loadTimer); // else it keeps the process alive for its whole minute after the load ended
    clearInterval(timer);
    process.stdout.write(`\r  responses ${String(total).padStart(6)} / ${total}\n`);
    const verdict = load.stdout().trim().split('\n').at(-1) ?? '';
    say(`client verdict: ${verdict}`);
    say(code === 0 ? 'every reply arrived exactly once and in order across the failover.' : `the load failed (${String(code)}): ${load.stderr().slice(-500)}`);
    if (code !== 0) process.exitCode = 1;
  } finally {
    await Promise.all(procs.map((p) => stopCli(p)));
    rmSync(dir, { recursive: true, force: true });
  }
}
