import { afterEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Packr } from 'msgpackr';
import { ClientServer, NetError, encodeFrame, type ClientServerOptions, type ServerEvent } from '../../host/net/index.ts';
import { RawConnection, openSession, propertySeed, sleep, text, waitFor } from './support.ts';

const packr = new Packr({ useRecords: false });
const frameOf = (value: unknown): Uint8Array => encodeFrame(packr.pack(value));

interface Harness {
  server: ClientServer;
  port: number;
  requests: Array<{ session: number; seq: number; payload: string }>;
  events: ServerEvent[];
  role: { value: 'primary' | 'backup' };
}

const open: ClientServer[] = [];
afterEach(async () => {
  for (const s of open.splice(0)) await s.close({ abort: true });
});

async function harness(options: Partial<ClientServerOptions> = {}): Promise<Harness> {
  const requests: Harness['requests'] = [];
  const events: ServerEvent[] = [];
  const role = { value: 'primary' as 'primary' | 'backup' };
  const server = new ClientServer({
    role: () => role.value,
    epoch: () => 3,
    primaryHint: () => '127.0.0.1:7002',
    onRequest: (session, seq, payload) => requests.push({ session, seq, payload: new TextDecoder().decode(payload) }),
    onEvent: (e) => events.push(e),
    ...options,
    limits: { sweep_interval_ms: 10, ...options.limits },
  });
  open.push(server);
  const { port } = await server.listen();
  return { server, port, requests, events, role };
}

/** Sends bytes, expects an error frame with `code`, then the close; and the server still serves a new client. */
async function expectRefused(h: Harness, setup: (raw: RawConnection) => Promise<void> | void, bytes: Uint8Array, code: string): Promise<string> {
  const raw = await RawConnection.open(h.port);
  await setup(raw);
  raw.sendRaw(bytes);
  const error = await raw.next('error');
  expect(error.code).toBe(code);
  await raw.waitClosed();
  const { raw: again, welcome } = await openSession(h.port);
  expect(welcome.role).toBe('primary');
  again.destroy();
  return error.message;
}

const hello = (raw: RawConnection) => raw.send({ type: 'hello', version: 1 });
const nothing = () => {};

