import { afterEach, describe, expect, it } from 'vitest';
import { FtClient } from '../../host/net/index.ts';
import { FakeCluster, propertySeed, rng, str, text, waitFor } from './support.ts';

const cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

function fastClient(servers: string[]): FtClient {
  const client = new FtClient({
    servers,
    request_timeout_ms: 1_000,
    retries_max: 200,
    backoff_ms_min: 1,
    backoff_ms_max: 20,
    connect_timeout_ms: 1_000,
    requests_inflight_max: 16,
    ack_delay_ms: 1,
  });
  cleanup.push(() => client.close());
  return client;
}

describe('failover', () => {
  it('clients follow the primary through demotions, crashes and restarts: every output once and in order, no request delivered twice', async () => {
    const seed = propertySeed('failover run');
    const random = rng(seed ^ 0x5bd1e995);
    const cluster = new FakeCluster(['a', 'b'], seed, { sweep_interval_ms: 20 }, 3);
    cleanup.push(() => cluster.close());
    await cluster.start();
    const servers = cluster.addresses();

    const CLIENTS = 3;
    const REQUESTS = 120;
    const clients = Array.from({ length: CLIENTS }, () => fastClient(servers));
    const outputs: Array<Array<{ seq: number; payload: string }>> = clients.map(() => []);
    clients.forEach((c, i) => c.on('output', (seq, payload) => outputs[i]!.push({ seq, payload: str(payload) })));
    const connects = clients.map(() => [] as Array<{ resumed: boolean; epoch: number }>);
    clients.forEach((c, i) => c.on('connected', (info) => connects[i]!.push(info)));
    const replies: string[] = [];

    const drive = async (client: FtClient, index: number): Promise<void> => {
      for (let next = 1; next <= REQUESTS; ) {
        const chunk = Math.min(REQUESTS - next + 1, 1 + Math.floor(random() * 12));
        const payloads = Array.from({ length: chunk }, (_, k) => text(`c${index}-${next + k}`));
        // The last client uses call(): each reply must be the echo of its own request.
        if (index === CLIENTS - 1) replies.push(...(await Promise.all(payloads.map((p) => client.call(p)))).map(str));
        else await Promise.all(payloads.map((p) => client.request(p)));
        next += chunk;
      }
    };

    // Disturb by progress, not by the clock, so every run sees each action mid-stream.
    const actions: Array<() => Promise<void>> = [
      async () => cluster.failover(cluster.primary === 'a' ? 'b' : 'a'),
      async () => {
        const victim = cluster.primary;
        await cluster.crash(victim);
        cluster.failover(victim === 'a' ? 'b' : 'a');
        await cluster.restart(victim);
      },
      async () => cluster.failover(cluster.primary === 'a' ? 'b' : 'a'),
      async () => {
        const victim = cluster.primary;
        await cluster.crash(victim);
        cluster.failover(victim === 'a' ? 'b' : 'a');
        await new Promise((resolve) => setTimeout(resolve, 30)); // clients retry against the dead node meanwhile
        await cluster.restart(victim);
      },
      async () => cluster.failover(cluster.primary === 'a' ? 'b' : 'a'),
      async () => cluster.blip(),
      async () => cluster.flipFlop(),
      async () => {
        await cluster.holdPrimary();
        cluster.failover(cluster.primary === 'a' ? 'b' : 'a');
      },
    ];
    const epochs_added = 1 + 1 + 1 + 1 + 1 + 0 + 2 + 1;
    const total = CLIENTS * REQUESTS;
    const disturb = async (): Promise<void> => {
      for (let i = 0; i < actions.length; i++) {
        const threshold = Math.floor(((i + 1) * total) / (actions.length + 1));
        await waitFor(() => cluster.delivered_order.length >= threshold, 20_000, `${threshold} deliveries`);
        await actions[i]!();
      }
    };

    // A stall fails within 30 s with the state of every node and client, rather than at the test timeout.
    const describe_state = (): string =>
      [
        `primary ${cluster.primary}, epoch ${cluster.epoch}, ${cluster.delivered_order.length} deliveries`,
        ...[...cluster.nodes.values()].map((n) => `node ${n.name}: alive ${n.alive}, paused ${n.paused}, queue ${n.queue.length}, ${JSON.stringify(n.server.stats())}`),
        ...clients.map((c, i) => `client ${i}: ${JSON.stringify(c.stats())}, connects ${JSON.stringify(connects[i])}`),
      ].join('\n');
    let deadline: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all([...clients.map((c, i) => drive(c, i)), disturb()]),
      new Promise((_, reject) => (deadline = setTimeout(() => reject(new Error(`no progress within 30 s:\n${describe_state()}`)), 30_000))),
    ]).finally(() => clearTimeout(deadline));
    await waitFor(() => outputs.every((o) => o.length >= REQUESTS), 10_000, 'every output');

    expect(cluster.epoch).toBe(1 + epochs_added);
    expect([...cluster.deliveries.values()].every((n) => n === 1)).toBe(true);
    expect(cluster.deliveries.size).toBe(total);
    clients.forEach((client, i) => {
      expect(outputs[i]!.map((o) => o.seq)).toEqual(Array.from({ length: REQUESTS }, (_, k) => k + 1));
      expect(outputs[i]!.map((o) => o.payload)).toEqual(Array.from({ length: REQUESTS }, (_, k) => `echo:c${i}-${k + 1}`));
      expect(client.stats()).toMatchObject({ pending: 0, accepted_seq: REQUESTS, outputs_delivered: REQUESTS, outputs_held: 0 });
    });
    // Every client reconnected at least once per action, and every reconnect resumed its session.
    for (const c of connects) {
      expect(c.length).toBeGreaterThanOrEqual(1 + actions.length);
      expect(c.slice(1).every((info) => info.resumed)).toBe(true);
    }
    // Requests went up more often than they were delivered: the lost queues were re-sent and taken again.
    expect(cluster.handed_up).toBeGreaterThanOrEqual(total);
    expect(replies).toEqual(Array.from({ length: REQUESTS }, (_, k) => `echo:c${CLIENTS - 1}-${k + 1}`));
  }, 60_000);
});
