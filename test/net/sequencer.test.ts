import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { OutputSequencer } from '../../host/net/index.ts';
import { propertySeed } from './support.ts';

const payloadOf = (seq: number): Uint8Array => new Uint8Array([seq & 0xff, (seq >> 8) & 0xff, 0xab]);

/** Pushes every seq; checks the bound on held outputs after each push; returns the seqs delivered, in delivery order. */
function run(sequencer: OutputSequencer, stream: number[]): number[] {
  const out: number[] = [];
  // Plain checks, not expect(): this runs hundreds of thousands of times.
  const check = (ok: boolean, what: string) => {
    if (!ok) throw new Error(what);
  };
  for (const seq of stream) {
    const before = sequencer.next;
    const result = sequencer.push(seq, payloadOf(seq));
    check(sequencer.heldCount <= sequencer.held_max, `held ${sequencer.heldCount} > held_max ${sequencer.held_max}`);
    if (seq < before) check(result.status === 'duplicate', `seq ${seq} below next ${before} was ${result.status}`);
    if (result.status !== 'delivered') check(result.ready.length === 0, `${result.status} came with outputs`);
    for (const r of result.ready) {
      check(r.payload[0] === (r.seq & 0xff) && r.payload[1] === ((r.seq >> 8) & 0xff), `seq ${r.seq} came with another seq's payload`);
      out.push(r.seq);
    }
  }
  return out;
}

const isPrefixRun = (seqs: number[], from: number): boolean => seqs.every((s, i) => s === from + i);

describe('OutputSequencer', () => {
  it('delivers a strict in-order run from 1, each seq once, whatever duplicated and shuffled stream comes in; a resend from the next seq then completes it', () => {
    const seed = propertySeed('sequencer arbitrary streams');
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 60 }).chain((n) =>
          fc.record({ n: fc.constant(n), held_max: fc.integer({ min: 0, max: 16 }), stream: fc.array(fc.integer({ min: 1, max: n }), { maxLength: 200 }) }),
        ),
        ({ n, held_max, stream }) => {
          const sequencer = new OutputSequencer(held_max);
          const first = run(sequencer, stream);
          expect(isPrefixRun(first, 1)).toBe(true);
          // What a server does after a reconnect: send everything from the client's next seq, in order.
          const resend = Array.from({ length: n - sequencer.delivered }, (_, i) => sequencer.delivered + 1 + i);
          const second = run(sequencer, resend);
          expect([...first, ...second]).toEqual(Array.from({ length: n }, (_, i) => i + 1));
          expect(sequencer.heldCount).toBe(0);
        },
      ),
      { seed, numRuns: 500 },
    );
  });

  it('delivers everything, without any resend, when reordering stays within the window and duplicates come at any time', () => {
    const seed = propertySeed('sequencer windowed streams');
    const arb = fc
      .record({ n: fc.integer({ min: 1, max: 80 }), held_max: fc.integer({ min: 0, max: 12 }) })
      .chain(({ n, held_max }) =>
        fc.record({
          n: fc.constant(n),
          held_max: fc.constant(held_max),
          // One random key per seq: blocks of held_max + 1 seqs are shuffled by their keys.
          keys: fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { minLength: n, maxLength: n }),
          // Duplicates: (position in the stream, which earlier element to repeat).
          dups: fc.array(fc.tuple(fc.nat(), fc.nat()), { maxLength: 40 }),
        }),
      );
    fc.assert(
      fc.property(arb, ({ n, held_max, keys, dups }) => {
        const block = held_max + 1;
        const stream: number[] = [];
        for (let start = 1; start <= n; start += block) {
          const seqs = Array.from({ length: Math.min(block, n - start + 1) }, (_, i) => start + i);
          seqs.sort((a, b) => keys[a - 1]! - keys[b - 1]! || a - b);
          stream.push(...seqs);
        }
        for (const [at, which] of dups) {
          const pos = at % (stream.length + 1);
          if (pos === 0) continue;
          stream.splice(pos, 0, stream[which % pos]!);
        }
        const sequencer = new OutputSequencer(held_max);
        expect(run(sequencer, stream)).toEqual(Array.from({ length: n }, (_, i) => i + 1));
      }),
      { seed, numRuns: 500 },
    );
  });

  it('says why it dropped a seq: duplicate below next or already held, overflow beyond the window', () => {
    const s = new OutputSequencer(2, 10);
    expect(s.push(10, payloadOf(10)).status).toBe('duplicate');
    expect(s.push(13, payloadOf(13)).status).toBe('held');
    expect(s.push(13, payloadOf(13)).status).toBe('duplicate');
    expect(s.push(14, payloadOf(14)).status).toBe('overflow');
    expect(s.push(12, payloadOf(12)).status).toBe('held');
    const r = s.push(11, payloadOf(11));
    expect(r.status).toBe('delivered');
    expect(r.ready.map((x) => x.seq)).toEqual([11, 12, 13]);
    expect(s.delivered).toBe(13);
  });
});
