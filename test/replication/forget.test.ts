// Sessions the primary drops (idle past session_idle_timeout_ms) lose their counters on the primary and, at
// the same log seq, on the backup (FORGET), and on a backup that joins later (it replays the log from seq 1
// and is told every drop since): the per-session bookkeeping stays bounded by the live sessions. Nothing a
// live session sees changes, and a failover after drops loses nothing.
import { describe, expect, it } from 'vitest';
import { FtClient, NetError } from '../../host/net/index.ts';
import { expectLogReplays, replicationFixture, str, text, until } from './support.ts';

const fx = replicationFixture('forget');
const incr = async (c: FtClient, key: string) => str(await c.call(text(`INCR ${key}`)));
const IDLE_MS = 150;
const clients = { limits: { session_idle_timeout_ms: IDLE_MS } };

/** Opens `n` sessions of 3 calls each on `p`, then closes their clients: idle, they will be dropped. */
async function passingSessions(servers: Array<{ host: string; port: number }>, n: number, key: string): Promise<void> {
  for (let i = 0; i < n; i++) {
    const c = new FtClient({ servers: servers.map((s) => `${s.host}:${s.port}`), backoff_ms_max: 100 });
    try {
      for (let k = 0; k < 3; k++) await incr(c, key);
    } finally {
      await c.close();
    }
  }
}

describe('sessions the primary drops', () => {
  it('are forgotten on the primary and on its backup, and a failover afterwards loses nothing', async () => {
    const a = await fx.arbiter();
    const p = await fx.primary({ arbiter: a, clients });
    const frames: Uint8Array[] = [];
    const b = await fx.backupOf(p, a, { onLogFrames: (bytes) => frames.push(bytes) });
    const stay = fx.client(p.clientAddress(), b.clientAddress());
    expect(await incr(stay, 'k')).toBe('VALUE 1\n');

    await passingSessions([p.clientAddress()], 12, 'k');
    expect(p.state().sessions_counted).toBe(13);
    await until(() => b.state().sessions_counted === 13, 'the backup to count the 13 sessions');

    // The long-lived session keeps calling (so it is never idle) while the 12 closed ones expire.
    let value = 37;
    const t0 = Date.now();
    while (Date.now() - t0 < IDLE_MS * 3) expect(await incr(stay, 'k')).toBe(`VALUE ${++value}\n`);
    await until(() => p.state().sessions_counted === 1, 'the primary to drop the 12 idle sessions');
    await until(() => b.state().sessions_counted === 1, 'the backup to drop them too');

    // Failover: the live session goes on exactly; its log still replays to the state.
    await p.close();
    expect(await b.live).toBe(2);
    expect(await incr(stay, 'k')).toBe(`VALUE ${++value}\n`);
    expect(b.state().sessions_counted).toBe(1);
    await expectLogReplays(fx.module, b, frames);
  });

  it('are forgotten by a backup that joins later, as it passes the seq where each was dropped', async () => {
    const a = await fx.arbiter();
    const p = await fx.primary({ arbiter: a, clients, backup_wait_ms: 0 });
    await until(() => p.state().solo, 'the primary to go on alone');
    const stay = fx.client(p.clientAddress());
    expect(await incr(stay, 'j')).toBe('VALUE 1\n');
    await passingSessions([p.clientAddress()], 8, 'j');
    let value = 25;
    const t0 = Date.now();
    while (Date.now() - t0 < IDLE_MS * 3) expect(await incr(stay, 'j')).toBe(`VALUE ${++value}\n`);
    await until(() => p.state().sessions_counted === 1, 'the primary to drop the 8 idle sessions');

    // A backup joins: it replays the log from seq 1 (9 sessions in it) and is told of the 8 drops.
    const b = await fx.backupOf(p, a);
    await until(() => b.state().synced === true && b.state().acked_seq >= p.state().last_seq, 'the joining backup to catch up');
    expect(b.state().sessions_counted).toBe(1);
    expect(await incr(stay, 'j')).toBe(`VALUE ${++value}\n`);
  });

  it('a client of a dropped session is told it is lost, never given another session state', async () => {
    const p = await fx.primary({ clients, backup_wait_ms: 0 });
    const c = fx.client(p.clientAddress());
    expect(await incr(c, 'z')).toBe('VALUE 1\n');
    const ticket = c.ticket()!;
    await c.close();
    await until(() => p.state().sessions_counted === 0, 'the primary to drop the session');
    const again = new FtClient({ servers: [`${p.clientAddress().host}:${p.clientAddress().port}`], ticket, backoff_ms_max: 100 });
    fx.cleanup(() => again.close());
    const error = await again.call(text('INCR z')).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(NetError);
    expect((error as NetError).code).toBe('FTW_NET_SESSION_LOST');
  });
});
