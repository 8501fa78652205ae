import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { readFileSync } from 'node:fs';
import { instrument, InstrumentError, readInstrumentMeta, FUEL_MAX } from '../../host/instrument/index.ts';
import { wat } from '../support/wat.ts';
import { instantiateMetered, propertySeed } from '../support/fuel.ts';

interface GoldenCase {
  name: string;
  wat: string;
  invoke: string;
  args: (number | string)[];
  result?: number | string;
  icount: number;
  probes?: number[];
}
const golden = JSON.parse(readFileSync(new URL('./golden/fuel.json', import.meta.url), 'utf8')) as { cases: GoldenCase[] };

const toArg = (a: number | string): number | bigint => (typeof a === 'string' ? BigInt(a) : a);

describe('golden fuel counts', () => {
  for (const c of golden.cases) {
    it(`${c.name} consumes exactly ${c.icount}`, async () => {
      const probes: bigint[] = [];
      const given = 1_000_000n;
      const { instance, fuel } = instantiateMetered(instrument(await wat(c.wat), { fuel: given }), {
        env: { probe: () => probes.push(given - (fuel.value as bigint)) },
      });
      const result = (instance.exports[c.invoke] as (...a: unknown[]) => unknown)(...c.args.map(toArg));
      if (c.result !== undefined) expect(result).toEqual(toArg(c.result));
      expect(given - (fuel.value as bigint)).toBe(BigInt(c.icount));
      expect(probes).toEqual((c.probes ?? []).map(BigInt));
    });
  }
});

// A loop whose check points sit at icount 2 (function entry) and 5 + 12k (loop headers).
const LOOP = `(module (func (export "run") (param i32) (result i32) (local i32)
  (block $b (loop $l (br_if $b (i32.eqz (local.get 0)))
    (local.set 1 (i32.add (local.get 1) (local.get 0)))
    (local.set 0 (i32.sub (local.get 0) (i32.const 1))) (br $l))) (local.get 1)))`;
const LOOP_ITERATION = 12n;
const loopIcount = (n: number): bigint => 7n + LOOP_ITERATION * BigInt(n);
const firstCheckAbove = (budget: bigint): bigint => (budget < 2n ? 2n : budget < 5n ? 5n : 5n + ((budget - 5n) / LOOP_ITERATION + 1n) * LOOP_ITERATION);

class Exhausted extends Error {}

function exhaustionPoint(bytes: Uint8Array<ArrayBuffer>, budget: bigint, n: number): bigint | undefined {
  const { instance, fuel } = instantiateMetered(bytes, {}, () => {
    throw new Exhausted();
  });
  fuel.value = budget;
  try {
    (instance.exports.run as (n: number) => number)(n);
    return undefined;
  } catch (error) {
    if (!(error instanceof Exhausted)) throw error;
    return budget - (fuel.value as bigint);
  }
}

describe('exhaustion', () => {
  it('fires at the first check point past the budget, the same icount on every run (property)', async () => {
    const bytes = instrument(await wat(LOOP));
    const seed = propertySeed('exhaustion point');
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 5000 }), (b) => {
        const budget = BigInt(b);
        const first = exhaustionPoint(bytes, budget, 1000);
        const second = exhaustionPoint(bytes, budget, 1000);
        expect(first).toBe(second);
        expect(first).toBe(firstCheckAbove(budget));
        // within one basic block (one loop iteration here) past the budget
        expect(first! - budget).toBeGreaterThan(0n);
        expect(first! - budget).toBeLessThanOrEqual(LOOP_ITERATION);
      }),
      { seed, numRuns: 300 },
    );
  });

  it('total icount does not depend on the refill schedule (property)', async () => {
    const bytes = instrument(await wat(LOOP));
    const seed = propertySeed('refill schedule');
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 400 }), { minLength: 1, maxLength: 50 }), fc.integer({ min: 0, max: 300 }), (slices, n) => {
        const seen: bigint[] = [];
        let given = BigInt(slices[0]!);
        let next = 1;
        const { instance, fuel } = instantiateMetered(bytes, {}, (f) => {
          seen.push(given - (f.value as bigint));
          const slice = BigInt(slices[next++ % slices.length]!);
          given += slice;
          f.value = (f.value as bigint) + slice;
        });
        fuel.value = given;
        expect((instance.exports.run as (n: number) => number)(n)).toBe((n * (n + 1)) / 2);
        expect(given - (fuel.value as bigint)).toBe(loopIcount(n));
        // every exhaustion happened exactly at a check point
        for (const icount of seen) expect(icount === 2n || (icount >= 5n && (icount - 5n) % LOOP_ITERATION === 0n)).toBe(true);
      }),
      { seed, numRuns: 200 },
    );
  });

  it('a refill inside fuel_exhausted lets the guest go on, and the count stays exact', async () => {
    let refills = 0n;
    const { instance, fuel } = instantiateMetered(instrument(await wat(LOOP), { fuel: 10n }), {}, (f) => {
      refills++;
      f.value = (f.value as bigint) + 10n;
    });
    expect((instance.exports.run as (n: number) => number)(100)).toBe(5050);
    expect(refills).toBeGreaterThan(0n);
    expect(10n + 10n * refills - (fuel.value as bigint)).toBe(loopIcount(100));
  });

  it('deep recursion without loops is stopped at function entries', async () => {
    const bytes = instrument(await wat(golden.cases.find((c) => c.name.startsWith('recursive'))!.wat), { fuel: 30n });
    const { instance } = instantiateMetered(bytes);
    expect(() => (instance.exports.run as (n: bigint) => bigint)(1000n)).toThrow('fuel exhausted');
  });
});