describe('ClientServer bad input', () => {
  it('refuses an oversized frame by its length prefix, naming the length and the limit', async () => {
    const h = await harness({ limits: { frame_bytes_max: 1000 } });
    const message = await expectRefused(h, nothing, new Uint8Array([0, 0, 0x03, 0xe9]), 'frame_too_large');
    expect(message).toContain('1001');
    expect(message).toContain('1000');
  });

  it('refuses an empty frame, malformed msgpack, a non-map body and a missing type', async () => {
    const h = await harness();
    await expectRefused(h, nothing, new Uint8Array([0, 0, 0, 0]), 'frame_empty');
    await expectRefused(h, nothing, encodeFrame(new Uint8Array([0x82, 0xa1, 0x61])), 'malformed');
    await expectRefused(h, nothing, encodeFrame(new Uint8Array([...packr.pack({ type: 'ping' }), 0x00])), 'malformed');
    await expectRefused(h, nothing, frameOf([1, 2]), 'bad_message');
    await expectRefused(h, nothing, frameOf({ t: 'hello' }), 'bad_message');
  });

  it('refuses unknown message types, a first message other than hello, a second hello and a wrong version', async () => {
    const h = await harness();
    await expectRefused(h, nothing, frameOf({ type: 'launch_missiles' }), 'unknown_type');
    await expectRefused(h, nothing, frameOf({ type: 'ping' }), 'not_hello');
    await expectRefused(h, hello, frameOf({ type: 'hello', version: 1 }), 'not_hello');
    await expectRefused(h, nothing, frameOf({ type: 'hello', version: 2 }), 'unsupported_version');
  });

  it('refuses a wrong session, a seq gap, a seq out of range, a bad payload type and a too large payload', async () => {
    const h = await harness({ limits: { payload_bytes_max: 100 } });
    let session = 0;
    const helloed = async (raw: RawConnection) => {
      hello(raw);
      session = (await raw.next('welcome')).session;
    };
    const cases: Array<[(s: number) => unknown, string]> = [
      [(s) => ({ type: 'request', session: s + 1000, seq: 1, payload: new Uint8Array(1) }), 'wrong_session'],
      [(s) => ({ type: 'request', session: s, seq: 2, payload: new Uint8Array(1) }), 'seq_gap'],
      [(s) => ({ type: 'request', session: s, seq: 0, payload: new Uint8Array(1) }), 'seq_out_of_range'],
      [(s) => ({ type: 'request', session: s, seq: 2 ** 53, payload: new Uint8Array(1) }), 'seq_out_of_range'],
      [(s) => ({ type: 'request', session: s, seq: 1, payload: 'SET a 1' }), 'bad_message'],
      [(s) => ({ type: 'request', session: s, seq: 1, payload: new Uint8Array(101) }), 'payload_too_large'],
      [(s) => ({ type: 'ack', session: s, output_seq: 1 }), 'ack_out_of_range'],
    ];
    for (const [make, code] of cases) {
      const raw = await RawConnection.open(h.port);
      await helloed(raw);
      raw.sendRaw(frameOf(make(session)));
      expect((await raw.next('error')).code).toBe(code);
      await raw.waitClosed();
    }
    expect(h.requests).toEqual([]);
  }, 30_000);

  it('refuses a request beyond the in-flight window', async () => {
    const h = await harness({ limits: { requests_inflight_max: 3 } });
    const { raw, welcome } = await openSession(h.port);
    for (let seq = 1; seq <= 4; seq++) raw.send({ type: 'request', session: welcome.session, seq, payload: text(`r${seq}`) });
    expect((await raw.next('error')).code).toBe('too_many_inflight');
    await raw.waitClosed();
    expect(h.requests.map((r) => r.seq)).toEqual([1, 2, 3]);
  });

  it('closes a connection that says no hello in time, and one that goes idle', async () => {
    const h = await harness({ limits: { hello_timeout_ms: 30, idle_timeout_ms: 60 } });
    const silent = await RawConnection.open(h.port);
    expect((await silent.next('error')).code).toBe('hello_timeout');
    await silent.waitClosed();
    const { raw } = await openSession(h.port);
    expect((await raw.next('error')).code).toBe('idle_timeout');
    await raw.waitClosed();
  });

  it('refuses connections beyond connections_max and sessions beyond sessions_max', async () => {
    const h = await harness({ limits: { connections_max: 2, sessions_max: 2, session_table_max: 2 } });
    const a = await openSession(h.port);
    const b = await openSession(h.port);
    const c = await RawConnection.open(h.port);
    expect((await c.next('error')).code).toBe('too_many_connections');
    await c.waitClosed();
    a.raw.destroy();
    await waitFor(() => h.server.stats().connections === 1, 2_000, 'the server to notice the close');
    const d = await RawConnection.open(h.port);
    hello(d);
    expect((await d.next('error')).code).toBe('too_many_sessions');
    b.raw.destroy();
  });

  it('survives random bytes: every connection gets an error frame and a close, and the server serves on', async () => {
    const h = await harness({ limits: { frame_bytes_max: 256 } });
    const seed = propertySeed('server random frames');
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 300 }), fc.boolean(), async (bytes, framed) => {
        const raw = await RawConnection.open(h.port);
        raw.sendRaw(framed ? encodeFrame(bytes.subarray(0, 200)) : bytes);
        raw.socket.end();
        await raw.waitClosed();
        for (const m of raw.messages) expect(['error', 'welcome', 'pong', 'accepted']).toContain(m.type);
      }),
      { seed, numRuns: 60 },
    );
    const { welcome } = await openSession(h.port);
    expect(welcome.role).toBe('primary');
  }, 30_000);

  it('cuts a client that stops reading once write_buffer_bytes_max is queued for it', async () => {
    const h = await harness({ limits: { write_buffer_bytes_max: 64 << 10 } });
    const { raw, welcome } = await openSession(h.port);
    raw.socket.pause();
    const payload = new Uint8Array(64 << 10);
    for (let seq = 1; seq <= 400 && h.server.stats().connections > 0; seq++) {
      h.server.output(welcome.session, seq, payload, 3);
      await sleep(0);
    }
    await waitFor(() => h.events.some((e) => e.code === 'slow_reader'), 3_000, 'the slow_reader cut');
    await waitFor(() => h.server.stats().connections === 0, 3_000, 'the server to drop the connection');
    raw.destroy();
  });

  it('answers internal when the host refuses a request, and takes the same seq again afterwards', async () => {
    let refuse = true;
    const h = await harness();
    const taken = h.server.onRequest!;
    h.server.onRequest = (session, seq, payload) => {
      if (refuse) throw new Error('input queue full');
      taken(session, seq, payload);
    };
    const first = await openSession(h.port);
    first.raw.send({ type: 'request', session: first.welcome.session, seq: 1, payload: text('r1') });
    expect((await first.raw.next('error')).code).toBe('internal');
    refuse = false;
    const again = await openSession(h.port, { session: first.welcome.session, session_epoch: first.welcome.session_epoch });
    expect(again.welcome).toMatchObject({ resumed: true, received: 0 });
    again.raw.send({ type: 'request', session: first.welcome.session, seq: 1, payload: text('r1') });
    await waitFor(() => h.requests.length === 1, 2_000, 'the request');
    expect(h.events.some((e) => e.kind === 'host_error' && e.message.includes('input queue full'))).toBe(true);
  });

  it('refuses to bind a non-loopback address without allowNonLoopback', () => {
    const base = { role: () => 'primary' as const, epoch: () => 1 };
    expect(() => new ClientServer({ ...base, host: '0.0.0.0' })).toThrow(NetError);
    expect(() => new ClientServer({ ...base, host: '10.1.2.3' })).toThrow(/loopback/);
    expect(() => new ClientServer({ ...base, host: '0.0.0.0', allowNonLoopback: true })).not.toThrow();
    expect(() => new ClientServer({ ...base, host: '::1' })).not.toThrow();
    expect(() => new ClientServer({ ...base, limits: { requests_inflight_max: 0 } })).toThrow(/requests_inflight_max/);
  });
});

