// Write batching and the fast message paths: frames queued in one event-loop turn leave in one socket write,
// byte for byte what encodeMessage writes, and the fast decoder reads exactly what msgpackr reads.
import net from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import fc from 'fast-check';
import { Packr, Unpackr } from 'msgpackr';
import {
  ClientServer,
  FrameDecoder,
  FtClient,
  WRITE_SLAB_BYTES,
  WriteBatch,
  decodeClientMessage,
  encodeBody,
  encodeMessage,
  writeMessage,
  type ClientMessage,
  type ServerEvent,
  type ServerMessage,
} from '../../host/net/index.ts';
import { readFlatMap } from '../../host/net/messages.ts';
import { openSession, propertySeed, sleep, text, waitFor } from './support.ts';
import { concat } from '../log/support.ts';

const cleanup: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  vi.restoreAllMocks();
  for (const fn of cleanup.splice(0).reverse()) await fn();
});


/** Integers around every msgpack size boundary, and any up to 2^53-1. */
const anyUint = fc.oneof(
  fc.constantFrom(0, 1, 127, 128, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, 2 ** 40 + 3, Number.MAX_SAFE_INTEGER),
  fc.integer({ min: 0, max: 0xffffffff }),
  fc.maxSafeNat(),
);
const anyPayload = fc.oneof(
  fc.uint8Array({ maxLength: 300 }),
  fc.constantFrom(0, 255, 256, 65535, 65536, 70_000).map((n) => new Uint8Array(n).fill(n & 0xff)),
);
const hotMessage: fc.Arbitrary<ClientMessage | ServerMessage> = fc.oneof(
  fc.record({ type: fc.constant('accepted' as const), session: anyUint, seq: anyUint }),
  fc.record({ type: fc.constant('output' as const), epoch: anyUint, session: anyUint, seq: anyUint, payload: anyPayload }),
  fc.record({ type: fc.constant('request' as const), session: anyUint, seq: anyUint, payload: anyPayload }),
  fc.record({ type: fc.constant('ack' as const), session: anyUint, output_seq: anyUint }),
);

describe('writeMessage and WriteBatch', () => {
  it('writes request, ack, accepted and output byte for byte as encodeMessage does', () => {
    const seed = propertySeed('writeMessage = encodeMessage');
    fc.assert(
      fc.property(fc.array(hotMessage, { minLength: 1, maxLength: 20 }), (messages) => {
        const batch = new WriteBatch();
        for (const m of messages) writeMessage(batch, m);
        expect(batch.pending).toBe(messages.reduce((n, m) => n + encodeMessage(m).length, 0));
        expect(Buffer.from(batch.take()!).equals(Buffer.from(concat(messages.map(encodeMessage))))).toBe(true);
        expect(batch.take()).toBeUndefined();
      }),
      { seed, numRuns: 300 },
    );
  });

  it('falls back to encodeMessage for fields the fast path does not write (negative, fractional, beyond 2^53)', () => {
    const odd = [
      { type: 'accepted', session: -1, seq: 2 },
      { type: 'accepted', session: 1, seq: 2.5 },
      { type: 'ack', session: 1, output_seq: 2 ** 60 },
      { type: 'output', epoch: 1, session: 1, seq: 1, payload: 'not bin' },
      { type: 'welcome', version: 1, epoch: 2, session: 7, session_epoch: 2, role: 'primary', resumed: false, accepted: 0, received: 0, outputs: 0, limits: { frame_bytes_max: 1, payload_bytes_max: 1, requests_inflight_max: 1, outputs_buffered_max: 1, idle_timeout_ms: 1 } },
      { type: 'error', code: 'seq_gap', message: 'héllo' },
      { type: 'pong' },
    ] as unknown as ServerMessage[];
    for (const m of odd) {
      const batch = new WriteBatch();
      writeMessage(batch, m);
      expect(Buffer.from(batch.take()!).equals(Buffer.from(encodeMessage(m)))).toBe(true);
    }
  });

  it('never changes bytes already taken, while more frames are queued and the slab grows', () => {
    const batch = new WriteBatch();
    const taken: Array<{ view: Uint8Array; copy: Uint8Array }> = [];
    const sizes = [10, 3000, 5000, 100, WRITE_SLAB_BYTES, 2 * WRITE_SLAB_BYTES, 7, 1, 4000, 4000, 4000];
    for (const [i, n] of sizes.entries()) {
      batch.push(new Uint8Array(n).fill(i + 1));
      if (i % 2 === 1) {
        const view = batch.take()!;
        taken.push({ view, copy: view.slice() });
      }
    }
    const last = batch.take()!;
    taken.push({ view: last, copy: last.slice() });
    for (const t of taken) expect(Buffer.from(t.view).equals(Buffer.from(t.copy))).toBe(true);
    // Read back as frames: every body whole and in order.
    const decoder = new FrameDecoder(1 << 20);
    const bodies: number[] = [];
    for (const t of taken) {
      decoder.push(t.view);
      for (let b = decoder.next(); b; b = decoder.next()) {
        expect(b.every((x) => x === b[0])).toBe(true);
        bodies.push(b.length);
      }
    }
    expect(bodies).toEqual(sizes);
  });
});

