// A backup that joins a primary which went on alone: it catches up from seq 1 while the primary keeps
// serving, the pair is protected again, and a later failover to it loses nothing. A backup that loses its
// primary before it was told SYNCED halts instead of taking over.
import { describe, expect, it } from 'vitest';
import net from 'node:net';
import { join } from 'node:path';
import { FtClient, PAYLOAD_BYTES_MAX_DEFAULT } from '../../host/net/index.ts';
import { FileHistory, LogArchive, LogPeer, MessageType, startBackup, startPrimary, u64Payload, u64sPayload, type Backup, type Primary } from '../../host/replication/index.ts';
import { SECRET, expectLogReplays, replicationFixture, str, text, until } from './support.ts';

const fx = replicationFixture('rejoin');
let files = 0;
const incr = async (c: FtClient, key: string) => str(await c.call(text(`INCR ${key}`)));

/**
 * A pair protected again: 10 calls are answered (each waited for `next`'s ack), `old` goes away, `next` takes
 * over in epoch 3 and answers the next 10; the key's values run on from `done` without a gap.
 */
async function protectedThenFailover(old: Primary | Backup, next: Backup, c: FtClient, key: string, done: number): Promise<void> {
  for (let i = done + 1; i <= done + 10; i++) expect(await incr(c, key)).toBe(`VALUE ${i}\n`);
  expect(old.state().acked_seq).toBe(old.state().last_seq);
  await old.close();
  expect(await next.live).toBe(3);
  for (let i = done + 11; i <= done + 20; i++) expect(await incr(c, key)).toBe(`VALUE ${i}\n`);
}

