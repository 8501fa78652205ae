// State transfer with real processes (docs/SNAPSHOT.md): nodes run with --state-transfer. After kill -9 of
// the primary, a new backup joins the survivor and is restored from a snapshot of its guest (not by replaying
// the log from seq 1), then the survivor is killed too. The client sees every reply exactly once, in order,
// and the last node's final state is `ftwasm replay --snapshot` of the snapshot and the log it wrote after it.
import { describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { freePort } from '../../host/cli/procs.ts';
import { e2eFixture, allAnswered, expectSurvivorIsReplay, loadVerdict, nodeTiming, kv, until } from './support.ts';

const fx = e2eFixture('transfer', { arbiterDir: true });
const ftwasm = fx.ftwasm;

describe('state transfer between processes', () => {
  it('kill -9 the primary, a new backup joins the survivor by snapshot, kill -9 the survivor: verdict all zeros, state = replay from the snapshot', async () => {
    const [cP, rP, cB1, rB1, cB2] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()];
    const common = ['--arbiter', `file:${join(fx.dir, 'arbiter')}`, '--secret-file', fx.secret, '--state-transfer', ...nodeTiming];
    const primary = ftwasm(['primary', kv, '--clients', `127.0.0.1:${cP}`, '--replication', `127.0.0.1:${rP}`, ...common]);
    await until(() => primary.stderr().includes('primary: ready in epoch 1'), 'the primary to be ready');
    const b1 = ftwasm(['backup', kv, '--primary', `127.0.0.1:${rP}`, '--clients', `127.0.0.1:${cB1}`, '--replication', `127.0.0.1:${rB1}`, ...common]);
    await until(() => b1.stderr().includes('connected to the primary'), 'the first backup to connect');

    const sessions = 3;
    const requests = 600;
    const servers = [cP, cB1, cB2].map((p) => `127.0.0.1:${p}`).join(',');
    const load = ftwasm(['load', '--servers', servers, '--sessions', String(sessions), '--requests', String(requests), '--interval-ms', '3', '--timeout-ms', '40000']);
    const context = () => `load:\n${load.stderr().slice(-1500)}\nb1:\n${b1.stderr().slice(-2500)}`;
    await until(() => /load: [2-9]00 responses/.test(load.stderr()), 'the load to be under way');
    primary.process.kill('SIGKILL');
    await until(() => b1.stderr().includes('LIVE as primary in epoch 2'), 'the first backup to go live');
    await until(() => b1.stderr().includes('serving new backups on'), 'the survivor to take new backups');

    const log = join(fx.dir, 'b2.ftwlog');
    const b2 = ftwasm(['backup', kv, '--primary', `127.0.0.1:${rB1}`, '--clients', `127.0.0.1:${cB2}`, '--log', log, ...common]);
    await until(() => b1.stderr().includes('protected again in epoch 2'), 'the new backup to be restored and synced', 30_000);
    await until(() => /synced with the primary at seq \d+/.test(b2.stderr()), 'the new backup to be told SYNCED');
    // It was restored from a snapshot, not caught up from seq 1.
    expect(b1.stderr()).toMatch(/state transfer from a snapshot at the guest's next recv/);
    const restored = /restored from the primary's snapshot at seq (\d+)/.exec(b2.stderr());
    expect(restored, b2.stderr()).toBeTruthy();
    expect(b2.stderr()).toContain(`--log ${log} starts at seq ${Number(restored![1]) + 1}`);
    expect(existsSync(`${log}.snapshot`)).toBe(true);

    b1.process.kill('SIGKILL');
    await until(() => b2.stderr().includes('LIVE as primary in epoch 3'), 'the new backup to go live');
    const { code, verdict, line } = await loadVerdict(load, 60_000);
    expect(code, context()).toBe(0);
    expect(verdict).toEqual(allAnswered(sessions * requests));
    console.log(`[e2e] transfer: ${line}`);
    await expectSurvivorIsReplay(fx.children, b2, 'backup', log, () => b2.stderr().slice(-2000), ['--state-transfer', '--snapshot', `${log}.snapshot`]);
  });
});
