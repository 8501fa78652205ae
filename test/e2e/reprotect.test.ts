// Two failures in a row, with real processes: kill -9 of the primary, a new backup joins the backup that went
// live and catches up while the load runs, then kill -9 of that node too. The third node serves the end of
// the load; the client sees every reply exactly once, in order, and its final state is a replay of its log.
import { describe, expect, it } from 'vitest';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { freePort } from '../../host/cli/procs.ts';
import { e2eFixture, allAnswered, expectSurvivorIsReplay, loadVerdict, nodeTiming, kv, until } from './support.ts';

const fx = e2eFixture('reprotect', { arbiterDir: true });
const ftwasm = fx.ftwasm;

describe('protection restored after a failover', () => {
  it('kill -9 the primary, start a new backup against the survivor, kill -9 the survivor: verdict all zeros, state = replay', async () => {
    const [cP, rP, cB1, rB1, cB2] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()];
    const arbiter = `file:${join(fx.dir, 'arbiter')}`;
    const common = ['--arbiter', arbiter, '--secret-file', fx.secret, ...nodeTiming];
    const primary = ftwasm(['primary', kv, '--clients', `127.0.0.1:${cP}`, '--replication', `127.0.0.1:${rP}`, ...common]);
    await until(() => primary.stderr().includes('primary: ready in epoch 1'), 'the primary to be ready');
    // b1 writes its log (--log), so the new backup is caught up from that file.
    const b1 = ftwasm(['backup', kv, '--primary', `127.0.0.1:${rP}`, '--clients', `127.0.0.1:${cB1}`, '--replication', `127.0.0.1:${rB1}`, '--log', join(fx.dir, 'b1.ftwlog'), ...common]);
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
    await until(() => b1.stderr().includes('protected again in epoch 2'), 'the new backup to catch up', 30_000);
    // b1 notes SYNCED as it sends it; b2 notes it as it reads it, a moment later through another pipe
    await until(() => /synced with the primary at seq \d+/.test(b2.stderr()), 'the new backup to be told SYNCED');
    const before = (/load: (\d+) responses/g.exec(load.stderr().split('\n').filter((l) => /load: \d+ responses/.test(l)).at(-1) ?? '') ?? [])[1];
    expect(Number(before ?? 0)).toBeLessThan(sessions * requests); // the load still runs: the second kill is mid-load

    b1.process.kill('SIGKILL');
    await until(() => b2.stderr().includes('LIVE as primary in epoch 3'), 'the new backup to go live');
    const { code, verdict, line } = await loadVerdict(load, 60_000);
    expect(code, context()).toBe(0);
    expect(verdict).toEqual(allAnswered(sessions * requests));
    expect(readdirSync(join(fx.dir, 'arbiter', 'default')).filter((n) => n.startsWith('epoch-')).length).toBe(3);
    console.log(`[e2e] reprotect: ${line}`);
    await expectSurvivorIsReplay(fx.children, b2, 'backup', log, () => b2.stderr().slice(-2000));
  });
});