describe('a backup joining a primary that went on alone', () => {
  it('catches up from seq 1 while the primary serves, protects it again, and takes over with every output', async () => {
    const a = await fx.arbiter();
    const p = await startPrimary({ module: fx.module, arbiter: a, secret: SECRET });
    fx.cleanup(() => p.close());
    const b1 = await fx.backupOf(p, a);
    // The session of c1 is opened in epoch 1 and used again after two epochs more, on b2. c1 is told only p's
    // address: it learns its backups' from p (the client protocol's `nodes`), b1's at once and b2's once b2 joins.
    const c1 = fx.client(p.clientAddress());
    const b1clients = `127.0.0.1:${b1.clientAddress().port}`;
    const learned: string[] = [];
    c1.on('discovered', (addresses) => learned.push(...addresses));
    for (let i = 1; i <= 10; i++) expect(await incr(c1, 'x')).toBe(`VALUE ${i}\n`);
    await b1.close();
    expect(await new Promise((r) => p.once('live', r))).toBe(2);
    for (let i = 11; i <= 200; i++) expect(await incr(c1, 'x')).toBe(`VALUE ${i}\n`); // alone: released at once
    expect(p.state()).toMatchObject({ solo: true, epoch: 2 });

    const notes: string[] = [];
    p.on('note', (t) => notes.push(t));
    const frames: Uint8Array[] = [];
    const b2 = await fx.backupOf(p, a, { onLogFrames: (bytes) => frames.push(bytes) });
    await until(() => !p.state().solo && p.state().rejoin === undefined && b2.state().synced === true, 'the joining backup to be synced');
    await until(() => learned.length > 1, 'c1 to learn where b2 serves clients');
    expect(learned).toEqual([b1clients, `127.0.0.1:${b2.clientAddress().port}`]);
    expect(b2.state()).toMatchObject({ role: 'backup', epoch: 2 });
    expect(b2.state().acked_seq).toBeGreaterThanOrEqual(p.state().released_seq);
    // It went through both phases, in order: frames from the history, then outputs held until it had them all.
    const phases = notes.map((t) => (/catching it up from seq 1 to \d+/.test(t) ? 'catching_up' : /outputs wait for its acks again/.test(t) ? 'syncing' : /protected again in epoch 2/.test(t) ? 'protected' : '')).filter(Boolean);
    expect(phases).toEqual(['catching_up', 'syncing', 'protected']);

    // Protected again: an output now waits for b2's ack, and the primary's death fails over to b2.
    const c2 = fx.client(p.clientAddress(), b2.clientAddress());
    await protectedThenFailover(p, b2, c2, 'x', 200);
    // c1's session, opened in epoch 1 on p, resumes on b2 (epoch 3): b2 learned its epoch from SESSIONS.
    expect(await incr(c1, 'x')).toBe('VALUE 221\n');
    expect(c1.stats().epoch).toBe(3);

    // Its whole log (received from seq 1, then recorded) replays to its state.
    await expectLogReplays(fx.module, b2, frames);
  });

  it('a backup that went live (with a replication address) serves a new backup the same way, from its log file, which takes over in turn', async () => {
    const a = await fx.arbiter();
    const p = await startPrimary({ module: fx.module, arbiter: a, secret: SECRET });
    fx.cleanup(() => p.close());
    // b1 keeps its log in a file (as `ftwasm backup --log`), and serves a joining backup from it, not from memory.
    const archive = LogArchive.create(join(fx.scratch, `b1-${++files}.ftwlog`), { moduleHash: new Uint8Array(32), ftwasmVersion: 'test' });
    fx.cleanup(() => archive.close());
    const b1 = await fx.backupOf(p, a, { replication: {}, history: new FileHistory(archive), onLogFrames: (bytes, first, last) => archive.append(bytes, first, last) });
    const c1 = fx.client(p.clientAddress(), b1.clientAddress());
    for (let i = 1; i <= 10; i++) expect(await incr(c1, 'z')).toBe(`VALUE ${i}\n`);
    expect(b1.replicationAddress()).toBeUndefined(); // only once live
    await p.close();
    expect(await b1.live).toBe(2);
    await until(() => b1.replicationAddress() !== undefined, 'the live backup to serve new backups');
    for (let i = 11; i <= 100; i++) expect(await incr(c1, 'z')).toBe(`VALUE ${i}\n`);
    expect(b1.state()).toMatchObject({ role: 'primary', epoch: 2, solo: true });

    const frames: Uint8Array[] = [];
    const b2 = await startBackup({ module: fx.module, arbiter: a, secret: SECRET, primary: b1.replicationAddress()!, onLogFrames: (bytes) => frames.push(bytes) });
    fx.cleanup(() => b2.close());
    await until(() => !b1.state().solo && b1.state().rejoin === undefined && b2.state().synced === true, 'the new backup to be synced');
    expect(archive.lastSeq).toBe(b1.state().last_seq); // the file b2 was served from holds the whole log
    const c2 = fx.client(b1.clientAddress(), b2.clientAddress());
    await protectedThenFailover(b1, b2, c2, 'z', 100);
    await expectLogReplays(fx.module, b2, frames);
  });

  it('is refused with a clear reason once the history passed history_bytes_max', async () => {
    const a = await fx.arbiter();
    const p = await startPrimary({ module: fx.module, arbiter: a, secret: SECRET, backup_wait_ms: 100, history_bytes_max: 4096 });
    fx.cleanup(() => p.close());
    expect(await new Promise((r) => p.once('live', r))).toBe(2);
    const c = fx.client(p.clientAddress());
    for (let i = 1; i <= 200; i++) expect(await incr(c, 'y')).toBe(`VALUE ${i}\n`);
    const b = await fx.backupOf(p, a);
    expect(await b.halted).toMatch(/the primary refused this backup: .*the log passed history_bytes_max = 4096 bytes: a new backup needs state transfer/);
    expect(p.state()).toMatchObject({ solo: true, role: 'primary' });
  });
});

