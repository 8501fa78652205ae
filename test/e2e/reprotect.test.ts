// Two failures in a row, with real processes: kill -9 of the primary, a new backup joins the backup that went
// live and catches up while the load runs, then kill -9 of that node too. The third node serves the end of
// the load; the client sees every reply exactly once, in order, and its final state is a replay of its log.
import { describe, it } from 'vitest';
import { join } from 'node:path';
import { e2eFixture, survivorScenario } from './support.ts';

const fx = e2eFixture('reprotect', { arbiterDir: true });

describe('protection restored after a failover', () => {
  it('kill -9 the primary, start a new backup against the survivor, kill -9 the survivor: verdict all zeros, state = replay', async () => {
    // b1 writes its log (--log), so the new backup is caught up from that file.
    const scenario = await survivorScenario(fx, 'reprotect', [], ['--log', join(fx.dir, 'b1.ftwlog')]);
    await scenario.joinAndFinish(join(fx.dir, 'b2.ftwlog'), () => undefined);
  });
});
