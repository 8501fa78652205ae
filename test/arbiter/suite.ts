// The properties every arbiter keeps, as one suite run against each implementation through a harness.
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { ArbiterError, openArbiter, type Arbiter, type ArbiterOptions, type ClaimResult, type EpochClaim } from '../../host/arbiter/index.ts';
import { encodeClaimRecord } from '../../host/arbiter/claim.ts';
import { raceInProcesses, removeArbiterBundle } from './child.ts';

/** Each test's bound; waits inside are bounded tighter. */
export const ARBITER_TEST_TIMEOUT_MS = 30_000;

/** One empty store (its own directory or deployment) that any number of arbiters, here or in children, can open. */
export interface ArbiterStore {
  spec: string;
  options: ArbiterOptions;
  /** Replaces the stored claim of `epoch` (the highest one) with `text`; returns the path or key it wrote. */
  overwrite(epoch: number, text: string): Promise<string>;
}

export interface ArbiterHarness {
  kind: string;
  /** A fresh, empty store. */
  fresh(): Promise<ArbiterStore>;
}

/** Corruptions every arbiter must refuse, with what the message must say. */
const CORRUPTIONS: [string, string, RegExp][] = [
  ['empty', '', /empty/],
  ['cut short', '{"epoch":2,"nodeId":"n', /not JSON/],
  ['not an object', '[2]', /not a JSON object/],
  ['null', 'null', /not a JSON object/],
  ['epoch of the wrong type', JSON.stringify({ epoch: '2', nodeId: 'n', claimedAtMs: 1, claimId: '0'.repeat(32) }), /field epoch/],
  ['empty node id', JSON.stringify({ epoch: 2, nodeId: '', claimedAtMs: 1, claimId: '0'.repeat(32) }), /field nodeId/],
  ['negative time', JSON.stringify({ epoch: 2, nodeId: 'n', claimedAtMs: -1, claimId: '0'.repeat(32) }), /field claimedAtMs/],
  ['no claim id', JSON.stringify({ epoch: 2, nodeId: 'n', claimedAtMs: 1 }), /field claimId/],
  ['oversized', `{"pad":"${'x'.repeat(5000)}"}`, /claim_bytes_max/],
];

function expectWon(result: ClaimResult, epoch: number, nodeId: string): EpochClaim {
  expect(result.won, JSON.stringify(result)).toBe(true);
  if (!result.won) throw new Error('unreachable');
  expect(result.claim).toMatchObject({ epoch, nodeId });
  return result.claim;
}

function expectLost(result: ClaimResult, holder: EpochClaim): void {
  expect(result.won, JSON.stringify(result)).toBe(false);
  if (result.won) throw new Error('unreachable');
  expect(result.holder).toEqual(holder);
}

