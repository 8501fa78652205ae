// `npm start` is the failover demo: it must end with an all-zero client verdict.
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

const cli = join(new URL('../..', import.meta.url).pathname, 'dist/cli.js');

describe('npm start (failover-demo)', () => {
  it('kills the primary midway, protects the survivor with a new backup restored from a snapshot, kills it too; the client sees every reply once, in order', () => {
    const r = spawnSync(process.execPath, [cli, 'failover-demo', '--sessions', '2', '--requests', '300'], { encoding: 'utf8', timeout: 90_000 });
    expect(r.status, r.stderr + r.stdout).toBe(0);
    expect(r.stdout).toMatch(/kill -9 of the primary after \d+ responses/);
    expect(r.stdout).toMatch(/backup won epoch 2 from the arbiter and went live \d+ ms after the kill/);
    expect(r.stdout).toMatch(/new backup pid \d+ joined the survivor, restored from a [\d.]+ MB snapshot at log seq \d+, in \d+ ms: protected again/);
    // The second kill needs the load to be still running once the new backup caught up (it normally is).
    if (!/the load ended before the second kill/.test(r.stdout)) expect(r.stdout).toMatch(/new backup won epoch 3 and went live \d+ ms after the kill/);

    expect(r.stdout).toMatch(/client verdict: \{"sent":600,"responses":600,"lost":0,"duplicated":0,"out_of_order":0\}/);
  });
});
