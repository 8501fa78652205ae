import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { DISCOVERED_MAX, encodeMessage, FtClient, NetError, NODES_MAX, type FtClientOptions } from '../../host/net/index.ts';
import { FakeCluster, propertySeed, str, text, waitFor } from './support.ts';

const cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

function client(options: FtClientOptions): FtClient {
  const c = new FtClient({ backoff_ms_min: 1, backoff_ms_max: 10, request_timeout_ms: 1_000, connect_timeout_ms: 1_000, ...options });
  cleanup.push(() => c.close());
  return c;
}

async function cluster(names = ['a'], limits = {}): Promise<FakeCluster> {
  const c = new FakeCluster(names, propertySeed('fake host delays'), limits, 2);
  cleanup.push(() => c.close());
  await c.start();
  return c;
}

/** A port nothing listens on (bound, then released). */
async function deadPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function rejection(promise: Promise<unknown>): Promise<NetError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(NetError);
    return error as NetError;
  }
  throw new Error('expected a rejection');
}

describe('FtClient', () => {
  it('call() resolves with each request\'s own reply, in order, and every output is emitted once', async () => {
    const fake = await cluster();
    const c = client({ servers: fake.addresses() });
    const seen: number[] = [];
    c.on('output', (seq) => seen.push(seq));
    const replies = await Promise.all(Array.from({ length: 50 }, (_, i) => c.call(text(`GET k${i}`))));
    expect(replies.map(str)).toEqual(Array.from({ length: 50 }, (_, i) => `echo:GET k${i}`));
    expect(seen).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    await waitFor(() => fake.node('a').server.stats().buffered_outputs === 0, 2_000, 'acks to free the server buffer');
  });

  it('a server whose welcome claims requests it was never sent is dropped as broken, without taking the process down', async () => {
    // A raw server that answers every hello with a welcome saying 5 requests were already accepted.
    const server = net.createServer((socket) => {
      socket.once('data', () => {
        socket.write(
          encodeMessage({
            type: 'welcome', version: 1, epoch: 1, session: 7, session_epoch: 1, role: 'primary', resumed: false, accepted: 5, received: 5, outputs: 0,
            limits: { frame_bytes_max: 1 << 20, payload_bytes_max: 1000, requests_inflight_max: 64, outputs_buffered_max: 256, idle_timeout_ms: 60_000 },
          }),
        );
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanup.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const c = client({ servers: [`127.0.0.1:${(server.address() as net.AddressInfo).port}`], retries_max: 2 });
    const error = await rejection(c.request(text('x')));
    expect(error.code).toBe('FTW_NET_UNAVAILABLE');
    expect(error.message).toMatch(/broke the protocol: bad_message: welcome says request 5 was accepted, but only 0 were numbered/);
  });

  it('tries each address and follows not_primary to the hinted primary', async () => {
    const fake = await cluster(['a', 'b']);
    fake.failover('b');
    const dead = await deadPort();
    const c = client({ servers: [`127.0.0.1:${dead}`, ...fake.addresses()] });
    const connected: string[] = [];
    c.on('connected', (info) => connected.push(info.address));
    expect(str(await c.call(text('x')))).toBe('echo:x');
    expect(connected).toEqual([fake.addresses()[1]]);
    expect(c.stats().epoch).toBe(2);
  });

  it('fails with FTW_NET_UNAVAILABLE after retries_max attempts when no primary answers, rejecting what is pending', async () => {
    const dead = await deadPort();
    const c = client({ servers: [`127.0.0.1:${dead}`], retries_max: 3 });
    const errors: NetError[] = [];
    c.on('error', (e) => errors.push(e));
    const error = await rejection(c.request(text('x')));
    expect(error.code).toBe('FTW_NET_UNAVAILABLE');
    expect(error.message).toContain('4 attempts');
    expect(errors).toHaveLength(1);
    expect((await rejection(c.request(text('y')))).code).toBe('FTW_NET_UNAVAILABLE');
  });

  it('bounds queued requests and payload size, and close() rejects what is pending', async () => {
    const dead = await deadPort();
    const c = client({ servers: [`127.0.0.1:${dead}`], requests_queued_max: 2, payload_bytes_max: 8, retries_max: 1_000, backoff_ms_min: 50, backoff_ms_max: 50 });
    const a = rejection(c.request(text('a')));
    const b = rejection(c.request(text('b')));
    expect((await rejection(c.request(text('c')))).code).toBe('FTW_NET_QUEUE_FULL');
    expect((await rejection(c.request(new Uint8Array(9)))).code).toBe('FTW_NET_PAYLOAD');
    await c.close();
    expect((await a).code).toBe('FTW_NET_CLOSED');
    expect((await b).code).toBe('FTW_NET_CLOSED');
  });

  it('a new client with a ticket takes the session over: numbering continues and only unseen outputs arrive', async () => {
    const fake = await cluster();
    const first = client({ servers: fake.addresses(), ack_delay_ms: 60_000 }); // holds its acks back
    await first.call(text('r1'));
    await first.call(text('r2'));
    const ticket = first.ticket()!; // what the application saved after handling output 2
    await first.call(text('r3'));
    const second = client({ servers: fake.addresses(), ticket });
    const seen: Array<[number, string]> = [];
    second.on('output', (seq, payload) => seen.push([seq, str(payload)]));
    await second.request(text('r4'));
    await waitFor(() => seen.length === 2, 2_000, 'outputs 3 and 4');
    expect(seen).toEqual([
      [3, 'echo:r3'],
      [4, 'echo:r4'],
    ]);
    expect(fake.delivered_order).toEqual([1, 2, 3, 4].map((seq) => `${ticket.session}:${seq}`));
    // The first client lost its session to the second one.
    expect((await rejection(first.request(text('r5')))).code).toBe('FTW_NET_SESSION_LOST');
  });

  it('a ticket client waits until the previous client\'s in-flight request is durable before numbering its own', async () => {
    const fake = await cluster();
    const first = client({ servers: fake.addresses() });
    await first.call(text('r1'));
    fake.node('a').paused = true;
    void first.request(text('r2')).catch(() => {}); // taken, not delivered
    await waitFor(() => fake.handed_up === 2, 2_000, 'r2 to be taken');
    const second = client({ servers: fake.addresses(), ticket: first.ticket()! });
    const reply = second.call(text('r3')); // resolves with the next output in order: r2's echo
    await second.connect();
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(fake.handed_up).toBe(2); // r3 not sent while r2 is unsettled
    fake.node('a').unpause();
    expect(str(await reply)).toBe('echo:r2');
    await waitFor(() => fake.delivered_order.length === 3, 2_000, 'r3');
    const session = first.ticket()!.session;
    expect(fake.delivered_order).toEqual([1, 2, 3].map((seq) => `${session}:${seq}`));
  });

  it('a ticket client whose predecessor\'s in-flight request is lost in a failover numbers right after what survived', async () => {
    const fake = await cluster(['a', 'b']);
    const first = client({ servers: fake.addresses() });
    await first.call(text('r1'));
    fake.node('a').paused = true;
    void first.request(text('r2')).catch(() => {});
    await waitFor(() => fake.handed_up === 2, 2_000, 'r2 to be taken');
    const second = client({ servers: fake.addresses(), ticket: first.ticket()!, request_timeout_ms: 100 });
    const outputs: string[] = [];
    second.on('output', (_seq, payload) => outputs.push(str(payload)));
    const done = second.request(text('r3'));
    await second.connect();
    fake.failover('b'); // r2 never reached the log
    await done;
    await waitFor(() => outputs.length === 1, 2_000, 'the echo of r3');
    const session = first.ticket()!.session;
    expect(fake.delivered_order).toEqual([`${session}:1`, `${session}:2`]);
    expect(outputs).toEqual(['echo:r3']);
  });

  it('fails with FTW_NET_SESSION_LOST when the servers no longer hold a session that had accepted requests', async () => {
    const fake = await cluster();
    const c = client({ servers: fake.addresses() });
    await c.call(text('r1'));
    const { session } = c.ticket()!;
    fake.node('a').server.forget(session);
    const error = await rejection(c.request(text('r2')).then(() => c.call(text('r3'))));
    expect(error.code).toBe('FTW_NET_SESSION_LOST');
  });

  it('starts over in a new session when the servers do not know its session and nothing of it was accepted', async () => {
    const fake = await cluster(['a', 'b']);
    const c = client({ servers: fake.addresses() });
    await c.connect();
    const before = c.ticket()!;
    expect(before.session_epoch).toBe(1);
    // The session was opened on a but never reached the log: b, going live, has never heard of it.
    fake.node('b').server.restore({ version: 1, next_session: 1, sessions: [] });
    await fake.crash('a');
    fake.failover('b');
    expect(str(await c.call(text('r1')))).toBe('echo:r1');
    expect(c.ticket()).toMatchObject({ session_epoch: 2, last_output_seq: 1 });
  });

  it('never settles on a primary of an older epoch than one it has seen (a stale primary)', async () => {
    const fake = await cluster(['a', 'b']);
    fake.failover('b'); // epoch 2
    const c = client({ servers: fake.addresses(), retries_max: 6 });
    const connected: number[] = [];
    c.on('connected', (info) => connected.push(info.epoch));
    await c.call(text('r1'));
    // b dies; a, which holds the same session table, claims to be primary in epoch 1.
    fake.primary = 'a';
    fake.epoch = 1;
    await fake.crash('b');
    const error = await rejection(c.call(text('r2')));
    expect(error.code).toBe('FTW_NET_UNAVAILABLE');
    expect(connected).toEqual([2]);
    expect(fake.deliveries.size).toBe(1);
  });

  it('learns the nodes the primary names and finds one it was not told about when the primary dies; discover: false keeps to its servers', async () => {
    for (const discover of [true, false]) {
      const fake = await cluster(['a', 'b']);
      const [a, b] = fake.addresses() as [string, string];
      fake.node('a').server.setNodes([a, b]);
      const c = client({ servers: [a], retries_max: 6, discover });
      const learned: string[] = [];
      c.on('discovered', (addresses) => learned.push(...addresses));
      expect(str(await c.call(text('r1')))).toBe('echo:r1');
      if (discover) await waitFor(() => learned.length > 0, 3_000, 'the client to learn b');
      expect(learned).toEqual(discover ? [b] : []);
      expect(c.servers()).toEqual(discover ? [a, b] : [a]);
      fake.failover('b');
      await fake.crash('a');
      if (discover) {
        expect(str(await c.call(text('r2')))).toBe('echo:r2');
        expect(c.stats().epoch).toBe(2);
      } else {
        expect((await rejection(c.call(text('r2')))).code).toBe('FTW_NET_UNAVAILABLE');
      }
    }
  });

  it('keeps at most DISCOVERED_MAX learned addresses beside its servers, the oldest learned going first', async () => {
    const fake = await cluster(['a']);
    const [a] = fake.addresses() as [string];
    const c = client({ servers: [a] });
    expect(str(await c.call(text('r1')))).toBe('echo:r1');
    const named = (from: number) => Array.from({ length: NODES_MAX - 1 }, (_, i) => `127.0.0.1:${40_000 + from + i}`);
    // Two lists of seven new addresses: 14 learned in all, the first six of them dropped again.
    fake.node('a').server.setNodes([a, ...named(0)]);
    await waitFor(() => c.servers().length === 1 + NODES_MAX - 1, 3_000, 'the first list');
    fake.node('a').server.setNodes([a, ...named(100)]);
    await waitFor(() => c.servers().includes(named(100).at(-1)!), 3_000, 'the second list');
    expect(c.servers()).toEqual([a, ...[...named(0), ...named(100)].slice(-DISCOVERED_MAX)]);
    expect(str(await c.call(text('r2')))).toBe('echo:r2'); // still on a
  });
});
