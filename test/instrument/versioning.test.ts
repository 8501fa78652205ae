// Loop versioning (docs/METER.md, "Counted loops"): a counted leaf loop gets a second copy without checks,
// taken only when the fuel covers every pass it can make. It must change nothing a host can see: the same
// results, the same icounts at every fuel_exhausted call, the same fuel left, for any budget and refill.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { readFileSync } from 'node:fs';
import { instrument, InstrumentError, readInstrumentMeta } from '../../host/instrument/index.ts';
import { wat } from '../support/wat.ts';
import { instantiateMetered, propertySeed } from '../support/fuel.ts';

const I32_MAX = 0x7fffffff;

interface LoopShape {
  unsigned: boolean;
  /** The bound K as the i32 the module holds (a u32 above I32_MAX is written negative). */
  bound: number;
  step: number;
  /** t0: a constant set right before the loop, or the function's first argument. */
  constantStart: boolean;
  start: number;
  /** An early exit from inside the loop when the running sum hits this value. */
  exitAt: number;
}

const asI32 = (v: number): number => v | 0;

/**
 * The counted loop as AssemblyScript writes `for (t = t0; t < K; t += c)`, with an iteration cap (a second
 * exit, on a local other than t) so that even a wrapping loop stays short.
 */
function countedLoop(s: LoopShape): string {
  const lt = s.unsigned ? 'i32.lt_u' : 'i32.lt_s';
  const init = s.constantStart ? `(i32.const ${asI32(s.start)})` : '(local.get $t0)';
  return `(module (func (export "run") (param $t0 i32) (param $x i32) (result i32) (local $t i32) (local $acc i32) (local $n i32)
    (block $out
      (local.set $t ${init})
      (loop $L
        (if (${lt} (local.get $t) (i32.const ${asI32(s.bound)}))
          (then
            (local.set $acc (i32.add (local.get $acc) (i32.xor (local.get $t) (local.get $n))))
            (br_if $out (i32.eq (local.get $acc) (local.get $x)))
            (local.set $n (i32.add (local.get $n) (i32.const 1)))
            (br_if $out (i32.gt_u (local.get $n) (i32.const 3000)))
            (if (i32.and (local.get $n) (i32.const 1))
              (then (local.set $acc (i32.mul (local.get $acc) (i32.const 3))))
              (else (local.set $acc (i32.sub (local.get $acc) (i32.const 7)))))
            (local.set $t (i32.add (local.get $t) (i32.const ${s.step})))
            (br $L)))))
    (i32.add (local.get $acc) (local.get $n))))`;
}

interface Outcome {
  result: number | string;
  exhaustedAt: bigint[];
  fuelLeft: bigint;
}

/** Runs instrumented bytes with `budget` fuel; each fuel_exhausted refills the next slice, then throws. */
function runMetered(bytes: Uint8Array<ArrayBuffer>, budget: bigint, slices: number[], t0: number, x: number): Outcome {
  let given = budget;
  let next = 0;
  const exhaustedAt: bigint[] = [];
  const { instance, fuel } = instantiateMetered(bytes, {}, (f) => {
    exhaustedAt.push(given - (f.value as bigint));
    if (next >= slices.length) throw new Error('out of fuel');
    const slice = BigInt(slices[next++]!);
    given += slice;
    f.value = (f.value as bigint) + slice;
  });
  fuel.value = budget;
  let result: number | string;
  try {
    result = (instance.exports.run as (t0: number, x: number) => number)(t0, x);
  } catch (error) {
    result = (error as Error).message;
  }
  return { result, exhaustedAt, fuelLeft: fuel.value as bigint };
}

const versioned = (bytes: Uint8Array<ArrayBuffer>): number | undefined => readInstrumentMeta(new WebAssembly.Module(bytes))!.versionedLoops;

