// State transfer (docs/SNAPSHOT.md): a backup joining a primary that went on alone gets a snapshot of the
// guest at a recv and the frames after it, instead of the whole log, so joining works after the history is
// gone and takes time bounded by the state, not by the log.
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { instrument, prepareUnwind } from '../../host/instrument/index.ts';
import { FtClient } from '../../host/net/index.ts';
import {
  decodeTransfer, encodeTransfer, LogPeer, MessageType, TransferAssembler, TransferSender, u64Payload, type Backup, type Primary,
} from '../../host/replication/index.ts';
import { FrameSource, GuestCore, hex } from '../../host/vm/index.ts';
import type { GuestSnapshot } from '../../host/vm/index.ts';
import { propertySeed } from '../support/fuel.ts';
import { SECRET, replicationFixture, str, text, until } from './support.ts';

const root = new URL('../..', import.meta.url).pathname;
const fx = replicationFixture('transfer');
const prepared = new WebAssembly.Module(instrument(await prepareUnwind(readFileSync(join(root, 'build/guest/kv.wasm')))));
const incr = async (c: FtClient, key: string) => str(await c.call(text(`INCR ${key}`)));

/** A primary of the prepared kv guest that went on alone in epoch 2 with its history given up, having served `n` INCRs of x. */
async function lonePrimary(n: number): Promise<{ p: Primary; c: FtClient; a: Awaited<ReturnType<typeof fx.arbiter>> }> {
  const a = await fx.arbiter();
  const p = await fx.primary({ module: prepared, arbiter: a, backup_wait_ms: 100, history_bytes_max: 4096 });
  expect(await new Promise((r) => p.once('live', r))).toBe(2);
  // c knows only p; it learns the joining backup's client address from p (the client protocol's `nodes`).
  const c = fx.client(p.clientAddress());
  for (let i = 1; i <= n; i++) expect(await incr(c, 'x')).toBe(`VALUE ${i}\n`);
  return { p, c, a };
}

describe('a backup joining a lone primary by state transfer', () => {
  it('is restored from a snapshot after the history is gone, protects the primary again, and takes over with every output', async () => {
    const { p, c, a } = await lonePrimary(200);
    const notes: string[] = [];
    p.on('note', (t) => notes.push(t));
    const frames: Uint8Array[] = [];
    let transfer: Uint8Array | undefined;
    let lent: Uint8Array | undefined;
    const b2: Backup = await fx.backupOf(p, a, {
      module: prepared,
      onLogFrames: (bytes) => frames.push(bytes),
      onSnapshot: (bytes) => {
        transfer = new Uint8Array(bytes); // a copy: the bytes are lent for the call only
        lent = bytes;
      },
    });
    // The primary serves while the backup joins.
    const serving = (async () => {
      for (let i = 201; i <= 260; i++) expect(await incr(c, 'x')).toBe(`VALUE ${i}\n`);
    })();
    await until(() => !p.state().solo && p.state().rejoin === undefined && b2.state().synced === true, 'the joining backup to be synced');
    await serving;
    const restored = b2.state().restored_seq!;
    // The guest's memory moved to the backup's worker rather than being copied: the lent buffer is detached.
    expect(transfer!.length).toBeGreaterThan(65536);
    expect(lent!.byteLength).toBe(0);
    expect(restored).toBeGreaterThan(200); // past the history, which ended at 4096 bytes
    const phases = notes.map((t) => (/state transfer from a snapshot/.test(t) ? 'asked' : /snapshot of the guest at seq \d+/.test(t) ? 'sending' : /outputs wait for its acks again/.test(t) ? 'syncing' : /protected again in epoch 2/.test(t) ? 'protected' : '')).filter(Boolean);
    expect(phases).toEqual(['asked', 'sending', 'syncing', 'protected']);

    // Protected: the primary goes away; b2 takes over in epoch 3 and the count runs on without a gap.
    for (let i = 261; i <= 270; i++) expect(await incr(c, 'x')).toBe(`VALUE ${i}\n`);
    await p.close();
    expect(await b2.live).toBe(3);
    for (let i = 271; i <= 280; i++) expect(await incr(c, 'x')).toBe(`VALUE ${i}\n`);
    expect(c.stats().epoch).toBe(3);

    // The snapshot plus the log b2 received after it and then recorded replay to b2's final state.
    expect(b2.closeInput()).toBe(true);
    const result = await new Promise<NonNullable<Backup['guestResult']>>((r) => b2.once('exited', r));
    const t = decodeTransfer(transfer!);
    if (typeof t === 'string') throw new Error(t);
    expect(t.snapshot.lastSeq).toBe(restored);
    const replayed = new GuestCore({ module: prepared, mode: 'replay', source: new FrameSource(frames, { nextSeq: restored + 1 }), restore: t.snapshot }).run();
    expect(hex(replayed.stateHash)).toBe(hex(result.stateHash));
    expect(replayed.icount).toBe(result.icount);
  });

  it('a backup restored from a snapshot that went live serves the next backup by snapshot in turn', async () => {
    const { p, c, a } = await lonePrimary(50);
    const b1 = await fx.backupOf(p, a, { module: prepared, replication: {} });
    await until(() => b1.state().synced === true && p.state().rejoin === undefined, 'b1 to be synced');
    expect(b1.state().restored_seq).toBeGreaterThan(0);
    await p.close();
    expect(await b1.live).toBe(3);
    await until(() => b1.replicationAddress() !== undefined, 'b1 to serve new backups');
    const c2 = fx.client(b1.clientAddress());
    for (let i = 51; i <= 80; i++) expect(await incr(c2, 'x')).toBe(`VALUE ${i}\n`);
    const b2 = await fx.backupOf({ replicationAddress: () => b1.replicationAddress()! }, a, { module: prepared });
    await until(() => b2.state().synced === true && b1.state().rejoin === undefined && !b1.state().solo, 'b2 to be synced');
    expect(b2.state().restored_seq).toBeGreaterThan(b1.state().restored_seq ?? 0);
    for (let i = 81; i <= 90; i++) expect(await incr(c2, 'x')).toBe(`VALUE ${i}\n`);
    await b1.close();
    expect(await b2.live).toBe(4);
    const c3 = fx.client(b2.clientAddress());
    expect(await incr(c3, 'x')).toBe('VALUE 91\n');
    void c;
  });
});

