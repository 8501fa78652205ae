// The session output buffer (host/net/outputs.ts, a Fifo of host/net/fifo.ts) against a plain array doing the same pushes, drops and shifts.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { OutputQueue, type BufferedOutput } from '../../host/net/outputs.ts';
import { propertySeed } from './support.ts';

const output = (seq: number, size: number): BufferedOutput => ({ seq, epoch: 1, payload: new Uint8Array(size) });

describe('OutputQueue (a Fifo that counts bytes)', () => {
  it('holds what an array would after any pushes, drops and shifts: order, length, bytes, first, at, iteration (property)', () => {
    const seed = propertySeed('output queue');
    const op = fc.oneof(
      fc.record({ push: fc.integer({ min: 1, max: 300 }), size: fc.integer({ min: 0, max: 40 }) }),
      fc.record({ drop: fc.integer({ min: 0, max: 400 }) }),
      fc.record({ shift: fc.integer({ min: 0, max: 300 }) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        const q = new OutputQueue();
        let model: BufferedOutput[] = [];
        let seq = 0;
        for (const o of ops) {
          if ('push' in o) {
            for (let i = 0; i < o.push; i++) {
              const b = output(++seq, o.size);
              q.push(b);
              model.push(b);
            }
          } else if ('drop' in o) {
            q.drop(o.drop);
            model = model.slice(Math.min(o.drop, model.length));
          } else {
            for (let i = 0; i < o.shift; i++) expect(q.shift()).toBe(model.shift());
          }
          expect(q.length).toBe(model.length);
          expect(q.bytes).toBe(model.reduce((n, b) => n + b.payload.length, 0));
          expect(q.first).toBe(model[0]);
          expect(q.at(model.length - 1)).toBe(model.at(-1));
          expect(q.at(model.length)).toBeUndefined();
          expect(q.at(-1)).toBeUndefined();
        }
        expect(q.toArray()).toEqual(model);
        expect([...q]).toEqual(model);
        const copy = new OutputQueue(model);
        expect(copy.toArray()).toEqual(model);
        expect(copy.bytes).toBe(q.bytes);
        if (model.length > 0) {
          expect(copy.shift()).toBe(model[0]);
          expect(copy.bytes).toBe(q.bytes - model[0]!.payload.length);
        }
      }),
      { seed, numRuns: 200 },
    );
  });

  it('dropping the oldest one at a time (a backup at its bound) keeps the storage within twice what it holds', () => {
    const q = new OutputQueue();
    let longest = 0;
    for (let seq = 1; seq <= 100_000; seq++) {
      q.push(output(seq, 1));
      if (q.length > 256) q.drop(1);
      longest = Math.max(longest, (q as unknown as { items: unknown[] }).items.length); // Fifo's storage
    }
    expect(q.length).toBe(256);
    expect(q.first!.seq).toBe(100_000 - 255);
    expect(longest).toBeLessThanOrEqual(2 * 256 + 1);
  });
});
