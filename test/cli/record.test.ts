// `ftwasm record` reads stdin as lines without ever holding more than one message's worth of a line.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { boundedLines } from '../../host/cli/record.ts';
import { propertySeed } from '../support/fuel.ts';

async function collect(chunks: Uint8Array[], max: number): Promise<Array<string | number>> {
  const out: Array<string | number> = [];
  for await (const line of boundedLines((async function* () {
    yield* chunks;
  })(), max)) {
    out.push(typeof line === 'number' ? line : Buffer.from(line).toString('latin1'));
  }
  return out;
}

const bytes = (s: string) => new Uint8Array(Buffer.from(s, 'latin1'));

describe('boundedLines', () => {
  it('splits on LF, drops a CR before it, and gives a line over the limit as its length only', async () => {
    expect(await collect([bytes('GET a\r\nSET b 1\nxxxxxxxxxx\nlast')], 8)).toEqual(['GET a', 'SET b 1', 10, 'last']);
    expect(await collect([bytes('12345678\r\n123456789\r\n')], 8)).toEqual(['12345678', 9]); // CR does not count
    expect(await collect([bytes('\n\n')], 8)).toEqual(['', '']);
  });

  it('any chunking of any lines, LF or CRLF, gives the same lines (property)', async () => {
    const seed = propertySeed('boundedLines chunking');
    const line = fc.array(fc.integer({ min: 0, max: 255 }).filter((b) => b !== 0x0a && b !== 0x0d), { maxLength: 20 }).map((b) => Buffer.from(b).toString('latin1'));
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(line, fc.boolean()), { maxLength: 12 }), fc.array(fc.integer({ min: 1, max: 7 }), { minLength: 1, maxLength: 10 }), fc.integer({ min: 0, max: 16 }), async (ended, cuts, max) => {
        const lines = ended.map(([l]) => l);
        const text = bytes(ended.map(([l, crlf]) => `${l}${crlf ? '\r\n' : '\n'}`).join(''));
        const chunks: Uint8Array[] = [];
        for (let at = 0, i = 0; at < text.length; i++) {
          const n = cuts[i % cuts.length]!;
          chunks.push(text.subarray(at, at + n));
          at += n;
        }
        expect(await collect(chunks, max)).toEqual(lines.map((l) => (l.length > max ? l.length : l)));
      }),
      { seed, numRuns: 200 },
    );
  });
});