describe('a joining backup that goes away', () => {
  it('during its state transfer leaves the primary alone and serving; the next one joins', async () => {
    const { p, c, a } = await lonePrimary(100);
    // Load the guest so the snapshot is several pieces (its memory grows with the values).
    for (let i = 0; i < 300; i++) await c.call(text(`SET big${i} ${'v'.repeat(4000)}`));
    const notes: string[] = [];
    p.on('note', (t) => notes.push(t));
    const b2 = await fx.backupOf(p, a, { module: prepared });
    await until(() => notes.some((t) => /snapshot of the guest at seq \d+ \((\d+) bytes/.test(t)), 'the snapshot to be on its way');
    await b2.close();
    await until(() => p.state().rejoin === undefined, 'the primary to give up on it');
    expect(p.state()).toMatchObject({ role: 'primary', solo: true, epoch: 2 });
    expect(notes.some((t) => /the backup catching up .* went away/.test(t))).toBe(true);
    for (let i = 101; i <= 110; i++) expect(await incr(c, 'x')).toBe(`VALUE ${i}\n`);
    const b3 = await fx.backupOf(p, a, { module: prepared });
    await until(() => b3.state().synced === true && !p.state().solo && p.state().rejoin === undefined, 'the next backup to be synced');
    for (let i = 111; i <= 115; i++) expect(await incr(c, 'x')).toBe(`VALUE ${i}\n`);
    expect(b3.state().acked_seq).toBe(p.state().last_seq);
  });
});

describe('outputs a client has not acknowledged', () => {
  it('survive a state transfer: after a failover to the restored backup, the client resumes and gets them', async () => {
    const { openSession, RawConnection } = await import('../net/support.ts');
    const { p, a } = await lonePrimary(3);
    // A client that reads its outputs but never acknowledges them, then goes away.
    const { raw, welcome } = await openSession(p.clientAddress().port);
    raw.send({ type: 'request', session: welcome.session, seq: 1, payload: text('SET q 41') });
    raw.send({ type: 'request', session: welcome.session, seq: 2, payload: text('INCR q') });
    expect(str((await raw.next('output')).payload)).toBe('OK\n');
    expect(str((await raw.next('output')).payload)).toBe('VALUE 42\n');
    raw.destroy();
    const b2 = await fx.backupOf(p, a, { module: prepared });
    await until(() => !p.state().solo && p.state().rejoin === undefined && b2.state().synced === true, 'the joining backup to be synced');
    expect(b2.state().restored_seq).toBeGreaterThan(0);
    await p.close();
    expect(await b2.live).toBe(3);
    // Resuming with nothing acknowledged: the new primary sends both outputs again, from the transferred table.
    const again = await RawConnection.open(b2.clientAddress().port);
    fx.cleanup(() => again.destroy());
    again.send({ type: 'hello', version: 1, session: welcome.session, session_epoch: welcome.session_epoch, last_output_seq: 0 });
    expect(await again.next('welcome')).toMatchObject({ resumed: true, session: welcome.session });
    const first = await again.next('output');
    const second = await again.next('output');
    expect([first.seq, str(first.payload), second.seq, str(second.payload)]).toEqual([1, 'OK\n', 2, 'VALUE 42\n']);
  });
});

describe('a guest that reaches no recv', () => {
  it('gives no snapshot: the joining backup is refused after snapshot_wait_ms, naming why, and the primary goes on alone', async () => {
    const { wat } = await import('../support/wat.ts');
    // It imports recv (so it can be prepared) but computes forever without calling it.
    const spinner = new WebAssembly.Module(instrument(await prepareUnwind(await wat(`(module
      (import "ft" "recv" (func $recv (param i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "_start") (local $i i32)
        (loop $l (local.set $i (i32.add (local.get $i) (i32.const 1))) (br $l))
        (drop (call $recv (i32.const 0) (i32.const 16) (i32.const 0)))))`))));
    const a = await fx.arbiter();
    const p = await fx.primary({ module: spinner, arbiter: a, backup_wait_ms: 100, snapshot_wait_ms: 300 });
    expect(await new Promise((r) => p.once('live', r))).toBe(2);
    const b = await fx.backupOf(p, a, { module: spinner });
    expect(await b.halted).toMatch(/the primary refused this backup: the guest reached no recv within 300 ms: no snapshot to send/);
    expect(p.state()).toMatchObject({ role: 'primary', solo: true });
    expect(p.state().rejoin).toBeUndefined();
  });
});

describe('a backup refuses a bad state transfer, naming it', () => {
  /** A fake primary in epoch 5 that answers HELLO with the given messages. */
  async function fakePrimary(answer: (peer: LogPeer) => void): Promise<{ host: string; port: number }> {
    const server = net.createServer((socket) => {
      const peer = new LogPeer(socket, 'primary', { secret: SECRET, epoch: () => 5 });
      peer.on('message', (m) => {
        if (m.type === MessageType.HELLO) answer(peer);
      });
      fx.cleanup(() => peer.close());
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    fx.cleanup(() => server.close());
    return { host: '127.0.0.1', port: (server.address() as net.AddressInfo).port };
  }
  const piece = (total: number, offset: number, bytes: Uint8Array): Uint8Array => {
    const head = Buffer.alloc(16);
    head.writeBigUInt64LE(BigInt(total), 0);
    head.writeBigUInt64LE(BigInt(offset), 8);
    return Buffer.concat([head, bytes]);
  };

  it('pieces out of order, a damaged transfer, and a transfer after log frames', async () => {
    const a = await fx.arbiter();
    // A good table, then 40 bytes where the snapshot should be; and a table the client server refuses.
    const table = { version: 1 as const, next_session: 1, sessions: [] };
    const good = { icount: 1n, lastSeq: 3, memory: new Uint8Array(65536), globals: {}, stack: new Uint8Array(0), tables: '', lastMono: -1n };
    const [head, tableBytes] = encodeTransfer({ table, snapshot: good });
    const damaged = Buffer.concat([head!, tableBytes!, new Uint8Array(40)]);
    const badTable = Buffer.concat(encodeTransfer({ table: { ...table, next_session: 0 }, snapshot: good }));
    const cases: Array<[string, (peer: LogPeer) => void, RegExp]> = [
      ['out of order', (peer) => peer.send(MessageType.SNAPSHOT, piece(100, 50, new Uint8Array(10))), /SNAPSHOT piece at offset 50, expected 0/],
      ['no table', (peer) => peer.send(MessageType.SNAPSHOT, piece(40, 0, new Uint8Array(40))), /state transfer: its session table is not msgpack/],
      ['damaged snapshot', (peer) => peer.send(MessageType.SNAPSHOT, piece(damaged.length, 0, damaged)), /state transfer: .*snapshot: bad magic at byte 0/],
      ['bad table', (peer) => peer.send(MessageType.SNAPSHOT, piece(badTable.length, 0, badTable)), /its session table: .*next_session 0 is not in 1\.\./],
      ['oversized', (peer) => peer.send(MessageType.SNAPSHOT, piece(2 ** 40, 0, new Uint8Array(1))), /state transfer of \d+ bytes is outside/],
    ];
    const at = async (answer: (peer: LogPeer) => void) => {
      const address = await fakePrimary(answer);
      return { replicationAddress: () => address };
    };
    for (const [, answer, reason] of cases) {
      const b = await fx.backupOf(await at(answer), a, { module: prepared });
      expect(await b.halted).toMatch(reason);
    }
    // Frames first (a heartbeat and an empty FRAMES start the log), then a snapshot: refused.
    const notes: string[] = [];
    await fx.backupOf(
      await at((peer) => {
        peer.send(MessageType.HEARTBEAT, u64Payload(1));
        peer.send(MessageType.FRAMES, new Uint8Array(0));
        peer.send(MessageType.SNAPSHOT, piece(40, 0, new Uint8Array(40)));
      }),
      a,
      { module: prepared, heartbeat_timeout_ms: 2000, onEvent: (t) => notes.push(t) },
    );
    await until(() => notes.some((t) => /a state transfer to a backup that holds log already/.test(t)), 'the backup to refuse the transfer');
  });
});

describe('transfer pieces', () => {
  const snapshot = (memoryPages: number, seed: number): GuestSnapshot => {
    const memory = new Uint8Array(memoryPages * 65536);
    for (let i = 0; i < memory.length; i += 4099) memory[i] = (seed + i) & 0xff;
    return { icount: 123456789n + BigInt(seed), lastSeq: 77 + seed, memory, globals: { g0: 1.5, g1: -7n, g2: -0 }, stack: new Uint8Array([1, 2, 3, seed & 0xff]), tables: 't:1;f3,', lastMono: 99n };
  };

  it('cut at any size and put back together, give the same transfer, buffered outputs included (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 17, max: 200_000 }), fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 1000 }), fc.integer({ min: 0, max: 50 }), (chunk, pages, seed, count) => {
        const sessions = Array.from({ length: count }, (_, i) => {
          const buffered = Array.from({ length: i % 3 }, (_, k) => ({ seq: i * 5 - (i % 3) + k + 1, epoch: 2, payload: new Uint8Array([i, k, seed & 0xff]) }));
          return { session: i + 1, session_epoch: 1 + (i % 3), delivered: i * 7, outputs: i * 5, output_acked: i * 5 - buffered.length, buffered };
        });
        const t = { table: { version: 1 as const, next_session: count + 1, sessions }, snapshot: snapshot(pages, seed) };
        const sender = new TransferSender(encodeTransfer(t));
        const assembler = new TransferAssembler();
        let whole: Uint8Array | undefined;
        for (let parts = sender.next(chunk); parts; parts = sender.next(chunk)) {
          expect(whole).toBeUndefined();
          const got = assembler.push(Buffer.concat(parts));
          if (typeof got === 'string' && got !== 'more') throw new Error(got);
          if (got !== 'more') whole = got as Uint8Array;
        }
        const back = decodeTransfer(whole!);
        if (typeof back === 'string') throw new Error(back);
        expect(back.table.next_session).toBe(count + 1);
        expect(back.table.sessions.map((s) => ({ ...s, buffered: s.buffered.map((b) => ({ ...b, payload: [...b.payload] })) }))).toEqual(
          sessions.map((s) => ({ ...s, buffered: s.buffered.map((b) => ({ ...b, payload: [...b.payload] })) })),
        );
        expect(back.snapshot.globals).toEqual({ g0: 1.5, g1: -7n, g2: -0 });
        expect(Object.is(back.snapshot.globals.g2, -0)).toBe(true);
        expect(Buffer.compare(back.snapshot.memory, t.snapshot.memory)).toBe(0);
        expect([back.snapshot.icount, back.snapshot.lastSeq, back.snapshot.lastMono, back.snapshot.tables]).toEqual([t.snapshot.icount, t.snapshot.lastSeq, 99n, 't:1;f3,']);
      }),
      { numRuns: 60, seed: propertySeed('transfer-pieces') },
    );
  });

  it('a piece that disagrees on the total, runs past it, or is too short is named', () => {
    const assembler = new TransferAssembler();
    const head = (total: number, offset: number) => {
      const b = Buffer.alloc(16);
      b.writeBigUInt64LE(BigInt(total), 0);
      b.writeBigUInt64LE(BigInt(offset), 8);
      return b;
    };
    expect(assembler.push(new Uint8Array(3))).toMatch(/shorter than its header/);
    expect(assembler.push(Buffer.concat([head(10, 0), Buffer.alloc(4)]))).toBe('more');
    expect(assembler.push(Buffer.concat([head(11, 4), Buffer.alloc(4)]))).toMatch(/says the transfer is 11 bytes, the first said 10/);
    expect(assembler.push(Buffer.concat([head(10, 4), Buffer.alloc(7)]))).toMatch(/runs past the transfer's 10/);
    expect(decodeTransfer(new Uint8Array(3))).toMatch(/shorter than its header/);
    expect(decodeTransfer(Buffer.from([9, 0, 0, 0, 1]))).toMatch(/a session table of 9 bytes in 5/);
  });
});
