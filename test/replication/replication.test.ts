// host/replication in one process: the channel's authentication, the output rule, log forwarding, a backup
// that replays to the primary's state, and a failover when the primary goes away.
import { beforeAll, describe, expect, it } from 'vitest';
import net from 'node:net';
import type { Arbiter } from '../../host/arbiter/index.ts';
import { EntryKind, FrameReader, FrameWriter } from '../../host/log/index.ts';
import { PAYLOAD_BYTES_MAX_DEFAULT, type FtClient } from '../../host/net/index.ts';
import {
  LogPeer,
  MessageType,
  u64sPayload,
  startBackup,
  startPrimary,
  type Backup,
  type Primary,
} from '../../host/replication/index.ts';
import { FrameSource, GuestCore, hex, MESSAGE_BYTES_MAX } from '../../host/vm/index.ts';
import { RawConnection, sleep } from '../net/support.ts';
import { SECRET, replicationFixture, str, text, until } from './support.ts';

const WRONG = new TextEncoder().encode('an entirely different secret 9876');
const onEvent = process.env.FTWASM_DEBUG ? (t: string) => console.log(t) : undefined;

const fx = replicationFixture('replication', onEvent);
let module: WebAssembly.Module;
beforeAll(() => (module = fx.module)); // after the fixture's own beforeAll
const cleanups = { push: (...cs: Array<() => unknown>): void => cs.forEach((c) => fx.cleanup(c)) };
const arbiter = (): Promise<Arbiter> => fx.arbiter();
const primary = (options: Partial<Parameters<typeof startPrimary>[0]> = {}): Promise<Primary> => fx.primary(options);
const backupOf = (p: Primary, a: Arbiter, options: Partial<Parameters<typeof startBackup>[0]> = {}): Promise<Backup> => fx.backupOf(p, a, options);
const client = (...servers: Array<{ host: string; port: number }>): FtClient => fx.client(...servers);

function connectPeer(address: { host: string; port: number }, secret: Uint8Array): LogPeer {
  const peer = new LogPeer(net.connect(address), 'backup', { secret, epoch: () => 0 });
  cleanups.push(() => peer.close());
  return peer;
}

/**
 * A fake backup: HELLO(1), then it records every FRAMES message (the frames' seq ranges), the SEND seqs, every
 * RELEASED and every heartbeat stamp. It acks nothing by itself.
 */
async function fakeBackup(p: Primary) {
  const peer = connectPeer(p.replicationAddress(), SECRET);
  await peer.ready;
  const reader = new FrameReader();
  const messages: Array<Array<[number, number]>> = [];
  const released: number[] = [];
  const sends: number[] = [];
  const state = { lastSeq: 0, stamp: 0 };
  const stamps: number[] = [];
  peer.on('message', (m) => {
    if (m.type === MessageType.HEARTBEAT) stamps.push((state.stamp = Number(Buffer.from(m.payload).readBigUInt64LE(0))));
    if (m.type === MessageType.RELEASED) released.push(Number(Buffer.from(m.payload).readBigUInt64LE(0)));
    if (m.type !== MessageType.FRAMES) return;
    const frames: Array<[number, number]> = [];
    reader.push(m.payload);
    for (let f = reader.next(); f !== 'incomplete'; f = reader.next()) {
      frames.push([f.firstSeq, f.lastSeq]);
      state.lastSeq = f.lastSeq;
      for (const e of f.entries) if (e.kind === EntryKind.SEND) sends.push(e.seq);
    }
    messages.push(frames);
  });
  peer.send(MessageType.HELLO, u64sPayload(1, PAYLOAD_BYTES_MAX_DEFAULT));
  await until(() => state.stamp > 0, 'the first heartbeat');
  return { peer, messages, released, sends, state, stamps };
}

