// The catch-up pacer (host/replication/pacer.ts): when does a node that is catching a backup up hold back?
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { CatchupPacer, CATCHUP_GAIN_MIN } from '../../host/replication/pacer.ts';
import { propertySeed } from '../support/fuel.ts';

/** Steps a pacer every 50 ms through the gaps; what it answered at each step. */
function run(pacer: CatchupPacer, gaps: number[]): boolean[] {
  return gaps.map((gap, i) => pacer.step(i * 50, gap));
}

describe('the catch-up pacer', () => {
  it('never holds back a backup that closes the gap fast enough, nor within a window of its start', () => {
    const shrinking = Array.from({ length: 200 }, (_, i) => Math.round(1e6 * 0.98 ** i)); // -33% a second
    expect(run(new CatchupPacer(1000, 4096), shrinking).some(Boolean)).toBe(false);
    const growing = Array.from({ length: 20 }, (_, i) => 1e6 + i * 1000);
    expect(run(new CatchupPacer(1000, 4096), growing).some(Boolean)).toBe(false); // 20 steps = 950 ms < a window
  });

  it('holds back a backup that falls behind once it has been watched for a window, and lets go when it gains', () => {
    const pacer = new CatchupPacer(1000, 4096);
    const growing = Array.from({ length: 40 }, (_, i) => 1e6 + i * 1000);
    const held = run(pacer, growing);
    expect(held.slice(0, 20).some(Boolean)).toBe(false);
    expect(held.slice(20).every(Boolean)).toBe(true);
    // Held back, the node writes no log: the gap falls steeply, and the pacer lets go within a window.
    const answers: boolean[] = [];
    let gap = growing.at(-1)!;
    for (let i = 40; i < 80; i++) {
      gap = Math.round(gap * 0.9);
      answers.push(pacer.step(i * 50, gap));
    }
    expect(answers.at(-1)).toBe(false);
  });

  it('never holds back within the slack', () => {
    expect(run(new CatchupPacer(1000, 4096), Array.from({ length: 100 }, () => 4096)).some(Boolean)).toBe(false);
    expect(run(new CatchupPacer(1000, 4096), Array.from({ length: 100 }, () => 4097)).at(-1)).toBe(true);
  });

  it('holds back exactly when the gap did not shrink by the minimum over the window (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 1e7 }), { minLength: 1, maxLength: 300 }), fc.integer({ min: 1, max: 40 }), (gaps, windowSteps) => {
        const window = windowSteps * 50;
        const pacer = new CatchupPacer(window, 100, 4096);
        gaps.forEach((gap, i) => {
          const held = pacer.step(i * 50, gap);
          const j = i - windowSteps; // the newest sample at least a window old
          const expected = gap > 100 && j >= 0 && gap > gaps[j]! * (1 - CATCHUP_GAIN_MIN);
          expect(held).toBe(expected);
        });
      }),
      { numRuns: 200, seed: propertySeed('catchup-pacer') },
    );
  });
});
