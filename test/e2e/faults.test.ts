// Faults with real processes on loopback, at seeded moments (FTWASM_SEED), each scenario bounded in time:
// kill -9 of the backup, SIGSTOP of the primary past the heartbeat timeout then SIGCONT, and a partition
// between primary and backup made by a black-hole proxy (once with the file arbiter, once with etcd), after a
// fault-free baseline. In each, the client load's verdict is all zeros, exactly one node ends up live, and the
// survivor's final state hash and instruction count (printed when SIGTERM stops it) equal those of
// `ftwasm replay` of the log it wrote with --log, i.e. of a fault-free run of that log.
import { beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { rng } from '../net/support.ts';
import { ETCD_PRESENT, etcdForTests, type EtcdForTests } from '../arbiter/etcd-server.ts';
import { stopCli, type CliProcess } from '../../host/cli/procs.ts';
import { decodeFileHeader } from '../../host/log/index.ts';
import { startProxy, type Proxy } from './proxy.ts';
import { e2eFixture, NODE_TIMEOUT_MS, nodeTiming, allAnswered, exitWithin, loadVerdict, startNodes, until, expectSurvivorIsReplay, replayOf, stopSurvivor } from './support.ts';

const EXIT_WAIT_MS = 15_000;
const LOAD_WAIT_MS = 45_000;
const HEARTBEAT_TIMEOUT_MS = NODE_TIMEOUT_MS; // what the nodes are given (test/e2e/support.ts)
const SESSIONS = 3;
const REQUESTS = 300;

const seed = process.env.FTWASM_SEED ? Number(process.env.FTWASM_SEED) : (Math.random() * 2 ** 31) | 0;
const random = rng(seed);
const proxies: Proxy[] = [];
let etcd: EtcdForTests | undefined;
let runs = 0;

const fx = e2eFixture('faults', {
  after: async () => {
    await Promise.all(proxies.map((p) => p.close()));
    await etcd?.stop();
  },
});
const ftwasm = fx.ftwasm;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const exitOf = (p: CliProcess, timeout_ms = EXIT_WAIT_MS): Promise<number | null | 'timeout'> => exitWithin(p, timeout_ms);

beforeAll(() => {
  console.log(`[faults] seed ${seed} (rerun with FTWASM_SEED=${seed})`);
});

interface Pair {
  primary: CliProcess;
  backup: CliProcess;
  logP: string;
  logB: string;
  servers: string;
  proxy?: Proxy;
  describe: () => string;
}

/** A primary and its backup, both writing --log; the backup reaches the primary through a proxy if asked. */
async function startPair(arbiter: string, options: { deployment?: string; proxy?: 'forward' | 'keep-open' } = {}): Promise<Pair> {
  const runDir = join(fx.dir, `run-${++runs}`);
  mkdirSync(runDir);
  const common = ['--arbiter', arbiter, '--secret-file', fx.secret, ...nodeTiming, ...(options.deployment ? ['--deployment', options.deployment] : [])];
  const logP = join(runDir, 'primary.ftlog');
  const logB = join(runDir, 'backup.ftlog');
  let proxy: Proxy | undefined;
  const { primary, backup, clientsP, clientsB } = await startNodes(fx, {
    common, primaryArgs: ['--log', logP], backupArgs: ['--log', logB],
    // The backup reaches the primary through a proxy, if asked.
    ...(options.proxy
      ? {
          via: async (replication: number) => {
            proxy = await startProxy({ host: '127.0.0.1', port: replication }, { keepOpen: options.proxy === 'keep-open' });
            proxies.push(proxy);
            return proxy.port;
          },
        }
      : {}),
  });
  const describe = (): string => `primary said:\n${primary.stderr().slice(-3000)}\nbackup said:\n${backup.stderr().slice(-3000)}`;
  return { primary, backup, logP, logB, servers: `127.0.0.1:${clientsP},127.0.0.1:${clientsB}`, ...(proxy ? { proxy } : {}), describe };
}

function startLoad(servers: string): CliProcess {
  return ftwasm(['load', '--servers', servers, '--sessions', String(SESSIONS), '--requests', String(REQUESTS), '--interval-ms', '2', '--timeout-ms', '40000']);
}

/** A seeded moment under load: after 100..400 replies (as the load reports them in hundreds), plus 0..30 ms. */
async function seededMoment(load: CliProcess, label: string): Promise<string> {
  const hundreds = 1 + Math.floor(random() * 4);
  const extra_ms = Math.floor(random() * 30);
  await until(() => load.stderr().includes(`load: ${hundreds * 100} responses`), `${label}: ${hundreds * 100} replies; load said:\n${load.stderr().slice(-1000)}`);
  await sleep(extra_ms);
  return `after ${hundreds * 100} replies + ${extra_ms} ms`;
}

async function expectAllZeros(load: CliProcess, context: () => string): Promise<void> {
  const { code, verdict, line } = await loadVerdict(load, LOAD_WAIT_MS);
  expect(code, `load said ${line}\n${load.stderr().slice(-2000)}\n${context()}`).toBe(0);
  expect(verdict).toEqual(allAnswered(SESSIONS * REQUESTS));
}

/** A log file's frames: every byte after its header (whose creation time differs between nodes). */
function framesOf(path: string): Buffer {
  const bytes = readFileSync(path);
  return bytes.subarray(decodeFileHeader(bytes, path).headerBytes);
}

/** `ROLE: released up to seq N, K outputs, epoch E` (the node's last line). */
function releasedOf(p: CliProcess, role: string): { seq: number; outputs: number } {
  const m = new RegExp(`^${role}: released up to seq (\\d+), (\\d+) outputs`, 'm').exec(p.stderr());
  expect(m, `${role}'s released line; it said:\n${p.stderr().slice(-2000)}`).not.toBeNull();
  return { seq: Number(m![1]), outputs: Number(m![2]) };
}

describe('faults with real processes on loopback', () => {
  it('no fault (the baseline): SIGTERM of the primary ends both nodes; both logs are the same bytes, and both final states equal its replay', { timeout: 60_000 }, async () => {
    const arbiterDir = join(fx.dir, 'arbiter-0');
    mkdirSync(arbiterDir);
    const pair = await startPair(`file:${arbiterDir}`);
    try {
      const load = startLoad(pair.servers);
      await expectAllZeros(load, pair.describe);
      const primary = await stopSurvivor(fx.children, pair.primary, 'primary', pair.describe);
      // The backup replays the END its primary recorded, ends with the same state, and never fails over.
      expect(await exitOf(pair.backup), pair.describe()).toBe(0);
      expect(pair.backup.stderr()).not.toMatch(/primary lost|claiming/);
      const backup = new RegExp(`^backup: final state ([0-9a-f]{32,64}) icount (\\d+) last seq (\\d+), log `, 'm').exec(pair.backup.stderr());
      expect(backup, pair.describe()).not.toBeNull();
      expect({ hash: backup![1], icount: backup![2], lastSeq: Number(backup![3]) }).toEqual(primary);
      expect(framesOf(pair.logB).equals(framesOf(pair.logP)), 'the backup logged the same frames as the primary').toBe(true);
      const replay = await replayOf(fx.children, pair.logP);
      expect({ hash: replay.hash, icount: replay.icount }).toEqual({ hash: primary.hash, icount: primary.icount });
      console.log(`[faults] no fault: primary and backup final state ${primary.hash.slice(0, 16)}… icount ${primary.icount}, ${primary.lastSeq} entries, equal to ftwasm replay`);
    } finally {
      await stopCli(pair.primary);
      await stopCli(pair.backup);
    }
  });

  it('kill -9 of the backup: the primary claims epoch 2 and goes on alone; verdict all zeros; its state equals a replay of its log', { timeout: 90_000 }, async () => {
    const arbiterDir = join(fx.dir, 'arbiter-a');
    mkdirSync(arbiterDir);
    const pair = await startPair(`file:${arbiterDir}`);
    try {
      const load = startLoad(pair.servers);
      const moment = await seededMoment(load, 'backup kill');
      pair.backup.process.kill('SIGKILL');
      await until(() => pair.primary.stderr().includes('won epoch 2: going on without a backup'), `the primary to go on alone (kill ${moment})`).catch((e: Error) => {
        throw new Error(`${e.message}\n${pair.describe()}`);
      });
      await expectAllZeros(load, pair.describe);
      console.log(`[faults] backup kill -9 ${moment}: verdict all zeros; ${load.stderr().match(/load: outputs by epoch .*/)?.[0]}`);
      await expectSurvivorIsReplay(fx.children, pair.primary, 'primary', pair.logP, pair.describe);
    } finally {
      await stopCli(pair.primary);
      await stopCli(pair.backup);
    }
  });

  it('SIGSTOP of the primary for 3x the heartbeat timeout, then SIGCONT: the backup is live in epoch 2, the old primary halts and released nothing after the stop', { timeout: 90_000 }, async () => {
    const arbiterDir = join(fx.dir, 'arbiter-b');
    mkdirSync(arbiterDir);
    // Through a proxy that does not pass the backup's close on: the resumed primary reads what waits in its
    // socket (below) instead of finding the connection reset first.
    const pair = await startPair(`file:${arbiterDir}`, { proxy: 'keep-open' });
    try {
      const load = startLoad(pair.servers);
      const moment = await seededMoment(load, 'primary stop');
      // So that acks are surely waiting for the primary when it resumes: the backup is stopped first for
      // 30 ms (well under the heartbeat timeout), the primary's frames of those 30 ms wait in its socket, and
      // it acks them only once the primary is stopped. The primary reads those acks after SIGCONT, long
      // after the backup went live: they must not let any output out.
      pair.backup.process.kill('SIGSTOP');
      await sleep(30);
      const stopped_ms = Date.now();
      pair.primary.process.kill('SIGSTOP');
      pair.backup.process.kill('SIGCONT');
      try {
        await until(() => pair.backup.stderr().includes('LIVE as primary in epoch 2'), 'the backup to go live').catch((e: Error) => {
          throw new Error(`${e.message}\n${pair.describe()}`);
        });
        await until(() => Date.now() - stopped_ms >= 3 * HEARTBEAT_TIMEOUT_MS, 'three heartbeat timeouts to pass');
      } finally {
        pair.primary.process.kill('SIGCONT');
      }
      // The old primary sees it lost epoch 2 and halts (exit 2), without ever winning anything.
      expect(await exitOf(pair.primary), pair.describe()).toBe(2);
      expect(pair.primary.stderr()).toMatch(/primary: halted: (epoch 2 is held by .*this primary \(epoch 1\) is stale|lost epoch 2 to )/);
      expect(pair.primary.stderr()).not.toMatch(/won epoch 2/);
      // The output rule across the stop: every release of the primary is followed at once by a RELEASED
      // message to the backup, which read them all before going live (nothing was in the way). A release
      // after SIGCONT (an ack read late, from before the stop) would put the primary's final watermark above
      // the last one the backup heard of.
      const lastHeard = /backup: primary lost \(.*\); it had released up to seq (\d+);/.exec(pair.backup.stderr());
      expect(lastHeard, pair.describe()).not.toBeNull();
      const released = releasedOf(pair.primary, 'primary');
      expect(released.seq, `the primary released up to seq ${released.seq}, the backup knew of ${lastHeard![1]}\n${pair.describe()}`).toBeLessThanOrEqual(Number(lastHeard![1]));
      expect(released.outputs, 'outputs went out before the stop').toBeGreaterThan(0);
      await expectAllZeros(load, pair.describe);
      console.log(`[faults] primary SIGSTOP ${moment}: backup live; old primary halted, released up to seq ${released.seq} (backup knew ${lastHeard![1]}); verdict all zeros; ${load.stderr().match(/load: outputs by epoch .*/)?.[0]}`);
      await expectSurvivorIsReplay(fx.children, pair.backup, 'backup', pair.logB, pair.describe);
    } finally {
      await stopCli(pair.primary);
      await stopCli(pair.backup);
      await pair.proxy?.close();
    }
  });

  if (!ETCD_PRESENT) console.warn('[faults] partition with the etcd arbiter NOT RUN: no etcd-server here (apt-get install -y etcd-server); CI always runs it');
  for (const kind of ETCD_PRESENT ? (['file', 'etcd'] as const) : (['file'] as const)) {
    it(`partition between primary and backup (black-hole proxy), ${kind} arbiter: exactly one node live in epoch 2, the other halts; verdict all zeros; the survivor's state equals a replay of its log`, { timeout: 90_000 }, async () => {
      let arbiter: string;
      let deployment: string | undefined;
      if (kind === 'file') {
        const arbiterDir = join(fx.dir, 'arbiter-c');
        mkdirSync(arbiterDir);
        arbiter = `file:${arbiterDir}`;
      } else {
        etcd = await etcdForTests(); // FTWASM_ETCD_URL, or an etcd of our own (fails in CI without either)
        arbiter = `etcd:${etcd.url}`;
        deployment = `faults-${process.pid}-${Date.now()}`;
        console.log(`[faults] etcd arbiter: ${etcd.url} (${etcd.origin}), deployment ${deployment}`);
      }
      const pair = await startPair(arbiter, { proxy: 'forward', ...(deployment ? { deployment } : {}) });
      try {
        expect(pair.primary.stderr()).toContain(kind === 'etcd' ? 'arbiter etcd:' : 'arbiter file:');
        const load = startLoad(pair.servers);
        const moment = await seededMoment(load, 'partition');
        pair.proxy!.partition();
        // Both sides stop hearing each other and race for epoch 2: one wins and goes live, the other halts.
        const primaryWon = (): boolean => pair.primary.stderr().includes('won epoch 2: going on without a backup');
        const backupWon = (): boolean => pair.backup.stderr().includes('LIVE as primary in epoch 2');
        await until(() => (primaryWon() && pair.backup.process.exitCode !== null) || (backupWon() && pair.primary.process.exitCode !== null), `one node live and the other halted (partition ${moment})`).catch((e: Error) => {
          throw new Error(`${e.message}\n${pair.describe()}`);
        });
        const [survivor, loser, role, other, log] = primaryWon()
          ? ([pair.primary, pair.backup, 'primary', 'backup', pair.logP] as const)
          : ([pair.backup, pair.primary, 'backup', 'primary', pair.logB] as const);
        expect(primaryWon() && backupWon(), 'two nodes live').toBe(false);
        expect(loser.process.exitCode, pair.describe()).toBe(2);
        expect(loser.stderr()).toMatch(new RegExp(`${other}: halted: `));
        expect(loser.stderr()).not.toMatch(/won epoch 2|LIVE as primary/);
        await expectAllZeros(load, pair.describe);
        console.log(`[faults] partition ${moment}, ${kind} arbiter: ${role} won epoch 2, ${other} halted (${/halted: (.*)/.exec(loser.stderr())?.[1]}); verdict all zeros; ${load.stderr().match(/load: outputs by epoch .*/)?.[0]}`);
        await expectSurvivorIsReplay(fx.children, survivor, role, log, pair.describe);
      } finally {
        await stopCli(pair.primary);
        await stopCli(pair.backup);
        await pair.proxy?.close();
      }
    });
  }
});