describe('readFlatMap (the fast decoder)', () => {
  const packr = new Packr({ useRecords: false, variableMapSize: true });
  const unpackr = new Unpackr({ mapsAsObjects: false, useRecords: false, copyBuffers: true });
  /** Bins as plain arrays, so that a Buffer and a Uint8Array of the same bytes compare equal. */
  const plain = (map: Map<unknown, unknown>): Array<[unknown, unknown]> => [...map].map(([k, v]) => [k, v instanceof Uint8Array ? [...v] : v]);
  const key = fc.oneof(fc.constantFrom('type', 'session', 'seq', 'payload', 'epoch', 'limits', 'é'), fc.string({ maxLength: 40 }), fc.integer());
  const value = fc.oneof(
    anyUint,
    fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
    fc.constantFrom(-1, -32, -33, -128, -129, 0.5, -0, NaN),
    fc.double(),
    fc.boolean(),
    fc.constant(null),
    fc.string({ maxLength: 40 }),
    fc.uint8Array({ maxLength: 300 }),
    fc.bigInt({ min: -(2n ** 63n), max: 2n ** 64n - 1n }),
    fc.array(fc.integer(), { maxLength: 3 }),
    fc.dictionary(fc.string({ maxLength: 5 }), fc.integer(), { maxKeys: 2 }).map((o) => new Map(Object.entries(o))),
  );
  const mapBytes = fc.array(fc.tuple(key, value), { maxLength: 18 }).map((entries) => new Uint8Array(packr.pack(new Map(entries))));

  function agrees(bytes: Uint8Array): void {
    const fast = readFlatMap(bytes);
    let slow: unknown;
    try {
      slow = unpackr.unpack(bytes);
    } catch {
      expect(fast).toBeUndefined();
      return;
    }
    if (fast === undefined) return;
    expect(slow).toBeInstanceOf(Map);
    expect(plain(fast)).toEqual(plain(slow as Map<unknown, unknown>));
    for (const v of fast.values()) if (v instanceof Uint8Array) expect(v.constructor).toBe(Uint8Array);
  }

  it('reads any map either exactly as msgpackr does, or not at all', () => {
    const seed = propertySeed('readFlatMap = msgpackr');
    fc.assert(fc.property(mapBytes, (bytes) => agrees(bytes)), { seed, numRuns: 500 });
  });

  it('agrees with msgpackr on damaged bodies: truncated, extended, a byte changed', () => {
    const seed = propertySeed('readFlatMap damaged');
    fc.assert(
      fc.property(mapBytes, fc.nat(), fc.nat(255), fc.constantFrom('cut', 'extend', 'flip'), (bytes, at, byte, how) => {
        if (how === 'extend') return agrees(concat([bytes, new Uint8Array([byte])]));
        if (bytes.length === 0) return;
        const i = at % bytes.length;
        if (how === 'cut') return agrees(bytes.subarray(0, i));
        const changed = bytes.slice();
        changed[i] = byte;
        agrees(changed);
      }),
      { seed, numRuns: 1000 },
    );
  });

  it('takes every message of the request path, and its bins are copies', () => {
    const messages: Array<ClientMessage | ServerMessage> = [
      { type: 'request', session: 3, seq: 70_000, payload: text('GET k') },
      { type: 'ack', session: 3, output_seq: 9 },
      { type: 'accepted', session: 3, seq: 200 },
      { type: 'output', epoch: 2, session: 3, seq: 1, payload: new Uint8Array(70_000).fill(7) },
      { type: 'hello', version: 1, session: 4, session_epoch: 2, last_output_seq: 3 },
      { type: 'ping' },
    ];
    for (const m of messages) expect(readFlatMap(encodeBody(m)), m.type).toBeInstanceOf(Map);
    const body = new Uint8Array(encodeBody({ type: 'request', session: 3, seq: 1, payload: text('abc') }));
    const decoded = decodeClientMessage(body) as Extract<ClientMessage, { type: 'request' }>;
    body.fill(0);
    expect([...decoded.payload]).toEqual([...text('abc')]);
    expect(decoded.payload.constructor).toBe(Uint8Array);
  });
});