describe('a backup that was never told SYNCED', () => {
  /** A fake primary in epoch 5: authenticates, answers HELLO with a heartbeat (and SYNCED if asked), then falls silent. */
  async function silentPrimary(synced: boolean): Promise<{ host: string; port: number }> {
    const server = net.createServer((socket) => {
      const peer = new LogPeer(socket, 'primary', { secret: SECRET, epoch: () => 5 });
      peer.on('message', (m) => {
        if (m.type !== MessageType.HELLO) return;
        peer.send(MessageType.HEARTBEAT, u64Payload(1));
        if (synced) peer.send(MessageType.SYNCED, u64Payload(0));
      });
      fx.cleanup(() => peer.close());
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    fx.cleanup(() => server.close());
    return { host: '127.0.0.1', port: (server.address() as net.AddressInfo).port };
  }

  it('halts when its primary goes silent, instead of claiming an epoch; told SYNCED, it takes over', async () => {
    const a = await fx.arbiter();
    for (let e = 1; e <= 5; e++) await a.claim(e, 'the fake primary');
    const unsynced = await startBackup({ module: fx.module, arbiter: a, secret: SECRET, primary: await silentPrimary(false), heartbeat_timeout_ms: 200 });
    fx.cleanup(() => unsynced.close());
    expect(await unsynced.halted).toMatch(/before it said SYNCED .*nothing safe to take over/);
    expect((await a.current())?.epoch).toBe(5);

    const synced = await startBackup({ module: fx.module, arbiter: a, secret: SECRET, primary: await silentPrimary(true), heartbeat_timeout_ms: 200 });
    fx.cleanup(() => synced.close());
    expect(await synced.live).toBe(6);
  });
});

describe('pacing a catch-up', () => {
  /**
   * A backup that replays slowly, by hand: it acks every frame at once but reports its replay as `replayed()`
   * says, so the primary sees a gap that does not close until the test lets it.
   */
  async function slowBackup(at: { host: string; port: number }, replayed: (head: number) => number): Promise<{ head: () => number; close: () => void }> {
    const { FrameReader } = await import('../../host/log/index.ts');
    const socket = net.connect(at);
    let epoch = 0;
    let head = 0;
    let stamp = 0;
    const reader = new FrameReader();
    const peer = new LogPeer(socket, 'backup', { secret: SECRET, epoch: () => epoch });
    await peer.ready;
    peer.on('message', (m) => {
      epoch = m.epoch;
      if (m.type === MessageType.HEARTBEAT) stamp = Math.max(stamp, Number(Buffer.from(m.payload).readBigUInt64LE(0)));
      if (m.type !== MessageType.FRAMES) return;
      reader.push(m.payload);
      for (let f = reader.next(); f !== 'incomplete'; f = reader.next()) head = f.lastSeq;
      peer.send(MessageType.ACK, u64sPayload(head, stamp));
    });
    const timer = setInterval(() => peer.isOpen && peer.send(MessageType.HEARTBEAT, u64sPayload(stamp, Math.min(head, replayed(head)))), 50);
    peer.send(MessageType.HELLO, u64sPayload(1, PAYLOAD_BYTES_MAX_DEFAULT));
    fx.cleanup(() => {
      clearInterval(timer);
      peer.close('done');
    });
    return { head: () => head, close: () => peer.close('done') };
  }

  it('a joining backup that does not gain on the log holds the primary back until it does, then is synced', async () => {
    const a = await fx.arbiter();
    const notes: string[] = [];
    const p = await startPrimary({ module: fx.module, arbiter: a, secret: SECRET, backup_wait_ms: 100, onEvent: (t) => notes.push(t) });
    fx.cleanup(() => p.close());
    expect(await new Promise((r) => p.once('live', r))).toBe(2);
    const c = fx.client(p.clientAddress());
    // 5000 entries of log before the backup joins: more than the slack within which a backup counts as caught up.
    for (let i = 1; i <= 2600; i++) expect(await incr(c, 'k')).toBe(`VALUE ${i}\n`);
    let keepUp = false;
    const b = await slowBackup(p.replicationAddress(), (head) => (keepUp ? head : 10));
    // A client keeps writing; the backup's replay stays at seq 10, so the gap grows, then stays.
    let answered = 2600;
    let stop = false;
    fx.cleanup(() => (stop = true));
    const writer = (async () => {
      while (!stop) expect(await incr(c, 'k')).toBe(`VALUE ${++answered}\n`);
    })();
    await until(() => notes.some((t) => /the joining backup does not gain on the log \(\d+ entries behind\): throttling the guest and holding input/.test(t)), 'the primary to hold back');
    // Held back: client input waits, the log stops growing.
    const heldAt = answered;
    await new Promise((r) => setTimeout(r, 300));
    expect(answered - heldAt).toBeLessThanOrEqual(1);
    expect(p.state().solo).toBe(true);
    // The backup catches up: the primary lets go, syncs it and is protected again.
    keepUp = true;
    // Lifted as the pacer sees the gap close, or (once it is synced) as any backup whose replay caught up.
    await until(() => notes.some((t) => /throttle lifted/.test(t)), 'the throttle to be lifted');
    await until(() => !p.state().solo && p.state().rejoin === undefined, 'the backup to be synced');
    const after = answered;
    await until(() => answered > after + 20, 'the client to be answered again');
    stop = true;
    await writer;
    b.close();
  });
});
