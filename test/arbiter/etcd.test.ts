// The etcd arbiter against a real etcd: the shared contract, the keys and transaction, retries and the primary lease.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type Server, type Socket } from 'node:net';
import { GRPCUnavailableError, type Etcd3 } from 'etcd3';
import { epochKey, openEtcdArbiter, openArbiter, primaryKey, type EtcdArbiter } from '../../host/arbiter/index.ts';
import { leaseHolderProcess, removeArbiterBundle } from './child.ts';
import { ETCD_PRESENT, etcdForTests, ETCD_START_TIMEOUT_MS, freePort, type EtcdForTests } from './etcd-server.ts';
import { ARBITER_TEST_TIMEOUT_MS, arbiterSuite, expectCode, expectLost, expectWon } from './suite.ts';

// A fresh developer machine may have no etcd-server: `npm install && npm test` must still pass there, so
// this file then reports its suite as not run, loudly. CI (CI=true) installs etcd and always runs it.
if (!ETCD_PRESENT) console.warn('etcd arbiter tests NOT RUN: no etcd-server here (apt-get install -y etcd-server); CI always runs them');

let etcd: EtcdForTests | undefined;
/** Opened once for writing raw values into keys. */
let raw: EtcdArbiter | undefined;
const run = `t${Date.now().toString(36)}${process.pid}`;
let deployments = 0;

beforeAll(async () => {
  if (!ETCD_PRESENT) return;
  etcd = await etcdForTests();
  raw = await openEtcdArbiter(etcd.url.split(','), { deployment: `${run}-raw` });
}, ETCD_START_TIMEOUT_MS * 3 + 10_000);

afterAll(async () => {
  removeArbiterBundle();
  await raw?.close();
  await etcd?.stop();
}, 15_000);

function url(): string {
  if (etcd === undefined) throw new Error('etcd did not start (see beforeAll)');
  return etcd.url;
}