describe('module contract', () => {
  const STATE = `(module
    (import "env" "g" (global $imported (mut i32)))
    (global $a (mut i64) (i64.const 7))
    (global $b i32 (i32.const 3))
    (global $c (export "c") (mut f64) (f64.const 1.5))
    (global $r (mut funcref) (ref.func $f))
    (memory 1) (table 2 funcref) (elem declare func $f)
    (func $f (export "f") (result i32) (global.get $b))
    (func $start (global.set $a (i64.const 42)))
    (start $start))`;

  it('exports every unexported mutable global, memory and table, and the fuel', async () => {
    const bytes = instrument(await wat(STATE), { fuel: 1234n });
    const module = new WebAssembly.Module(bytes);
    const names = WebAssembly.Module.exports(module).map((e) => `${e.kind}:${e.name}`);
    expect(names).toEqual(expect.arrayContaining(['global:ftwasm_fuel', 'global:ftwasm_global_0', 'global:ftwasm_global_1', 'global:ftwasm_global_4', 'memory:ftwasm_memory', 'table:ftwasm_table', 'global:c', 'function:f']));
    expect(names).not.toContain('global:ftwasm_global_2'); // immutable
    expect(names).not.toContain('global:ftwasm_global_3'); // already exported as c
    const meta = readInstrumentMeta(module)!;
    expect(meta.globals).toEqual({ 0: 'ftwasm_global_0', 1: 'ftwasm_global_1', 3: 'c', 4: 'ftwasm_global_4' });
    const g = new WebAssembly.Global({ value: 'i32', mutable: true }, 5);
    const { instance, fuel } = instantiateMetered(bytes, { env: { g } });
    expect((instance.exports.ftwasm_global_1 as WebAssembly.Global).value).toBe(42n); // start ran
    expect((instance.exports.f as () => number)()).toBe(3);
    expect(fuel.value).toBeLessThan(1234n);
    expect(instance.exports.ftwasm_global_0).toBe(g);
  });

  it('a custom section named ftwasm that ftwasm did not write is refused with FTW_BAD_MODULE, never half-trusted', async () => {
    const plain = await wat(`(module (memory 1) (func (export "_start")))`);
    const withSection = (payload: string): WebAssembly.Module => {
      const name = new TextEncoder().encode('ftwasm');
      const body = new Uint8Array([name.length, ...name, ...new TextEncoder().encode(payload)]);
      const size: number[] = [];
      for (let n = body.length; ; ) {
        const b = n & 0x7f;
        n >>>= 7;
        size.push(n === 0 ? b : b | 0x80);
        if (n === 0) break;
      }
      return new WebAssembly.Module(new Uint8Array([...plain, 0x00, ...size, ...body]));
    };
    const good = JSON.stringify(readInstrumentMeta(new WebAssembly.Module(instrument(plain))));
    expect(readInstrumentMeta(withSection(good))?.format).toBe(1);
    const cases: Array<[string, RegExp]> = [
      ['not json', /not UTF-8 JSON/],
      ['[1,2]', /not a JSON object/],
      [good.replace('"format":1', '"format":2'), /format 2, expected 1/],
      [good.replace(/"fuelInitial":"\d+"/, '"fuelInitial":"lots"'), /fuelInitial is not a fuel amount/],
      [good.replace(/"imports":\[[^\]]*\]/, '"imports":[{"module":1}]'), /imports is malformed/],
    ];
    for (const [payload, why] of cases) {
      let error: unknown;
      try {
        readInstrumentMeta(withSection(payload));
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(InstrumentError);
      expect((error as InstrumentError).code).toBe('FTW_BAD_MODULE');
      expect((error as Error).message).toMatch(/custom section "ftwasm" is not ftwasm's metadata/);
      expect((error as Error).message).toMatch(why);
    }
  });

  it('keeps function names: a trap names the original function', async () => {
    const bytes = instrument(await wat(`(module (func $helper (param i32) (result i32) (i32.div_u (i32.const 1) (local.get 0)))
      (func $outer (export "run") (result i32) (call $helper (i32.const 0))))`));
    const { instance } = instantiateMetered(bytes);
    let stack = '';
    try {
      (instance.exports.run as () => number)();
    } catch (error) {
      stack = String((error as Error).stack);
    }
    expect(stack).toMatch(/helper/);
    expect(stack).toMatch(/outer/);
  });

  it('refuses a module it already instrumented', async () => {
    const once = instrument(await wat(LOOP));
    expect(() => instrument(once)).toThrow(expect.objectContaining({ code: 'FTW_ALREADY_INSTRUMENTED' }));
  });

  it('refuses shared memory and atomics with named errors', async () => {
    const shared = await wat('(module (memory 1 1 shared))', { threads: true });
    expect(() => instrument(shared)).toThrow(expect.objectContaining({ code: 'FTW_SHARED_MEMORY' }));
    const atomics = await wat('(module (memory 1) (func (export "f") (result i32) (i32.atomic.load (i32.const 0))))', { threads: true });
    const error = catchError(() => instrument(atomics));
    expect(error).toBeInstanceOf(InstrumentError);
    expect(error).toMatchObject({ code: 'FTW_ATOMICS', functionIndex: 0 });
    expect(error.message).toMatch(/function 0/);
    expect(error.message).toMatch(/byte \d+/);
  });

  it('refuses an out-of-range fuel option', async () => {
    const bytes = await wat('(module)');
    expect(() => instrument(bytes, { fuel: -1n })).toThrow(expect.objectContaining({ code: 'FTW_BAD_OPTION' }));
    expect(() => instrument(bytes, { fuel: FUEL_MAX + 1n })).toThrow(expect.objectContaining({ code: 'FTW_BAD_OPTION' }));
  });

  it('a truncated module is refused, or is a valid shorter module, at every cut', async () => {
    const bytes = await wat(STATE);
    for (let cut = 0; cut < bytes.length; cut++) {
      const part = bytes.slice(0, cut);
      const error = catchError(() => instrument(part));
      if (error) {
        expect(error, `cut at ${cut}`).toBeInstanceOf(InstrumentError);
        expect(error.message).toMatch(/FTW_BAD_MODULE/);
      } else {
        expect(WebAssembly.validate(part), `cut at ${cut} accepted`).toBe(true);
      }
    }
  });
});

function catchError(f: () => unknown): InstrumentError {
  try {
    f();
  } catch (error) {
    return error as InstrumentError;
  }
  return undefined as unknown as InstrumentError;
}

describe('decoder fuzz', () => {
  // Only InstrumentError may escape; and the meter never changes whether a module is valid.
  function check(bytes: Uint8Array): void {
    let out: Uint8Array<ArrayBuffer> | undefined;
    try {
      out = instrument(bytes);
    } catch (error) {
      if (!(error instanceof InstrumentError)) throw new Error(`non-InstrumentError escaped: ${String(error)}`);
      if (error.code === 'FTW_BAD_MODULE') expect(WebAssembly.validate(bytes as Uint8Array<ArrayBuffer>)).toBe(false);
      return;
    }
    expect(WebAssembly.validate(out)).toBe(WebAssembly.validate(bytes as Uint8Array<ArrayBuffer>));
  }

  it('random bytes after a valid preamble (property)', () => {
    const seed = propertySeed('random bytes');
    const preamble = [0, 0x61, 0x73, 0x6d, 1, 0, 0, 0];
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (tail) => check(new Uint8Array([...preamble, ...tail]))),
      { seed, numRuns: 2000 },
    );
  });

  it('valid modules with bytes mutated, inserted or deleted (property)', async () => {
    const seeds = await Promise.all([
      wat(LOOP),
      wat(golden.cases.find((c) => c.name.startsWith('call_indirect'))!.wat),
      wat(`(module (memory 1) (data (i32.const 8) "hello") (func (export "f") (param i32) (result i32)
        (i32.load8_u offset=8 (local.get 0)) (memory.grow (i32.const 1)) drop
        (block (block (br_table 0 1 (local.get 0))) (loop $l (br_if $l (i32.eqz (i32.const 1)))))
        (i32.const 6) i32.add))`),
    ]);
    const seed = propertySeed('mutated modules');
    const edit = fc.record({
      which: fc.nat(),
      at: fc.nat(),
      op: fc.constantFrom('flip', 'insert', 'delete'),
      value: fc.integer({ min: 0, max: 255 }),
    });
    fc.assert(
      fc.property(fc.array(edit, { minLength: 1, maxLength: 4 }), (edits) => {
        let bytes = Array.from(seeds[edits[0]!.which % seeds.length]!);
        for (const e of edits) {
          const at = 8 + (e.at % Math.max(1, bytes.length - 8));
          if (e.op === 'flip') bytes[at] = e.value;
          else if (e.op === 'insert') bytes.splice(at, 0, e.value);
          else bytes.splice(at, 1);
        }
        check(new Uint8Array(bytes));
      }),
      { seed, numRuns: 3000 },
    );
  });
});
