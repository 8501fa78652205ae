// Batches of outputs from the guest's worker (host/vm/sends.ts): what goes in comes out, in order, each with
// bytes of its own.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { packSends, unpackSends } from '../../host/vm/sends.ts';
import { propertySeed } from '../support/fuel.ts';

describe('packed outputs', () => {
  it('unpack gives back every output of a pack, in order, with its own copy of the bytes (property)', () => {
    const seed = propertySeed('packed outputs');
    const output = fc.record({ session: fc.integer({ min: 0, max: 0xffffffff }), seq: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }), bytes: fc.uint8Array({ maxLength: 300 }) });
    fc.assert(
      fc.property(fc.array(output, { minLength: 2, maxLength: 64 }), (sends) => {
        const packed = packSends(sends);
        expect(packed.count).toBe(sends.length);
        const out: Array<{ session: number; bytes: Uint8Array; seq: number }> = [];
        unpackSends(packed, (session, bytes, seq) => out.push({ session, bytes, seq }));
        expect(out).toEqual(sends);
        // Copies, not views of the batch: a buffered output must not keep the whole batch alive.
        for (const o of out) expect(o.bytes.buffer).not.toBe(packed.data.buffer);
      }),
      { seed, numRuns: 300 },
    );
  });
});
