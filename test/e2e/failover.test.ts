// Failover with real processes on loopback: a primary, a backup and a client load; the primary is killed
// with SIGKILL midway. Every request must be answered exactly once and in order, by whichever node is
// primary, and the backup must have gone live in a new epoch won from the file arbiter.
import { describe, expect, it } from 'vitest';
import { mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { RawConnection } from '../net/support.ts';
import { e2eFixture, nodeTiming, allAnswered, exitWithin, loadVerdict, startNodes, until } from './support.ts';

const fx = e2eFixture('failover', { arbiterDir: true });
const ftwasm = fx.ftwasm;

describe('failover across real processes', () => {
  it('kill -9 of the primary midway: the backup goes live in epoch 2 and the load sees every reply exactly once, in order', async () => {
    const common = ['--arbiter', `file:${join(fx.dir, 'arbiter')}`, '--secret-file', fx.secret, ...nodeTiming];
    const { primary, backup, clientsP, clientsB } = await startNodes(fx, { common });

    const sessions = 4;
    const requests = 400;
    const load = ftwasm(['load', '--servers', `127.0.0.1:${clientsP},127.0.0.1:${clientsB}`, '--sessions', String(sessions), '--requests', String(requests), '--interval-ms', '3', '--timeout-ms', '30000']);
    // Midway: once some hundreds of replies came back through the primary.
    await until(() => /load: [3-9]00 responses/.test(load.stderr()), 'the load to be under way');
    const killed_ms = Date.now();
    primary.process.kill('SIGKILL');
    await until(() => backup.stderr().includes('LIVE as primary in epoch 2'), 'the backup to go live');
    const failover_ms = Date.now() - killed_ms;

    const { code, verdict, line } = await loadVerdict(load, 45_000);
    expect(code, load.stderr()).toBe(0);
    expect(verdict).toEqual(allAnswered(sessions * requests));
    expect(readdirSync(join(fx.dir, 'arbiter', 'default')).filter((n) => n.startsWith('epoch-')).sort()).toEqual(['epoch-0000000000000001', 'epoch-0000000000000002']);
    expect(backup.stderr()).toMatch(/won epoch 2/);
    console.log(`e2e failover: backup live ${failover_ms} ms after kill -9; verdict ${line}`);

    backup.process.kill('SIGTERM');
    expect(await exitWithin(backup, 5_000)).toBe(0);
  });

  it("the backup's --advertise reaches clients through the primary (nodes); load learns it, and keeps to --servers with --no-discover", async () => {
    mkdirSync(join(fx.dir, 'arbiter-advertise'));
    const common = ['--arbiter', `file:${join(fx.dir, 'arbiter-advertise')}`, '--secret-file', fx.secret, ...nodeTiming];
    const { primary, backup, clientsP } = await startNodes(fx, { common, backupArgs: ['--advertise', 'kv-b.example:7002'] });
    const raw = await RawConnection.open(clientsP);
    try {
      raw.send({ type: 'hello', version: 1, nodes: true });
      await raw.next('welcome');
      expect((await raw.next('nodes')).addresses).toEqual([`127.0.0.1:${clientsP}`, 'kv-b.example:7002']);
    } finally {
      raw.destroy();
    }
    for (const discover of [true, false]) {
      const load = ftwasm(['load', '--servers', `127.0.0.1:${clientsP}`, '--sessions', '1', '--requests', '20', ...(discover ? [] : ['--no-discover'])]);
      const { code, verdict } = await loadVerdict(load, 20_000);
      expect(code, load.stderr()).toBe(0);
      expect(verdict).toEqual(allAnswered(20));
      expect(load.stderr().includes('load: the primary named kv-b.example:7002')).toBe(discover);
    }
    for (const node of [backup, primary]) {
      node.process.kill('SIGTERM');
      expect(await exitWithin(node, 5_000)).toBe(0);
    }
  });
});
