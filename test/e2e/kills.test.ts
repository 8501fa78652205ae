// kill -9 of the primary at random moments (seeded), over many runs with real processes on loopback: every
// run must end with every request answered exactly once and in order, the backup live in epoch 2, and the
// backup's final state equal to `ftwasm replay` of the log it wrote (received, then recorded once live).
// Runs: FTWASM_KILL_RUNS (default 20); each run is bounded in time, the whole file too.
import { describe, expect, it } from 'vitest';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { rng } from '../net/support.ts';
import { stopCli } from '../../host/cli/procs.ts';
import { e2eFixture, NODE_TIMEOUT_MS, nodeTiming, allAnswered, expectSurvivorIsReplay, loadVerdict, startNodes, until } from './support.ts';

const fx = e2eFixture('kills');
const ftwasm = fx.ftwasm;

const RUNS = Number(process.env.FTWASM_KILL_RUNS ?? 20);
const SESSIONS = 3;
const REQUESTS = 200;

describe('kill -9 of the primary at random moments', () => {
  it(`${RUNS} runs: every verdict all zeros, the backup live in epoch 2 each time`, { timeout: 60_000 + RUNS * 15_000 }, async () => {
    const seed = process.env.FTWASM_SEED ? Number(process.env.FTWASM_SEED) : (Math.random() * 2 ** 31) | 0;
    console.log(`[kills] seed ${seed} (rerun with FTWASM_SEED=${seed})`);
    const random = rng(seed);
    const failovers: number[] = [];
    /** A primary and its backup on ports the system picks (support.ts startNodes), the backup writing --log. */
    const startRun = async (run: number) => {
      const runDir = join(fx.dir, `run-${run}`);
      mkdirSync(join(runDir, 'arbiter'), { recursive: true });
      const logB = join(runDir, 'backup.ftwlog');
      const common = ['--arbiter', `file:${join(runDir, 'arbiter')}`, '--secret-file', fx.secret, ...nodeTiming];
      return { ...(await startNodes(fx, { common, backupArgs: ['--log', logB], what: `run ${run}` })), logB };
    };
    for (let run = 0; run < RUNS; run++) {
      const { primary, backup, clientsP, clientsB, logB } = await startRun(run);
      try {
        const load = ftwasm(['load', '--servers', `127.0.0.1:${clientsP},127.0.0.1:${clientsB}`, '--sessions', String(SESSIONS), '--requests', String(REQUESTS), '--interval-ms', '2', '--timeout-ms', '30000']);
        // The moment: after 0..500 replies (in hundreds, as the load reports them), plus 0..20 ms.
        const hundreds = Math.floor(random() * 6);
        if (hundreds > 0) await until(() => load.stderr().includes(`load: ${hundreds * 100} responses`), `run ${run}: ${hundreds * 100} replies`);
        await new Promise((r) => setTimeout(r, Math.floor(random() * 20)));
        const killedAt = Date.now();
        primary.process.kill('SIGKILL');
        await until(() => backup.stderr().includes('LIVE as primary in epoch 2'), `run ${run} (kill after ${hundreds * 100} replies): the backup to go live; backup said:\n${backup.stderr().slice(-3000)}\nprimary said:\n${primary.stderr().slice(-1500)}`).catch((error: Error) => {
          throw new Error(`${error.message}\nbackup said:\n${backup.stderr().slice(-3000)}\nprimary said:\n${primary.stderr().slice(-1500)}`);
        });
        failovers.push(Date.now() - killedAt);
        const { code, verdict } = await loadVerdict(load, 40_000);
        expect(code, `run ${run} (kill after ${hundreds * 100} replies): ${load.stderr().slice(-2000)}`).toBe(0);
        expect(verdict, `run ${run}`).toEqual(allAnswered(SESSIONS * REQUESTS));
        // The survivor passed through exactly the states of a fault-free run of its log.
        await expectSurvivorIsReplay(fx.children, backup, 'backup', logB, () => `run ${run}: backup said:\n${backup.stderr().slice(-2000)}`);
      } finally {
        await stopCli(primary);
        await stopCli(backup);
      }
    }
    const sorted = [...failovers].sort((a, b) => a - b);
    const at = (q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
    console.log(`[kills] ${RUNS} runs, heartbeat timeout ${NODE_TIMEOUT_MS} ms, failover (kill -9 to backup live) p50 ${at(0.5)} ms, p99 ${at(0.99)} ms, max ${sorted.at(-1)} ms`);
  });
});