async function expectCode(promise: Promise<unknown>, code: string, ...mentions: string[]): Promise<ArbiterError> {
  const error = await promise.then(
    (value) => {
      throw new Error(`expected ${code}, got ${JSON.stringify(value)}`);
    },
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(ArbiterError);
  const arbiterError = error as ArbiterError;
  expect(arbiterError.code, arbiterError.message).toBe(code);
  for (const mention of mentions) expect(arbiterError.message).toContain(mention);
  return arbiterError;
}

/** Registers the shared arbiter tests for `harness`. */
export function arbiterSuite(harness: ArbiterHarness): void {
  describe(`arbiter contract: ${harness.kind}`, { timeout: ARBITER_TEST_TIMEOUT_MS }, () => {
    const opened: Arbiter[] = [];
    async function open(store: ArbiterStore, options: ArbiterOptions = {}): Promise<Arbiter> {
      const arbiter = await openArbiter(store.spec, { ...store.options, ...options });
      opened.push(arbiter);
      return arbiter;
    }
    afterEach(async () => {
      await Promise.all(opened.splice(0).map((arbiter) => arbiter.close()));
    });
    afterAll(() => removeArbiterBundle());

    it('an empty store has no current claim', async () => {
      const arbiter = await open(await harness.fresh());
      expect(await arbiter.current()).toBeUndefined();
    });

    it('sequential claims of the next epoch each win, and current() follows them', async () => {
      const arbiter = await open(await harness.fresh());
      for (let epoch = 1; epoch <= 5; epoch++) {
        const nodeId = epoch % 2 === 0 ? 'node-b' : 'node-a';
        const claim = expectWon(await arbiter.claim(epoch, nodeId), epoch, nodeId);
        expect(await arbiter.current()).toEqual(claim);
      }
    });

    it('a second claimant of the same epoch loses and is told who holds it', async () => {
      const store = await harness.fresh();
      const [first, second] = [await open(store), await open(store)];
      const claim = expectWon(await first.claim(1, 'first'), 1, 'first');
      expectLost(await second.claim(1, 'second'), claim);
      expectLost(await first.claim(1, 'first'), claim); // not idempotent: a repeated claim is a lost one
      expect(await second.current()).toEqual(claim);
    });

    it('a claim below the current epoch loses to the current holder, so the claimant sees the higher epoch', async () => {
      const arbiter = await open(await harness.fresh());
      for (let epoch = 1; epoch <= 3; epoch++) expectWon(await arbiter.claim(epoch, `node-${epoch}`), epoch, `node-${epoch}`);
      const holder = (await arbiter.current())!;
      expect(holder.epoch).toBe(3);
      const result = await arbiter.claim(2, 'stale-node');
      expectLost(result, holder);
      if (!result.won) expect(result.holder.epoch).toBeGreaterThan(2);
    });

    it('a claim that skips an epoch is refused with FTW_ARBITER_GAP and changes nothing', async () => {
      const arbiter = await open(await harness.fresh());
      const gap = await expectCode(arbiter.claim(2, 'eager'), 'FTW_ARBITER_GAP', 'epoch 2', 'is 0');
      expect(gap.epoch).toBe(2);
      expect(await arbiter.current()).toBeUndefined();
      const claim = expectWon(await arbiter.claim(1, 'patient'), 1, 'patient');
      await expectCode(arbiter.claim(3, 'eager'), 'FTW_ARBITER_GAP', 'epoch 3', 'next one is 2');
      await expectCode(arbiter.claim(Number.MAX_SAFE_INTEGER, 'eager'), 'FTW_ARBITER_GAP');
      expect(await arbiter.current()).toEqual(claim);
    });

    it('exactly one of 20 concurrent claimants of the next epoch wins, each on its own arbiter, round after round', async () => {
      const store = await harness.fresh();
      const arbiters = await Promise.all(Array.from({ length: 20 }, () => open(store)));
      for (let epoch = 1; epoch <= 3; epoch++) {
        const results = await Promise.all(arbiters.map((arbiter, i) => arbiter.claim(epoch, `racer-${i}`)));
        const winners = results.filter((result) => result.won);
        expect(winners, JSON.stringify(results)).toHaveLength(1);
        const claim = (winners[0] as { claim: EpochClaim }).claim;
        for (const result of results) if (!result.won) expect(result.holder).toEqual(claim);
        expect(await arbiters[0]!.current()).toEqual(claim);
      }
    });

    it('exactly one of 20 concurrent claimants on one shared arbiter wins', async () => {
      const arbiter = await open(await harness.fresh());
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => arbiter.claim(1, `racer-${i}`)));
      expect(results.filter((result) => result.won)).toHaveLength(1);
    });

    it('exactly one of 8 real processes racing for the next epoch wins, and the others see it', async () => {
      const store = await harness.fresh();
      const arbiter = await open(store);
      expectWon(await arbiter.claim(1, 'setup'), 1, 'setup');
      for (const epoch of [2, 3]) {
        const results = await raceInProcesses(store.spec, store.options, epoch, 8);
        const winners = results.filter((result) => result.won);
        expect(winners, JSON.stringify(results)).toHaveLength(1);
        const claim = (winners[0] as { claim: EpochClaim }).claim;
        expect(claim.epoch).toBe(epoch);
        for (const result of results) if (!result.won) expect(result.holder).toEqual(claim);
        expect(await arbiter.current()).toEqual(claim);
      }
    });

    for (const [what, text, detail] of CORRUPTIONS) {
      it(`a corrupt stored claim (${what}) makes current() and claim() throw FTW_ARBITER_CORRUPT naming where it is`, async () => {
        const store = await harness.fresh();
        const arbiter = await open(store);
        expectWon(await arbiter.claim(1, 'a'), 1, 'a');
        expectWon(await arbiter.claim(2, 'b'), 2, 'b');
        const where = await store.overwrite(2, text);
        const error = await expectCode(arbiter.current(), 'FTW_ARBITER_CORRUPT', where);
        expect(error.message).toMatch(detail);
        await expectCode(arbiter.claim(3, 'c'), 'FTW_ARBITER_CORRUPT', where);
        await expectCode((await open(store)).current(), 'FTW_ARBITER_CORRUPT', where);
      });
    }

    it('repairing a corrupt claim with a valid record of the same epoch lets claims go on', async () => {
      const store = await harness.fresh();
      const arbiter = await open(store);
      expectWon(await arbiter.claim(1, 'a'), 1, 'a');
      await store.overwrite(1, '{"epoch":1,');
      await expectCode(arbiter.current(), 'FTW_ARBITER_CORRUPT');
      const repaired = { epoch: 1, nodeId: 'repaired', claimedAtMs: 0 };
      await store.overwrite(1, encodeClaimRecord({ ...repaired, claimId: 'f'.repeat(32) }));
      expect(await arbiter.current()).toEqual(repaired);
      expectLost(await arbiter.claim(1, 'b'), repaired);
      expectWon(await arbiter.claim(2, 'b'), 2, 'b');
    });

    it('a reopened arbiter sees the same state and continues from it', async () => {
      const store = await harness.fresh();
      const first = await open(store);
      for (let epoch = 1; epoch <= 3; epoch++) expectWon(await first.claim(epoch, 'before'), epoch, 'before');
      const last = await first.current();
      await first.close();
      const again = await open(store);
      expect(await again.current()).toEqual(last);
      expectLost(await again.claim(3, 'after'), last!);
      expectWon(await again.claim(4, 'after'), 4, 'after');
    });

    it('deployments on the same storage are independent', async () => {
      const store = await harness.fresh();
      const mine = await open(store);
      const theirs = await open(store, { deployment: `${store.options.deployment ?? 'default'}-other` });
      expectWon(await mine.claim(1, 'mine'), 1, 'mine');
      expect(await theirs.current()).toBeUndefined();
      expectWon(await theirs.claim(1, 'theirs'), 1, 'theirs');
      expect((await mine.current())!.nodeId).toBe('mine');
    });

    it('invalid epochs and node ids are refused with FTW_ARBITER_ARGUMENT', async () => {
      const arbiter = await open(await harness.fresh());
      for (const epoch of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53]) {
        await expectCode(arbiter.claim(epoch, 'node'), 'FTW_ARBITER_ARGUMENT', 'epoch');
      }
      for (const nodeId of ['', 'a\nb', 'x'.repeat(257)]) {
        await expectCode(arbiter.claim(1, nodeId), 'FTW_ARBITER_ARGUMENT', 'node id');
      }
      expect(await arbiter.current()).toBeUndefined();
    });

    it('after close() every call throws FTW_ARBITER_CLOSED', async () => {
      const arbiter = await open(await harness.fresh());
      await arbiter.close();
      await arbiter.close();
      await expectCode(arbiter.current(), 'FTW_ARBITER_CLOSED');
      await expectCode(arbiter.claim(1, 'late'), 'FTW_ARBITER_CLOSED');
    });
  });
}

export { expectCode, expectLost, expectWon };