describe.runIf(ETCD_PRESENT)('etcd', () => {
  arbiterSuite({
    kind: 'etcd',
    fresh: async () => {
      const deployment = `${run}-${++deployments}`;
      return {
        spec: `etcd:${url()}`,
        options: { deployment },
        overwrite: async (_epoch, text) => {
          await raw!.client.put(epochKey(deployment)).value(text);
          return epochKey(deployment);
        },
      };
    },
  });

  describe('etcd arbiter on its own', { timeout: ARBITER_TEST_TIMEOUT_MS }, () => {
    const opened: EtcdArbiter[] = [];
    const servers: Server[] = [];
    afterEach(async () => {
      await Promise.all(opened.splice(0).map((arbiter) => arbiter.close()));
      for (const server of servers.splice(0)) server.close();
    });
    async function open(options: { deployment?: string; request_timeout_ms?: number; retries_max?: number } = {}): Promise<EtcdArbiter> {
      const arbiter = await openEtcdArbiter(url().split(','), { deployment: `${run}-${++deployments}`, ...options });
      opened.push(arbiter);
      return arbiter;
    }

    it('the claim lives at ftwasm/<deployment>/epoch as one JSON record, replaced by each won epoch', async () => {
      const deployment = `${run}-keys`;
      const arbiter = await open({ deployment });
      expect(arbiter.epochKey).toBe(`ftwasm/${deployment}/epoch`);
      expect(arbiter.where).toContain(`key ftwasm/${deployment}/epoch`);
      const first = expectWon(await arbiter.claim(1, 'a'), 1, 'a');
      expect(JSON.parse((await raw!.client.get(epochKey(deployment)).string())!)).toMatchObject(first);
      const second = expectWon(await arbiter.claim(2, 'b'), 2, 'b');
      const stored = JSON.parse((await raw!.client.get(epochKey(deployment)).string())!) as Record<string, unknown>;
      expect(stored).toMatchObject(second);
      expect(stored['claimId']).toMatch(/^[0-9a-f]{32}$/);
      expect(await raw!.client.getAll().prefix(`ftwasm/${deployment}/`).keys()).toEqual([`ftwasm/${deployment}/epoch`]);
    });

    it('a claim whose transaction committed but whose answer was lost is recognised as won on the retry', async () => {
      const arbiter = await open();
      const call = arbiter.call.bind(arbiter);
      let injected = 0;
      arbiter.call = <T>(what: string, epoch: number | undefined, request: (client: Etcd3) => Promise<T>): Promise<T> =>
        call(what, epoch, what !== 'claim transaction' ? request : async (client) => {
          const answer = await request(client);
          if (injected++ === 0) throw new GRPCUnavailableError('injected: the answer was lost on the way back');
          return answer;
        });
      const claim = expectWon(await arbiter.claim(1, 'unlucky'), 1, 'unlucky');
      expect(injected).toBe(2);
      expect(await arbiter.current()).toEqual(claim);
      expectLost(await arbiter.claim(1, 'other'), claim);
    });

    it('an etcd that refuses connections fails open() with FTW_ARBITER_UNREACHABLE naming the URL, after retries_max retries', async () => {
      const dead = `http://127.0.0.1:${await freePort()}`;
      const error = await expectCode(openArbiter(`etcd:${dead}`, { request_timeout_ms: 500, retries_max: 2 }), 'FTW_ARBITER_UNREACHABLE', dead, 'after 3 attempts');
      expect(error.where).toContain(dead);
    });

    it('an etcd that accepts but never answers hits request_timeout_ms on every attempt, then FTW_ARBITER_UNREACHABLE', async () => {
      const sockets: Socket[] = [];
      const server = createServer((socket) => sockets.push(socket));
      servers.push(server);
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const address = server.address();
      const silent = `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`;
      const started = Date.now();
      await expectCode(openArbiter(`etcd:${silent}`, { request_timeout_ms: 300, retries_max: 1 }), 'FTW_ARBITER_UNREACHABLE', silent, 'after 2 attempts');
      expect(Date.now() - started).toBeLessThan(20_000); // bounded, not a timing claim: 2 x 300 ms + backoff in practice
      for (const socket of sockets) socket.destroy();
    });

    it('retries go round the URLs: after two dead ones the working third serves, with retries_max = 2', async () => {
      const dead = [`http://127.0.0.1:${await freePort()}`, `http://127.0.0.1:${await freePort()}`];
      for (let round = 0; round < 3; round++) {
        const arbiter = await openEtcdArbiter([...dead, url()], { deployment: `${run}-${++deployments}`, request_timeout_ms: 1_000, retries_max: 2 });
        opened.push(arbiter);
        expectWon(await arbiter.claim(1, 'n'), 1, 'n');
        expect((await arbiter.current())!.nodeId).toBe('n');
      }
    });

    it('the holder of the current epoch can hold the primary lease, leaseHolder() shows it, release() ends it', async () => {
      const arbiter = await open();
      const claim = expectWon(await arbiter.claim(1, 'primary'), 1, 'primary');
      expect(await arbiter.leaseHolder()).toBeUndefined();
      const lease = await arbiter.holdLease(claim, 5);
      expect(lease.key).toBe(arbiter.primaryKey);
      expect(lease.key).toMatch(/^ftwasm\/.+\/primary$/);
      expect(await arbiter.leaseHolder()).toEqual(claim);
      await lease.release();
      await lease.release();
      expect((await lease.lost).code).toBe('FTW_ARBITER_LEASE');
      expect(await arbiter.leaseHolder()).toBeUndefined();
    });

    it('a node that does not hold the current epoch may not take the primary lease', async () => {
      const arbiter = await open();
      const old = expectWon(await arbiter.claim(1, 'old'), 1, 'old');
      expectWon(await arbiter.claim(2, 'new'), 2, 'new');
      await expectCode(arbiter.holdLease(old, 5), 'FTW_ARBITER_LEASE', 'old');
      await expectCode(arbiter.holdLease({ epoch: 2, nodeId: 'impostor', claimedAtMs: 0 }, 5), 'FTW_ARBITER_LEASE');
      await expectCode(arbiter.holdLease(old, 0), 'FTW_ARBITER_ARGUMENT', 'ttl');
      expect(await arbiter.leaseHolder()).toBeUndefined();
    });

    it('close() releases the primary lease', async () => {
      const deployment = `${run}-close-lease`;
      const arbiter = await openEtcdArbiter(url().split(','), { deployment });
      const claim = expectWon(await arbiter.claim(1, 'primary'), 1, 'primary');
      await arbiter.holdLease(claim, 5);
      await arbiter.close();
      expect(await raw!.client.get(primaryKey(deployment)).string()).toBeNull();
    });

    it('a primary killed while holding the lease: its lease expires, the backup sees it and wins the next epoch', async () => {
      const deployment = `${run}-${++deployments}`;
      const backup = await open({ deployment });
      expectWon(await backup.claim(1, 'first'), 1, 'first');
      const primary = await leaseHolderProcess(`etcd:${url()}`, { deployment }, 2, 1);
      try {
        expect(primary.claim).toMatchObject({ epoch: 2, nodeId: 'crashing-primary' });
        expect(await backup.leaseHolder()).toEqual(primary.claim);
      } finally {
        primary.kill();
      }
      const deadline = Date.now() + 15_000; // ttl 1 s; etcd may round a ttl up to its minimum (a few seconds)
      while ((await backup.leaseHolder()) !== undefined) {
        expect(Date.now(), 'the lease of the killed primary did not expire within 15 s').toBeLessThan(deadline);
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      expectLost(await backup.claim(2, 'backup'), primary.claim);
      expectWon(await backup.claim(3, 'backup'), 3, 'backup');
    });
  });
});