describe('loop versioning', () => {
  it('changes no result, no exhaustion icount and no fuel left, for any loop shape, budget and refill (property)', async () => {
    const seed = propertySeed('loop versioning');
    const shape = fc
      .record({
        unsigned: fc.boolean(),
        // trips from K - t0: a few negative (the loop never runs), mostly short, some at the ends of the range
        span: fc.oneof(fc.integer({ min: -5, max: 12 }), fc.integer({ min: -5, max: 400 })),
        nearTop: fc.boolean(),
        step: fc.integer({ min: 1, max: 7 }),
        constantStart: fc.boolean(),
        base: fc.integer({ min: -1000, max: 1000 }),
        exitAt: fc.integer({ min: -50, max: 5000 }),
      })
      .map(({ unsigned, span, nearTop, step, constantStart, base, exitAt }) => {
        const top = unsigned ? 0xffffffff : I32_MAX;
        const bottom = unsigned ? 0 : -0x80000000;
        // near the top: K within a step of the largest value, where t + c could wrap (then no copy is made)
        const bound = nearTop ? Math.min(top, top - step + 1 + Math.abs(exitAt % 3)) : Math.min(top, Math.max(bottom + 400, base + span));
        const start = Math.max(bottom, bound - span);
        return { unsigned, bound, step, constantStart, start, exitAt } satisfies LoopShape;
      });
    await fc.assert(
      fc.asyncProperty(
        shape,
        fc.integer({ min: 0, max: 1100 }),
        fc.array(fc.integer({ min: 1, max: 2_000 }), { maxLength: 20 }),
        async (s, permille, slices) => {
          const source = await wat(countedLoop(s));
          const withCopy = instrument(source, { versionLoops: true });
          const without = instrument(source, { versionLoops: false });
          // budgets around the whole run's icount, where a guard that is off by a little would show
          const plenty = 1n << 40n;
          const total = plenty - runMetered(without, plenty, [], asI32(s.start), s.exitAt).fuelLeft;
          const budget = (total * BigInt(permille)) / 1000n;
          const wraps = s.bound + s.step - 1 > (s.unsigned ? 0xffffffff : I32_MAX);
          expect(versioned(withCopy)).toBe(wraps ? 0 : 1);
          expect(versioned(without)).toBe(0);
          const a = runMetered(withCopy, budget, slices, asI32(s.start), s.exitAt);
          const b = runMetered(without, budget, slices, asI32(s.start), s.exitAt);
          expect(a).toEqual(b);
          // and with fuel to spare, the answer of the uninstrumented module
          const plain = new WebAssembly.Instance(new WebAssembly.Module(source)).exports.run as (t0: number, x: number) => number;
          expect(runMetered(withCopy, plenty, [], asI32(s.start), s.exitAt).result).toBe(plain(asI32(s.start), s.exitAt));
        },
      ),
      { seed, numRuns: 500 },
    );
  });

  it('copies the loops of the compute guests that have this shape', () => {
    // built by `npm install` (asconfig.json); sha256's message schedule and rounds are such loops
    const sha = new Uint8Array(readFileSync(new URL('../../build/guest/sha256.wasm', import.meta.url)));
    expect(versioned(instrument(sha))).toBeGreaterThanOrEqual(3);
    expect(versioned(instrument(sha, { versionLoops: false }))).toBe(0);
  });

  const notCounted: [string, string][] = [
    ['a br_if back edge', `(loop $L (if (i32.lt_s (local.get $t) (i32.const 10)) (then
        (local.set $t (i32.add (local.get $t) (i32.const 1))) (br_if $L (local.get $t)))))`],
    ['a second write of t', `(loop $L (if (i32.lt_s (local.get $t) (i32.const 10)) (then
        (local.set $t (i32.mul (local.get $t) (i32.const 1)))
        (local.set $t (i32.add (local.get $t) (i32.const 1))) (br $L))))`],
    ['a call in the body', `(loop $L (if (i32.lt_s (local.get $t) (i32.const 10)) (then
        (call $f) (local.set $t (i32.add (local.get $t) (i32.const 1))) (br $L))))`],
    ['a loop in the body', `(loop $L (if (i32.lt_s (local.get $t) (i32.const 10)) (then
        (loop $M) (local.set $t (i32.add (local.get $t) (i32.const 1))) (br $L))))`],
    ['a step of zero', `(loop $L (if (i32.lt_s (local.get $t) (i32.const 10)) (then
        (local.set $t (i32.add (local.get $t) (i32.const 0))) (br $L))))`],
    ['a negative step', `(loop $L (if (i32.lt_s (local.get $t) (i32.const 10)) (then
        (local.set $t (i32.add (local.get $t) (i32.const -1))) (br $L))))`],
    ['a bound where t + c wraps', `(loop $L (if (i32.lt_s (local.get $t) (i32.const 2147483647)) (then
        (local.set $t (i32.add (local.get $t) (i32.const 2))) (br $L))))`],
    ['the back edge in the else arm', `(loop $L (if (i32.lt_s (local.get $t) (i32.const 10)) (then) (else
        (local.set $t (i32.add (local.get $t) (i32.const 1))) (br $L))))`],
    ['a signed compare the other way', `(loop $L (if (i32.gt_s (local.get $t) (i32.const 10)) (then
        (local.set $t (i32.add (local.get $t) (i32.const 1))) (br $L))))`],
    ['a bound in a local', `(loop $L (if (i32.lt_s (local.get $t) (local.get $k)) (then
        (local.set $t (i32.add (local.get $t) (i32.const 1))) (br $L))))`],
  ];
  for (const [what, loop] of notCounted) {
    it(`leaves a loop with ${what} checked only`, async () => {
      const source = await wat(`(module (func $f) (func (export "run") (param $t i32) (param $k i32) ${loop}))`);
      expect(versioned(instrument(source))).toBe(0);
    });
  }

  it('the shape those cases break is copied', async () => {
    const source = await wat(`(module (func (export "run") (param $t i32) (loop $L (if (i32.lt_s (local.get $t) (i32.const 10)) (then
        (local.set $t (i32.add (local.get $t) (i32.const 1))) (br $L))))))`);
    expect(versioned(instrument(source))).toBe(1);
  });

  it('copies a loop with results and a return inside, and both forms agree', async () => {
    // the loop leaves t on the stack; an early `return` leaves the function from inside the copy
    const source = await wat(`(module (func (export "run") (param $t i32) (param $stop i32) (result i32)
      (loop $L (result i32)
        (if (i32.lt_u (local.get $t) (i32.const 100)) (then
          (if (i32.eq (local.get $t) (local.get $stop)) (then (return (i32.const -1))))
          (local.set $t (i32.add (local.get $t) (i32.const 3))) (br $L)))
        (local.get $t))))`);
    const withCopy = instrument(source);
    expect(versioned(withCopy)).toBe(1);
    const without = instrument(source, { versionLoops: false });
    for (const [t0, stop, budget] of [[0, 50, 1n << 30n], [0, 51, 1n << 30n], [7, 1000, 40n], [200, 0, 5n], [0, 99, 300n]] as const) {
      expect(runMetered(withCopy, budget, [50, 50], t0, stop)).toEqual(runMetered(without, budget, [50, 50], t0, stop));
    }
    expect(runMetered(withCopy, 1n << 30n, [], 0, 50).result).toBe(102);
    expect(runMetered(withCopy, 1n << 30n, [], 0, 51).result).toBe(-1);
  });

  it('refuses a versionLoops option that is not a boolean', async () => {
    const source = await wat('(module)');
    expect(() => instrument(source, { versionLoops: 'yes' as unknown as boolean })).toThrow(InstrumentError);
  });
});
