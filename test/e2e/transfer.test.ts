// State transfer with real processes (docs/SNAPSHOT.md): nodes run with --state-transfer. After kill -9 of
// the primary, a new backup joins the survivor and is restored from a snapshot of its guest (not by replaying
// the log from seq 1), then the survivor is killed too. The client sees every reply exactly once, in order,
// and the last node's final state is `ftwasm replay --snapshot` of the snapshot and the log it wrote after it.
import { describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { FtClient } from '../../host/net/index.ts';
import { e2eFixture, kv, portsFrom, replayOf, stopSurvivor, survivorScenario, until } from './support.ts';

const fx = e2eFixture('transfer', { arbiterDir: true });

describe('state transfer between processes', () => {
  it('kill -9 the primary, a new backup joins the survivor by snapshot, kill -9 the survivor: verdict all zeros, state = replay from the snapshot', async () => {
    // A longer load than reprotect's: each node prepares the module with Binaryen as it starts, and the
    // second kill must still come mid-load.
    const scenario = await survivorScenario(fx, 'transfer', ['--state-transfer'], [], 1200);
    const log = join(fx.dir, 'b2.ftwlog');
    await scenario.joinAndFinish(log, (b2) => {
      // It was restored from a snapshot, not caught up from seq 1.
      expect(scenario.b1.stderr()).toMatch(/state transfer from a snapshot at the guest's next recv/);
      const restored = /restored from the primary's snapshot at seq (\d+)/.exec(b2.stderr());
      expect(restored, b2.stderr()).toBeTruthy();
      expect(b2.stderr()).toContain(`--log ${log} starts at seq ${Number(restored![1]) + 1}`);
      expect(existsSync(`${log}.snapshot`)).toBe(true);
    }, ['--state-transfer', '--snapshot', `${log}.snapshot`]);
  });
});

describe('log segments (--log-segment-mb)', () => {
  it('a primary cuts its log into segments, each after a snapshot, keeps the newest two, and the last replays to its final state', async () => {
    const log = join(fx.dir, 'seg.ftwlog');
    mkdirSync(join(fx.dir, 'arbiter-seg'));
    const primary = fx.ftwasm([
      'primary', kv, '--clients', '127.0.0.1:0', '--replication', '127.0.0.1:0', '--arbiter', `file:${join(fx.dir, 'arbiter-seg')}`,
      '--secret-file', fx.secret, '--state-transfer', '--backup-wait-ms', '0', '--log', log, '--log-segment-mb', '1', '--log-segments', '2',
    ]);
    const [clients] = await portsFrom(primary, /primary: ready in epoch 1, clients 127\.0\.0\.1:(\d+)/, 'the primary to be ready');
    await until(() => primary.stderr().includes('going on without a backup'), 'the primary to go on alone');
    // About 4.5 MB of log: 1100 requests with 4000-byte values, so four segments come and two are removed.
    const c = new FtClient({ servers: [`127.0.0.1:${clients}`] });
    try {
      for (let i = 0; i < 1100; i++) expect(new TextDecoder().decode(await c.call(new TextEncoder().encode(`SET k${i % 50} ${String(i).padStart(4000, 'v')}`)))).toBe('OK\n');
    } finally {
      await c.close();
    }
    await until(() => (primary.stderr().match(/--log segment /g) ?? []).length >= 3, 'three new segments');
    const final = await stopSurvivor(fx.children, primary, 'primary', () => primary.stderr().slice(-2000));
    const segments = [...primary.stderr().matchAll(/--log segment (\S+) from seq (\d+), after the snapshot in (\S+?)(;|$)/gm)];
    const last = segments.at(-1)![1]!;
    expect(primary.stderr()).toMatch(new RegExp(`^primary: final state .* log ${last.replace(/[.]/g, '\\.')} \\(\\d+ bytes, seq ${segments.at(-1)![2]}\\.\\.\\d+, after the snapshot in`, 'm'));
    // Only the newest two segments (and their snapshots) are left.
    const left = readdirSync(fx.dir).filter((n) => n.startsWith('seg.ftwlog')).sort();
    const k = segments.length;
    expect(left).toEqual([`seg.ftwlog.${k - 1}`, `seg.ftwlog.${k - 1}.snapshot`, `seg.ftwlog.${k}`, `seg.ftwlog.${k}.snapshot`].sort());
    // The last segment replays from its snapshot to the primary's final state; the one before it, faithfully up to its end.
    const replay = await replayOf(fx.children, last, ['--state-transfer', '--snapshot', `${last}.snapshot`]);
    expect({ hash: replay.hash, icount: replay.icount }).toEqual({ hash: final.hash, icount: final.icount });
    const before = `${log}.${k - 1}`;
    const earlier = await replayOf(fx.children, before, ['--state-transfer', '--snapshot', `${before}.snapshot`]);
    expect(earlier.out).toMatch(/log ended at seq \d+ .*replay faithful up to there/);
    expect(existsSync(`${log}.${k}.snapshot`)).toBe(true);
  });
});
