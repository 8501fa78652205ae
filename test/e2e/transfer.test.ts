// State transfer with real processes (docs/SNAPSHOT.md): nodes run with --state-transfer. After kill -9 of
// the primary, a new backup joins the survivor and is restored from a snapshot of its guest (not by replaying
// the log from seq 1), then the survivor is killed too. The client sees every reply exactly once, in order,
// and the last node's final state is `ftwasm replay --snapshot` of the snapshot and the log it wrote after it.
import { describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { e2eFixture, survivorScenario } from './support.ts';

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