describe('write coalescing on the wire', () => {
  async function server(options: { limits?: Record<string, number> } = {}) {
    const events: ServerEvent[] = [];
    const s = new ClientServer({
      role: () => 'primary',
      epoch: () => 3,
      onRequest: (session, seq) => {
        s.setDelivered(session, seq);
        s.accept(session, seq);
        s.output(session, seq, text(`out ${seq}`), 3);
      },
      onEvent: (e) => events.push(e),
      limits: { sweep_interval_ms: 10, ...options.limits },
    });
    cleanup.push(() => s.close({ abort: true }));
    const { port } = await s.listen();
    return { s, port, events };
  }

  /** Socket writes, with the socket that made each. */
  function spyWrites(): Array<{ socket: net.Socket; bytes: Uint8Array }> {
    const writes: Array<{ socket: net.Socket; bytes: Uint8Array }> = [];
    const original = net.Socket.prototype.write;
    vi.spyOn(net.Socket.prototype, 'write').mockImplementation(function (this: net.Socket, ...args: unknown[]) {
      if (args[0] instanceof Uint8Array) writes.push({ socket: this, bytes: args[0] });
      return (original as (...a: unknown[]) => boolean).apply(this, args);
    });
    return writes;
  }

  it('the server sends what one turn produced for a connection in one write, in order', async () => {
    const { s, port } = await server();
    const { raw, welcome } = await openSession(port);
    cleanup.push(() => raw.destroy());
    const writes = spyWrites();
    for (let seq = 1; seq <= 50; seq++) {
      s.setDelivered(welcome.session, seq);
      s.accept(welcome.session, seq);
      s.output(welcome.session, seq, text(`o${seq}`), 3);
    }
    expect(writes.length).toBe(0); // nothing leaves before the turn ends
    await waitFor(() => raw.messages.some((m) => m.type === 'accepted'), 3_000, 'the accepted');
    expect(writes.length).toBe(1);
    // `accepted` is cumulative: the turn's 50 accepts leave as one, at the level reached, after the outputs.
    expect(raw.messages.map((m) => m.type)).toEqual([...Array(50).fill('output'), 'accepted']);
    expect(raw.messages.flatMap((m) => (m.type === 'output' ? [m.seq] : []))).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    expect(raw.messages.at(-1)).toEqual({ type: 'accepted', session: welcome.session, seq: 50 });
  });

  it('the client sends the requests of one turn in one write', async () => {
    const { port } = await server();
    const c = new FtClient({ servers: [`127.0.0.1:${port}`] });
    cleanup.push(() => c.close());
    await c.connect();
    const writes = spyWrites();
    const replies = Promise.all(Array.from({ length: 40 }, (_, i) => c.call(text(`r${i}`))));
    expect(writes.length).toBe(0);
    expect((await replies).map((b) => new TextDecoder().decode(b))).toEqual(Array.from({ length: 40 }, (_, i) => `out ${i + 1}`));
    const fromClient = writes.filter((w) => w.socket.remotePort === port);
    const decoder = new FrameDecoder(1 << 20);
    const requestsPerWrite = fromClient.map((w) => {
      decoder.push(w.bytes);
      let n = 0;
      for (let b = decoder.next(); b; b = decoder.next()) if (decodeClientMessage(b).type === 'request') n++;
      return n;
    });
    expect(requestsPerWrite.filter((n) => n > 0)).toEqual([40]);
  });

  it('an error frame goes after the frames queued before it (an accepted level too), in the same write', async () => {
    const { s, port } = await server();
    const { raw, welcome } = await openSession(port);
    s.setDelivered(welcome.session, 1);
    s.accept(welcome.session, 1);
    s.output(welcome.session, 1, text('last words'), 3);
    s.forget(welcome.session);
    await raw.waitClosed();
    expect(raw.messages.map((m) => m.type)).toEqual(['output', 'accepted', 'error']);
  });

  it('cuts a client that does not read even when a whole burst comes in one turn, without queueing it all', async () => {
    const { s, port, events } = await server({ limits: { write_buffer_bytes_max: 64 << 10 } });
    const { raw, welcome } = await openSession(port);
    cleanup.push(() => raw.destroy());
    raw.socket.pause();
    await sleep(10);
    const payload = new Uint8Array(16 << 10);
    // 64 MiB in one synchronous loop: far more than loopback buffers hold.
    for (let seq = 1; seq <= 4096; seq++) s.output(welcome.session, seq, payload, 3);
    expect(events.some((e) => e.code === 'slow_reader')).toBe(true);
    await waitFor(() => s.stats().connections === 0, 3_000, 'the server to drop the connection');
  });
});