describe('the log channel', () => {
  it("refuses a backup whose client payload limit differs from the primary's, naming both", async () => {
    const a = await fx.arbiter();
    const p = await fx.primary({ arbiter: a });
    const b = await fx.backupOf(p, a, { clients: { limits: { payload_bytes_max: 4096 } } });
    const reason = await new Promise<string>((r) => b.once('halted', r));
    expect(reason).toContain(`the backup's client payload limit is 4096 bytes, this primary's ${PAYLOAD_BYTES_MAX_DEFAULT}`);
    expect(p.state().peer_connected).toBe(false);
  });

  it('refuses a backup running another guest module, naming both hashes; one with the same module follows', async () => {
    const a = await fx.arbiter();
    const hash = (byte: number) => new Uint8Array(32).fill(byte);
    const p = await fx.primary({ arbiter: a, module_hash: hash(0xaa) });
    const other = await fx.backupOf(p, a, { module_hash: hash(0xbb) });
    const reason = await new Promise<string>((r) => other.once('halted', r));
    expect(reason).toMatch(/the backup runs another guest module \(sha256 bbbbbbbbbbbbbbbb…, this primary's aaaaaaaaaaaaaaaa…\)/);
    // The same hash follows (a node that names no hash is not checked: both must name one).
    const same = await fx.backupOf(p, a, { module_hash: hash(0xaa) });
    await until(() => same.state().peer_connected && p.state().peer_connected, 'the backup with the same module to follow');
    await same.close();
    await expect(startPrimary({ module: fx.module, arbiter: a, secret: SECRET, module_hash: new Uint8Array(31) })).rejects.toThrow(/module_hash must be 32 bytes/);
  });

  it('refuses a backup without the secret before any log byte flows, with a clear error', async () => {
    const p = await primary({ heartbeat_timeout_ms: 5_000 });
    const peer = connectPeer(p.replicationAddress(), WRONG);
    const messages: number[] = [];
    peer.on('message', (m) => messages.push(m.type));
    await expect(peer.ready).rejects.toThrow(/FTW_REPL_AUTH.*refused the connection: authentication failed: the peer does not hold the shared secret/);
    expect(messages).toEqual([]);
    expect(p.state().peer_connected).toBe(false);
  });

  it('a raw stranger gets only the 45-byte challenge, and its forged frames are never taken', async () => {
    const p = await primary({ heartbeat_timeout_ms: 5_000 });
    const socket = net.connect(p.replicationAddress());
    cleanups.push(() => socket.destroy());
    let received = 0;
    socket.on('data', (d: Buffer) => (received += d.length));
    await new Promise<void>((r) => socket.once('connect', () => r()));
    // A FRAMES message without the handshake: length, type 6, epoch 1, 100 bytes.
    const forged = Buffer.alloc(4 + 9 + 100);
    forged.writeUInt32LE(109, 0);
    forged[4] = MessageType.FRAMES;
    forged.writeBigUInt64LE(1n, 5);
    socket.write(forged);
    await new Promise<void>((r) => socket.once('close', () => r()));
    expect(received).toBe(45);
    expect(p.state()).toMatchObject({ peer_connected: false, acked_seq: 0 });
  });

  it('a backup facing a primary with another secret halts, saying why', async () => {
    const p = await primary({ heartbeat_timeout_ms: 5_000 });
    const a = await arbiter();
    const b = await startBackup({ module, arbiter: a, secret: WRONG, primary: p.replicationAddress() });
    cleanups.push(() => b.close());
    expect(await b.halted).toMatch(/FTW_REPL_AUTH.*does not hold the shared secret/);
  });
});

describe('the output rule', () => {
  it('holds an output until the backup acks the entry behind it, while the guest runs on', async () => {
    const p = await primary({ heartbeat_timeout_ms: 10_000 });
    const b = await fakeBackup(p);
    const c = client(p.clientAddress());
    let reply: string | undefined;
    void c.call(text('SET a 1')).then((b) => (reply = str(b)));
    await until(() => b.sends.length > 0, 'the SEND entry to reach the backup');
    const sendSeq = b.sends[0]!;
    await new Promise((r) => setTimeout(r, 150));
    expect(reply).toBeUndefined();
    expect(p.state().held_outputs).toBe(1);
    expect(p.state().lag_entries).toBeGreaterThan(0);
    b.peer.send(MessageType.ACK, u64(sendSeq - 1, b.state.stamp));
    await new Promise((r) => setTimeout(r, 100));
    expect(reply).toBeUndefined();
    const lastSeq = b.state.lastSeq;
    b.peer.send(MessageType.ACK, u64(lastSeq, b.state.stamp));
    await until(() => reply !== undefined, 'the released output');
    expect(reply).toBe('OK\n');
    expect(p.state()).toMatchObject({ held_outputs: 0, acked_seq: lastSeq, lag_entries: 0 });
  });
});

describe('the primary lease', () => {
  it('an ack read late (its echoed heartbeat stamp older than the heartbeat timeout) lets nothing out; a fresh echo does', async () => {
    const p = await primary({ heartbeat_timeout_ms: 400, heartbeat_interval_ms: 50 });
    const b = await fakeBackup(p);
    const { peer, stamps } = b;
    const old = stamps[0]!;
    // The backup stays "alive" (heartbeats with the old stamp), so only the lease decides.
    const keepAlive = setInterval(() => peer.send(MessageType.HEARTBEAT, u64(old)), 50);
    cleanups.push(() => clearInterval(keepAlive));
    const c = client(p.clientAddress());
    let reply: string | undefined;
    void c.call(text('SET a 1')).then((b) => (reply = str(b)));
    await until(() => b.sends.length > 0, 'the SEND entry to reach the backup');
    // Past the lease (timeout - interval = 350 ms) measured from the old stamp, then ack everything with it.
    await until(() => (stamps.at(-1)! - old) / 1000 > 400, 'the old stamp to age past the heartbeat timeout');
    const lastSeq = b.state.lastSeq;
    peer.send(MessageType.ACK, u64(lastSeq, old));
    await until(() => p.state().acked_seq === lastSeq, 'the ack to be taken');
    await new Promise((r) => setTimeout(r, 100));
    expect(reply).toBeUndefined();
    expect(p.state()).toMatchObject({ held_outputs: 1, released_seq: 0 });
    clearInterval(keepAlive);
    peer.send(MessageType.HEARTBEAT, u64(stamps.at(-1)!));
    await until(() => reply !== undefined, 'the output released under a fresh echo');
    expect(reply).toBe('OK\n');
  });
});

describe('primary and backup', () => {
  it('forwards every frame; the backup replays to the state hash of a fault-free replay of its log', async () => {
    const a = await arbiter();
    const p = await primary({ arbiter: a });
    const chunks: Uint8Array[] = [];
    const b = await backupOf(p, a, { onLogBytes: (x) => chunks.push(x) });
    const c = client(p.clientAddress());
    const replies: string[] = [];
    for (let i = 0; i < 20; i++) replies.push(str(await c.call(text(`INCR k`)))); // each waits for the backup's ack
    expect(replies.at(-1)).toBe('VALUE 20\n');
    p.closeInput();
    const exited = await new Promise((r) => b.once('exited', r));
    const pr = p.guestResult!;
    const br = b.guestResult!;
    expect(exited).toBe(br);
    expect(br.exit).toBe('returned');
    expect(br.lastSeq).toBe(pr.lastSeq);
    expect(hex(br.stateHash)).toBe(hex(pr.stateHash));
    const replayed = new GuestCore({ module, mode: 'replay', source: new FrameSource(chunks) }).run();
    expect(hex(replayed.stateHash)).toBe(hex(br.stateHash));
    expect(replayed.icount).toBe(br.icount);
  });

  it("a backup answers clients not_primary with the primary's client address; a client listing the backup first follows it", async () => {
    const a = await arbiter();
    const p = await primary({ arbiter: a });
    const b = await backupOf(p, a);
    const at = p.clientAddress();
    await until(() => p.state().peer_connected, 'the backup to connect');
    const raw = await RawConnection.open(b.clientAddress().port);
    cleanups.push(() => raw.destroy());
    raw.send({ type: 'hello', version: 1 });
    const answer = await raw.next('not_primary');
    expect(answer.primary_hint).toBe(`${at.host}:${at.port}`);
    expect(answer.epoch).toBe(1);
    const c = client(b.clientAddress(), at);
    expect(str(await c.call(text('INCR hinted')))).toBe('VALUE 1\n');
    expect(c.stats().epoch).toBe(1);
  });

  it('clients.advertise replaces the bound address in the hint, and a malformed one is refused at start', async () => {
    const a = await arbiter();
    const p = await primary({ arbiter: a, clients: { advertise: 'kv.example.internal:7001' } });
    const b = await backupOf(p, a);
    await until(() => p.state().peer_connected, 'the backup to connect');
    const raw = await RawConnection.open(b.clientAddress().port);
    cleanups.push(() => raw.destroy());
    raw.send({ type: 'hello', version: 1 });
    expect((await raw.next('not_primary')).primary_hint).toBe('kv.example.internal:7001');
    await expect(startPrimary({ module, arbiter: await arbiter(), secret: SECRET, clients: { advertise: 'no port' } })).rejects.toThrow(/FTW_REPL_OPTION: clients.advertise = "no port"/);
  });

  it('names itself and its backup (CLIENTS) to clients that ask (nodes), drops the backup when it goes, and refuses a malformed CLIENTS', async () => {
    const a = await arbiter();
    const p = await primary({ arbiter: a, clients: { advertise: 'kv-a.example:7001' } });
    const raw = await RawConnection.open(p.clientAddress().port);
    cleanups.push(() => raw.destroy());
    raw.send({ type: 'hello', version: 1, nodes: true });
    await raw.next('welcome');
    expect((await raw.next('nodes')).addresses).toEqual(['kv-a.example:7001']);
    const b = await backupOf(p, a, { clients: { advertise: 'kv-b.example:7002' } });
    expect(await raw.next('nodes')).toEqual({ type: 'nodes', epoch: 1, addresses: ['kv-a.example:7001', 'kv-b.example:7002'] });
    await b.close();
    expect((await raw.next('nodes')).addresses).toEqual(['kv-a.example:7001']);
    // A backup whose CLIENTS is no host:port is refused, naming it; the list stays as it was.
    const fake = await fakeBackup(p);
    const refused = new Promise<string>((r) => fake.peer.on('message', (m) => m.type === MessageType.REFUSED && r(Buffer.from(m.payload).toString('utf8'))));
    fake.peer.send(MessageType.CLIENTS, new TextEncoder().encode('not an address'));
    expect(await refused).toMatch(/CLIENTS of 14 bytes is not a host:port of at most 255 bytes/);
    await sleep(20);
    expect(raw.messages.filter((m) => m.type === 'nodes')).toEqual([]);
    await expect(startBackup({ module, arbiter: a, secret: SECRET, primary: p.replicationAddress(), clients: { advertise: 'x:99999' } })).rejects.toThrow(/FTW_REPL_OPTION: clients.advertise = "x:99999"/);
  });

  it('fails over when the primary goes away: the backup wins the next epoch and serves the same session', async () => {
    const a = await arbiter();
    const p = await startPrimary({ module, arbiter: a, secret: SECRET, ...(onEvent ? { onEvent } : {}) });
    cleanups.push(() => p.close());
    const b = await backupOf(p, a);
    const c = client(p.clientAddress(), b.clientAddress());
    for (let i = 1; i <= 10; i++) expect(str(await c.call(text('INCR n')))).toBe(`VALUE ${i}\n`);
    await until(() => b.state().acked_seq === p.state().last_seq, 'the backup to catch up');
    const t0 = performance.now();
    await p.close();
    const epoch = await b.live;
    const failover_ms = performance.now() - t0;
    expect(epoch).toBe(2);
    expect((await a.current())?.epoch).toBe(2);
    expect(b.state()).toMatchObject({ role: 'primary', epoch: 2 });
    for (let i = 11; i <= 20; i++) expect(str(await c.call(text('INCR n')))).toBe(`VALUE ${i}\n`);
    expect(c.stats().epoch).toBe(2);
    expect(failover_ms).toBeGreaterThan(0); // reported, not asserted on: wall clock
    console.log(`in-process failover: backup live ${Math.round(failover_ms)} ms after the primary closed`);
  });
});

describe('message size', () => {
  it('a request of the largest payload is logged, acked and answered; a client limit above MESSAGE_BYTES_MAX is refused at start', async () => {
    const a = await arbiter();
    const p = await primary({ arbiter: a });
    const b = await backupOf(p, a);
    const c = client(p.clientAddress());
    const head = 'SET big ';
    const largest = text(head + 'v'.repeat(MESSAGE_BYTES_MAX - head.length));
    expect(largest.length).toBe(MESSAGE_BYTES_MAX);
    expect(str(await c.call(largest))).toBe('ERR request too large\n'); // the kv guest's own limit, told by recv
    await until(() => b.state().acked_seq === p.state().last_seq, 'the backup to ack it');
    expect(str(await c.call(text('INCR n')))).toBe('VALUE 1\n'); // and serves on
    await expect(c.call(text(head + 'v'.repeat(MESSAGE_BYTES_MAX - head.length + 1)))).rejects.toThrow(/FTW_NET_PAYLOAD: request payload 1047553 bytes > payload_bytes_max = 1047552/);
    await expect(startPrimary({ module, arbiter: await arbiter(), secret: SECRET, clients: { limits: { payload_bytes_max: 1 << 20 } } })).rejects.toThrow(
      /FTW_REPL_OPTION: clients.limits.payload_bytes_max = 1048576 is outside 0..1047552/,
    );
  });
});

describe('losing the backup', () => {
  it('the primary claims the next epoch before releasing more output, then goes on alone', async () => {
    const a = await arbiter();
    const p = await startPrimary({ module, arbiter: a, secret: SECRET, ...(onEvent ? { onEvent } : {}) });
    cleanups.push(() => p.close());
    const b = await backupOf(p, a);
    const c = client(p.clientAddress());
    expect(str(await c.call(text('INCR m')))).toBe('VALUE 1\n');
    await b.close();
    expect(await new Promise((r) => p.once('live', r))).toBe(2);
    expect(p.state()).toMatchObject({ role: 'primary', epoch: 2, solo: true });
    expect(str(await c.call(text('INCR m')))).toBe('VALUE 2\n');
  });

  it('a primary that loses the race halts and releases nothing more', async () => {
    const a = await arbiter();
    const p = await startPrimary({ module, arbiter: a, secret: SECRET, backup_wait_ms: 200 });
    cleanups.push(() => p.close());
    await a.claim(2, 'someone-else'); // another node took the next epoch first
    expect(await p.halted).toMatch(/epoch 2 is held by someone-else: this primary \(epoch 1\) is stale/);
    expect(p.state().role).toBe('halted');
  });
});

describe('batching on the log channel', () => {
  it('the frames sealed in one event-loop turn go to the backup as one FRAMES message', async () => {
    const p = await primary({ heartbeat_timeout_ms: 10_000 });
    const b = await fakeBackup(p);
    // The kv guest now waits in recv: it seals nothing until a request comes.
    await new Promise((r) => setTimeout(r, 100));
    await until(() => b.state.lastSeq === p.state().last_seq, 'the start of the log');
    const before = b.messages.length;
    // Eight frames sealed within one turn, as a busy worker posts them: built here and handed to the primary
    // the way its runner does (the primary's private runner, as the bench's probes reach it).
    const runner = (p as unknown as { runner: NodeJS.EventEmitter }).runner;
    const first = p.state().last_seq + 1;
    const sealed: Array<[Uint8Array, number, number]> = [];
    const writer = new FrameWriter({ next_seq: first, on_frame: (bytes, info) => sealed.push([bytes, info.firstSeq, info.lastSeq]) });
    for (let i = 0; i < 8; i++) {
      writer.appendClock(EntryKind.CLOCK_NOW, 1_000_000 + i, BigInt(i + 1));
      writer.flush();
    }
    for (const [bytes, f, l] of sealed) runner.emit('frame', bytes, f, l, { recvs: [], ended: false });
    await until(() => b.state.lastSeq === first + 7, 'the eight frames');
    expect(b.messages.slice(before)).toEqual([sealed.map(([, f, l]) => [f, l])]);
    expect(b.peer.received[MessageType.FRAMES]).toBe(b.messages.length);
  });

  it('a backup whose replay trails past replay_lag_ms_max throttles the primary and holds its input until it catches up', async () => {
    const p = await primary({ heartbeat_timeout_ms: 10_000, replay_lag_ms_max: 60 });
    const b = await fakeBackup(p);
    const c = client(p.clientAddress());
    // The fake backup acks everything it receives but reports (in its HEARTBEATs) that it replayed `replayed`.
    let caughtUp = false;
    const beat = setInterval(() => {
      b.peer.send(MessageType.ACK, u64(b.state.lastSeq, b.state.stamp));
      b.peer.send(MessageType.HEARTBEAT, u64(b.state.stamp, caughtUp ? b.state.lastSeq : 1));
    }, 10);
    cleanups.push(() => clearInterval(beat));
    expect(str(await c.call(text('INCR lag')))).toBe('VALUE 1\n');
    // Nothing replayed: the lag grows past 60 ms and the primary throttles itself.
    await until(() => (p.state().throttle_pause_us ?? 0) > 0, 'the throttle');
    expect(p.state().replay_lag_ms!).toBeGreaterThan(60);
    // Held input: a request is accepted by nobody's guest while the lag lasts.
    const seqBefore = p.state().last_seq;
    const reply = c.call(text('INCR lag'));
    await new Promise((r) => setTimeout(r, 150));
    expect(p.state().last_seq, 'no new entry while input is held').toBe(seqBefore);
    // The backup reports it replayed all: the throttle lifts and the request goes through.
    caughtUp = true;
    await until(() => p.state().throttle_pause_us === 0, 'the throttle to lift');
    expect(str(await reply)).toBe('VALUE 2\n');
  });

  it('the acks of one read release once: one RELEASED covers all their outputs', async () => {
    const p = await primary({ heartbeat_timeout_ms: 10_000 });
    const b = await fakeBackup(p);
    const c = client(p.clientAddress());
    const replies: string[] = [];
    for (let i = 0; i < 6; i++) void c.call(text(`INCR r`)).then((x) => replies.push(str(x)));
    await until(() => b.sends.length === 6 && b.state.lastSeq === p.state().last_seq, 'six SEND entries');
    expect(p.state().held_outputs).toBe(6);
    // One ack per SEND entry, all in one socket write: the primary reads them in one go.
    const socket = (b.peer as unknown as { socket: net.Socket }).socket;
    socket.cork();
    for (const seq of b.sends) b.peer.send(MessageType.ACK, u64(seq, b.state.stamp));
    b.peer.send(MessageType.ACK, u64(b.state.lastSeq, b.state.stamp));
    socket.uncork();
    await until(() => replies.length === 6, 'the six outputs');
    await new Promise((r) => setTimeout(r, 50));
    expect(replies).toEqual(['VALUE 1\n', 'VALUE 2\n', 'VALUE 3\n', 'VALUE 4\n', 'VALUE 5\n', 'VALUE 6\n']);
    expect(b.released).toEqual([b.state.lastSeq]);
    expect(p.state()).toMatchObject({ released_seq: b.state.lastSeq, held_outputs: 0 });
  });

  it('a backup acks once for all the FRAMES messages of one read', async () => {
    // A real log of the kv guest: twelve requests, a frame or more each.
    const a = await arbiter();
    const frames: Uint8Array[] = [];
    const lasts: number[] = [];
    const p = await primary({ arbiter: a, backup_wait_ms: 0, onLogFrames: (bytes, _f, l) => (frames.push(bytes.slice()), lasts.push(l)) });
    await new Promise((r) => p.once('live', r)); // alone: releases at once
    const c = client(p.clientAddress());
    for (let i = 0; i < 12; i++) await c.call(text(`INCR q`));
    await p.close();
    expect(frames.length).toBeGreaterThanOrEqual(12);
    // A fake primary serves that log: every frame its own FRAMES message, all in one socket write.
    const acks: number[] = [];
    let served: LogPeer | undefined;
    const server = net.createServer((socket) => {
      const peer = new LogPeer(socket, 'primary', { secret: SECRET, epoch: () => 1 });
      served = peer;
      peer.on('message', (m) => {
        if (m.type === MessageType.ACK) acks.push(Number(Buffer.from(m.payload).readBigUInt64LE(0)));
        if (m.type !== MessageType.HELLO) return;
        socket.cork();
        for (const f of frames) peer.send(MessageType.FRAMES, f);
        socket.uncork();
      });
    });
    cleanups.push(() => new Promise((r) => server.close(r)));
    cleanups.push(() => served?.close());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const port = (server.address() as net.AddressInfo).port;
    const backup = await startBackup({ module, arbiter: await arbiter(), secret: SECRET, primary: { host: '127.0.0.1', port }, heartbeat_timeout_ms: 10_000 });
    cleanups.push(() => backup.close());
    await until(() => acks.at(-1) === lasts.at(-1), 'the ack of the whole log');
    await new Promise((r) => setTimeout(r, 50));
    // One read, one ack (two if the kernel split the write); one per FRAMES message would be frames.length.
    expect(acks.length).toBeLessThanOrEqual(2);
    expect(backup.state()).toMatchObject({ acked_seq: lasts.at(-1), role: 'backup' });
  });

  it("a malformed PRIMARY address is noted and dropped: the backup keeps following and gives no hint until a good one", async () => {
    let served: LogPeer | undefined;
    let hellos = 0;
    const server = net.createServer((socket) => {
      const peer = new LogPeer(socket, 'primary', { secret: SECRET, epoch: () => 1 });
      served = peer;
      peer.on('message', (m) => {
        if (m.type !== MessageType.HELLO) return;
        hellos++;
        peer.send(MessageType.HEARTBEAT, u64(1));
        peer.send(MessageType.PRIMARY, text('no port here'));
      });
    });
    cleanups.push(() => new Promise((r) => server.close(r)));
    cleanups.push(() => served?.close());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const port = (server.address() as net.AddressInfo).port;
    const notes: string[] = [];
    const backup = await startBackup({ module, arbiter: await arbiter(), secret: SECRET, primary: { host: '127.0.0.1', port }, heartbeat_timeout_ms: 10_000, onEvent: (t) => notes.push(t) });
    cleanups.push(() => backup.close());
    await until(() => notes.some((n) => n.includes('not a host:port')), 'the note on the bad address');
    const hint = async (): Promise<string | undefined> => {
      const raw = await RawConnection.open(backup.clientAddress().port);
      cleanups.push(() => raw.destroy());
      raw.send({ type: 'hello', version: 1 });
      return (await raw.next('not_primary')).primary_hint;
    };
    expect(await hint()).toBeUndefined();
    served!.send(MessageType.PRIMARY, text('127.0.0.1:4242'));
    await new Promise((r) => setTimeout(r, 50));
    expect(await hint()).toBe('127.0.0.1:4242');
    expect(hellos).toBe(1); // never refused, never reconnected
    expect(backup.state().role).toBe('backup');
  });
});

function u64(...values: number[]): Uint8Array {
  const out = new Uint8Array(8 * values.length);
  values.forEach((n, i) => new DataView(out.buffer).setBigUint64(8 * i, BigInt(n), true));
  return out;
}