describe('ClientServer sessions', () => {
  it('a backup answers hello with not_primary, its epoch and the primary hint, then closes', async () => {
    const h = await harness();
    h.role.value = 'backup';
    const raw = await RawConnection.open(h.port);
    hello(raw);
    expect(await raw.next('not_primary')).toEqual({ type: 'not_primary', epoch: 3, primary_hint: '127.0.0.1:7002' });
    await raw.waitClosed();
  });

  it('names the replication group (nodes) to clients whose hello asked, at welcome and on every change; not to others', async () => {
    const h = await harness();
    const asked = await openSession(h.port, { nodes: true });
    const plain = await openSession(h.port);
    await sleep(20);
    expect(asked.raw.messages).toEqual([]); // nothing to name yet
    h.server.setNodes(['127.0.0.1:7001', '127.0.0.1:7002']);
    expect(await asked.raw.next('nodes')).toEqual({ type: 'nodes', epoch: 3, addresses: ['127.0.0.1:7001', '127.0.0.1:7002'] });
    h.server.setNodes(['127.0.0.1:7001', '127.0.0.1:7002']); // the same list again: not sent again
    const late = await openSession(h.port, { nodes: true });
    expect(await late.raw.next('nodes')).toEqual({ type: 'nodes', epoch: 3, addresses: ['127.0.0.1:7001', '127.0.0.1:7002'] });
    h.server.setNodes(['127.0.0.1:7001']);
    expect((await asked.raw.next('nodes')).addresses).toEqual(['127.0.0.1:7001']);
    await sleep(20);
    expect(asked.raw.messages).toEqual([]);
    expect(plain.raw.messages).toEqual([]);
    // A bad list is the host's bug: refused by name, the old list kept.
    expect(() => h.server.setNodes(['127.0.0.1'])).toThrow(/host:port/);
    expect(() => h.server.setNodes(Array.from({ length: 9 }, (_, i) => `127.0.0.1:${7000 + i}`))).toThrow(NetError);
    const again = await openSession(h.port, { nodes: true });
    expect((await again.raw.next('nodes')).addresses).toEqual(['127.0.0.1:7001']);
  });

  it('checkRole() sends not_primary to connected clients once this node is demoted', async () => {
    const h = await harness();
    const { raw } = await openSession(h.port);
    h.server.checkRole();
    await sleep(20);
    expect(raw.messages).toEqual([]);
    h.role.value = 'backup';
    h.server.checkRole();
    expect((await raw.next('not_primary')).primary_hint).toBe('127.0.0.1:7002');
    await raw.waitClosed();
  });

  it('hands each request up once: a resend of a taken seq is dropped, and answered with accepted once durable', async () => {
    const h = await harness();
    const { raw, welcome } = await openSession(h.port);
    const s = welcome.session;
    for (const seq of [1, 2, 1, 2, 3]) raw.send({ type: 'request', session: s, seq, payload: text(`r${seq}`) });
    await waitFor(() => h.requests.length === 3, 2_000, 'three requests');
    h.server.setDelivered(s, 1);
    h.server.setDelivered(s, 2);
    h.server.accept(s, 2);
    expect(await raw.next('accepted')).toEqual({ type: 'accepted', session: s, seq: 2 });
    raw.send({ type: 'request', session: s, seq: 1, payload: text('r1') });
    expect(await raw.next('accepted')).toEqual({ type: 'accepted', session: s, seq: 2 });
    raw.send({ type: 'request', session: s, seq: 3, payload: text('r3') }); // taken, not yet durable: silent
    await sleep(20);
    expect(raw.messages).toEqual([]);
    expect(h.requests.map((r) => r.seq)).toEqual([1, 2, 3]);
    expect(() => h.server.setDelivered(s, 5)).toThrow(/next seq to deliver is 3/);
    expect(() => h.server.accept(s, 4)).toThrow(/only 3 requests were taken/);
  });

  it('buffers outputs while the client is away and resends those after last_output_seq on resume', async () => {
    const h = await harness();
    const { raw, welcome } = await openSession(h.port);
    const s = welcome.session;
    h.server.output(s, 1, text('o1'), 3);
    expect((await raw.next('output')).seq).toBe(1);
    raw.destroy();
    await waitFor(() => h.server.stats().connections === 0, 2_000, 'the close');
    h.server.output(s, 2, text('o2'), 3);
    h.server.output(s, 3, text('o3'), 4);
    h.server.output(999, 1, text('nobody'), 3); // an unknown session: dropped, as the ABI says
    const again = await openSession(h.port, { session: s, session_epoch: welcome.session_epoch, last_output_seq: 1 });
    expect(again.welcome).toMatchObject({ resumed: true, session: s, outputs: 3 });
    await waitFor(() => again.raw.messages.length === 2, 2_000, 'two outputs');
    expect(again.raw.messages).toEqual([
      { type: 'output', epoch: 3, session: s, seq: 2, payload: text('o2') },
      { type: 'output', epoch: 4, session: s, seq: 3, payload: text('o3') },
    ]);
    again.raw.send({ type: 'ack', session: s, output_seq: 3 });
    await waitFor(() => h.server.stats().buffered_outputs === 0, 2_000, 'the ack to free the buffer');
  });

  it('says outputs_lost when a resuming client needs outputs the bounded buffer dropped', async () => {
    const h = await harness({ limits: { outputs_buffered_max: 2 } });
    const { raw, welcome } = await openSession(h.port);
    raw.destroy();
    await waitFor(() => h.server.stats().connections === 0, 2_000, 'the close');
    for (let seq = 1; seq <= 4; seq++) h.server.output(welcome.session, seq, text(`o${seq}`), 3);
    const resume = { type: 'hello', version: 1, session: welcome.session, session_epoch: welcome.session_epoch };
    await expectRefused(h, nothing, frameOf({ ...resume, last_output_seq: 1 }), 'outputs_lost');
    await expectRefused(h, nothing, frameOf({ ...resume, last_output_seq: 5 }), 'ack_out_of_range');
    const ok = await openSession(h.port, { ...resume, last_output_seq: 2 });
    await waitFor(() => ok.raw.messages.length === 2, 2_000, 'outputs 3 and 4');
    expect(ok.raw.messages.map((m) => m.type === 'output' && m.seq)).toEqual([3, 4]);
  });

  it('dropping unacked outputs from the bounded buffer is announced on a primary, only counted on a backup', async () => {
    const h = await harness({ limits: { outputs_buffered_max: 2 } });
    const { raw, welcome } = await openSession(h.port);
    raw.destroy();
    await waitFor(() => h.server.stats().connections === 0, 2_000, 'the close');
    for (let seq = 1; seq <= 4; seq++) h.server.output(welcome.session, seq, text(`o${seq}`), 3);
    const announced = () => h.events.filter((e) => e.kind === 'outputs_evicted').length;
    expect(announced()).toBe(2);
    expect(h.server.stats().outputs_evicted_unacked).toBe(2);
    // A backup's clients ack the primary, never it: its buffer turns over on every output past the bound.
    h.role.value = 'backup';
    h.server.setDelivered(77, 5, 3);
    for (let seq = 1; seq <= 5; seq++) h.server.output(77, seq, text(`b${seq}`), 3);
    expect(announced()).toBe(2);
    expect(h.server.stats().outputs_evicted_unacked).toBe(5);
    expect(h.server.stats().buffered_outputs).toBe(4);
  });

  it('a hello for an unknown session, or one from another epoch, gets a new session', async () => {
    const h = await harness();
    const first = await openSession(h.port);
    const other = await openSession(h.port, { session: first.welcome.session, session_epoch: 1 });
    expect(other.welcome.resumed).toBe(false);
    expect(other.welcome.session).not.toBe(first.welcome.session);
    const unknown = await openSession(h.port, { session: 4242, session_epoch: 3, last_output_seq: 7 });
    expect(unknown.welcome).toMatchObject({ resumed: false, outputs: 0 });
  });

  it('a second connection resuming a session takes it over; the first gets session_taken_over', async () => {
    const h = await harness();
    const a = await openSession(h.port);
    const b = await openSession(h.port, { session: a.welcome.session, session_epoch: a.welcome.session_epoch });
    expect(b.welcome.resumed).toBe(true);
    expect((await a.raw.next('error')).code).toBe('session_taken_over');
    h.server.output(a.welcome.session, 1, text('x'), 3);
    expect((await b.raw.next('output')).seq).toBe(1);
  });

  it('snapshot and restore carry the table; goLive accepts what was delivered and forgets what was only taken', async () => {
    const h = await harness();
    const { raw, welcome } = await openSession(h.port);
    const s = welcome.session;
    for (const seq of [1, 2, 3]) raw.send({ type: 'request', session: s, seq, payload: text(`r${seq}`) });
    await waitFor(() => h.requests.length === 3, 2_000, 'requests');
    h.server.setDelivered(s, 1);
    h.server.setDelivered(s, 2);
    h.server.output(s, 1, text('o1'), 3);
    const snap = h.server.snapshot();
    expect(snap).toMatchObject({ version: 1, sessions: [{ session: s, session_epoch: 3, delivered: 2, outputs: 1, output_acked: 0 }] });

    const other = await harness();
    other.server.restore(structuredClone(snap));
    other.server.goLive();
    const resumed = await openSession(other.port, { session: s, session_epoch: 3 });
    expect(resumed.welcome).toMatchObject({ resumed: true, accepted: 2, received: 2, outputs: 1 });
    expect((await resumed.raw.next('output')).payload).toEqual(text('o1'));
    resumed.raw.send({ type: 'request', session: s, seq: 3, payload: text('r3') });
    await waitFor(() => other.requests.length === 1, 2_000, 'request 3 on the new node');
    expect(other.requests[0]).toMatchObject({ session: s, seq: 3 });
    // A new session opened there gets an id the old table never used.
    const fresh = await openSession(other.port);
    expect(fresh.welcome.session).toBeGreaterThan(s);
    expect(() => other.server.restore({ ...snap, sessions: [{ ...snap.sessions[0]!, output_acked: 9 }] })).toThrow(/output_acked/);
  });

  it('expires idle sessions on the primary only, and tells the host', async () => {
    const expired: number[] = [];
    const h = await harness({ limits: { session_idle_timeout_ms: 30 }, onSessionExpired: (s) => expired.push(s) });
    h.role.value = 'primary';
    const { raw, welcome } = await openSession(h.port);
    raw.destroy();
    await waitFor(() => expired.length === 1, 2_000, 'expiry');
    expect(expired).toEqual([welcome.session]);
    h.role.value = 'backup';
    h.server.setDelivered(77, 1);
    await sleep(80);
    expect(h.server.delivered(77)).toBe(1);
  });
});
