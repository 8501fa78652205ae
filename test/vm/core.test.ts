import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { instrument } from '../../host/instrument/index.ts';
import { EntryKind } from '../../host/log/index.ts';
import type { LogEntry } from '../../host/log/index.ts';
import { GuestCore } from '../../host/vm/core.ts';
import { AdmissionError, DivergenceError } from '../../host/vm/errors.ts';
import { wat } from '../support/wat.ts';
import { propertySeed } from '../support/fuel.ts';
import { MemorySink, ScriptedWorld, message } from '../support/memlog.ts';
import { ArraySource } from '../../host/vm/sources.ts';
import { MESSAGE_BYTES_MAX, RANDOM_FILL_BYTES_MAX } from '../../host/vm/abi.ts';

// An echo guest that touches every import: for each message it sends back the payload, the clock,
// 8 random bytes and the cpu id; exits when input closes.
const ECHO = `(module
  (import "ft" "clock_now" (func $now (result i64)))
  (import "ft" "clock_mono" (func $mono (result i64)))
  (import "ft" "random_fill" (func $random (param i32 i32)))
  (import "ft" "cpu_id" (func $cpu (result i32)))
  (import "ft" "recv" (func $recv (param i32 i32 i32) (result i32)))
  (import "ft" "send" (func $send (param i32 i32 i32)))
  (import "ft" "log" (func $log (param i32 i32)))
  (memory (export "memory") 1)
  (global $count (mut i32) (i32.const 0))
  (data (i32.const 512) "tick")
  (func (export "_start") (local $n i32)
    (loop $serve
      (local.set $n (call $recv (i32.const 0) (i32.const 256) (i32.const 1000)))
      (if (i32.ge_s (local.get $n) (i32.const 4)) (then
        (global.set $count (i32.add (global.get $count) (i32.const 1)))
        (i64.store (i32.const 300) (call $now))
        (i64.store (i32.const 308) (call $mono))
        (call $random (i32.const 316) (i32.const 8))
        (i32.store (i32.const 324) (call $cpu))
        (call $send (i32.load (i32.const 0)) (i32.const 4) (i32.sub (local.get $n) (i32.const 4)))
        (call $send (i32.load (i32.const 0)) (i32.const 300) (i32.const 28))
        (call $log (i32.const 512) (i32.const 4))))
      (br_if $serve (i32.ne (local.get $n) (i32.const -1))))))`;

// A compute guest with an interrupt handler: the handler adds its argument into memory, the main loop
// mixes memory and a counter, so a misplaced interrupt changes the final state.
const TICKER = `(module
  (memory (export "memory") 1)
  (global $ticks (mut i32) (i32.const 0))
  (func (export "ft_interrupt") (param $event i32) (param $arg i32)
    (global.set $ticks (i32.add (global.get $ticks) (i32.const 1)))
    (i32.store (i32.const 64) (i32.add (i32.load (i32.const 64)) (local.get $arg))))
  (func $mix (param $i i32) (result i32)
    (i32.xor (i32.mul (local.get $i) (i32.const 2654435761)) (i32.load (i32.const 64))))
  (func (export "_start") (local $i i32) (local $acc i32)
    (loop $l
      (local.set $acc (i32.add (local.get $acc) (call $mix (local.get $i))))
      (i32.store (i32.and (i32.mul (local.get $i) (i32.const 4)) (i32.const 0xfff)) (local.get $acc))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 20000))))))`;

interface Outputs {
  sent: string[];
  logs: string[];
}

function outputs(): Outputs & { sink: { send(s: number, b: Uint8Array, seq: number): void; log(t: string, seq: number): void } } {
  const o: Outputs = { sent: [], logs: [] };
  return {
    ...o,
    sink: {
      send: (session, bytes, seq) => o.sent.push(`${seq}:${session}:${Buffer.from(bytes).toString('hex')}`),
      log: (text, seq) => o.logs.push(`${seq}:${text}`),
    },
  };
}

async function record(text: string, world: ScriptedWorld, opts: { slice?: bigint; checkpoint?: bigint } = {}) {
  const module = new WebAssembly.Module(instrument(await wat(text)));
  const sink = new MemorySink();
  const out = outputs();
  const guest = new GuestCore({
    module, mode: 'record', world, sink, outputs: out.sink,
    ...(opts.slice ? { sliceInstructions: opts.slice } : {}),
    ...(opts.checkpoint ? { checkpointInstructions: opts.checkpoint } : {}),
  });
  const result = guest.run();
  return { module, entries: sink.entries, result, out };
}

function replay(module: WebAssembly.Module, entries: readonly LogEntry[]) {
  const out = outputs();
  const source = new ArraySource(entries);
  const guest = new GuestCore({ module, mode: 'replay', source, outputs: out.sink });
  const result = guest.run();
  return { result, out, consumed: source.consumed };
}

describe('record then replay', () => {
  it('the echo guest replays with the same outputs, icount and state hash', async () => {
    const world = new ScriptedWorld(42, [message(1, 'hello'), message(2, 'world'), message(1, '!')]);
    const rec = await record(ECHO, world);
    expect(rec.result.exit).toBe('returned');
    expect(rec.out.sent.length).toBe(6);
    expect(rec.entries.at(-1)!.kind).toBe(EntryKind.END);
    const rep = replay(rec.module, rec.entries);
    expect(rep.result.exit).toBe('returned');
    expect(rep.out.sent).toEqual(rec.out.sent);
    expect(rep.out.logs).toEqual([]); // debug text is the primary's only
    expect(rep.result.icount).toBe(rec.result.icount);
    expect(Buffer.from(rep.result.stateHash)).toEqual(Buffer.from(rec.result.stateHash));
    expect(rep.consumed).toBe(rec.entries.length);
  });

  it('a changed clock value changes the replayed output but not the path', async () => {
    const rec = await record(ECHO, new ScriptedWorld(1, [message(1, 'a')]));
    const entries = rec.entries.map((e) => (e.kind === EntryKind.CLOCK_NOW ? { ...e, payload: (e.payload as bigint) + 1n } : e)) as LogEntry[];
    // the SEND digest no longer matches what the guest now says: caught as divergence at that SEND
    const error = catchError(() => replay(rec.module, entries));
    expect(error).toBeInstanceOf(DivergenceError);
    const firstSecondSend = rec.entries.filter((e) => e.kind === EntryKind.SEND)[1]!;
    expect((error as DivergenceError).seq).toBe(firstSecondSend.seq);
  });

  it('every single-entry change of kind or icount is caught, naming that seq', async () => {
    const rec = await record(ECHO, new ScriptedWorld(3, [message(5, 'xy')]));
    for (let i = 0; i < rec.entries.length; i++) {
      for (const change of ['icount', 'kind'] as const) {
        const entries = rec.entries.slice();
        const e = entries[i]!;
        entries[i] = (change === 'icount' ? { ...e, icount: e.icount + 1n } : { ...e, kind: e.kind === EntryKind.CPU_ID ? EntryKind.SEED : EntryKind.CPU_ID }) as LogEntry;
        const error = catchError(() => replay(rec.module, entries));
        expect(error, `${change} of seq ${e.seq}`).toBeInstanceOf(DivergenceError);
        expect((error as DivergenceError).seq).toBe(e.seq);
        expect((error as Error).message).toMatch(new RegExp(`seq ${e.seq}\\b`));
      }
    }
  });

  it('a truncated log replays up to its end and says so', async () => {
    const rec = await record(ECHO, new ScriptedWorld(9, [message(1, 'one'), message(1, 'two')]));
    const cut = Math.floor(rec.entries.length / 2);
    const rep = replay(rec.module, rec.entries.slice(0, cut));
    expect(rep.result.exit).toBe('log-ended');
    expect(rep.result.lastSeq).toBe(cut);
    expect(rep.out.sent).toEqual(rec.out.sent.filter((s) => Number(s.split(':')[0]) <= cut));
  });
});

describe('going live at the end of a replay', () => {
  /** The clock_mono value in the echo guest's second reply to the i-th message (bytes 8..16 of 28). */
  const monoOf = (sent: string): bigint => Buffer.from(sent.split(':')[2]!, 'hex').readBigInt64LE(8);

  it('clock_mono resumes from the last logged value, not from the new host\'s clock (backwards or far ahead)', async () => {
    const rec = await record(ECHO, new ScriptedWorld(11, [message(1, 'a'), message(1, 'b')]));
    // The backup has the log up to the second message's RECV (not included): it replays the first reply.
    const cut = rec.entries.findIndex((e, i) => e.kind === EntryKind.RECV && i > 0);
    const lastLogged = monoOf(rec.out.sent[1]!);
    for (const hostMono of [5n, lastLogged * 1000n]) {
      let t = hostMono;
      const base = new ScriptedWorld(12, [message(1, 'c')]);
      const world = Object.assign(Object.create(base) as ScriptedWorld, { clockMono: () => (t += 7n) });
      const out = outputs();
      const sink = new MemorySink(cut + 1);
      const guest = new GuestCore({ module: rec.module, mode: 'replay', source: new ArraySource(rec.entries.slice(0, cut)), world, sink, outputs: out.sink, atLogEnd: 'go-live' });
      const result = guest.run();
      expect(result.exit).toBe('returned');
      expect(monoOf(out.sent[1]!)).toBe(lastLogged); // replayed
      const live = monoOf(out.sent[3]!); // recorded after going live
      expect(live, `host clock at ${hostMono}`).toBeGreaterThanOrEqual(lastLogged);
      expect(live - lastLogged, `host clock at ${hostMono}: no jump`).toBeLessThan(1000n);
      // and what the live guest recorded is the value it saw
      expect(sink.entries.find((e) => e.kind === EntryKind.CLOCK_MONO)!.payload).toBe(live);
    }
  });
});

describe('interrupts at exact instruction counts', () => {
  it('random interrupt schedules and slices replay at identical icounts and states (property)', async () => {
    const module = new WebAssembly.Module(instrument(await wat(TICKER)));
    const seed = propertySeed('interrupt schedules');
    let sawInterrupts = 0;
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 0, max: 400 }), { maxLength: 30 }), fc.integer({ min: 7, max: 5000 }), (at, slice) => {
        const sink = new MemorySink();
        const recorder = new GuestCore({ module, mode: 'record', world: new ScriptedWorld(1, [], new Set(at)), sink, sliceInstructions: BigInt(slice) });
        const rec = recorder.run();
        const interrupts = sink.entries.filter((e) => e.kind === EntryKind.INTERRUPT);
        sawInterrupts += interrupts.length;
        const rep = replay(module, sink.entries);
        expect(rep.result.icount).toBe(rec.icount);
        expect(Buffer.from(rep.result.stateHash).toString('hex')).toBe(Buffer.from(rec.stateHash).toString('hex'));
        // the same schedule without interrupts ends in another state (unless none fired)
        if (interrupts.length > 0) {
          const plain = new GuestCore({ module, mode: 'record', world: new ScriptedWorld(1), sink: new MemorySink(), sliceInstructions: BigInt(slice) }).run();
          expect(Buffer.from(plain.stateHash).toString('hex')).not.toBe(Buffer.from(rec.stateHash).toString('hex'));
        }
      }),
      { seed, numRuns: 60 },
    );
    expect(sawInterrupts).toBeGreaterThan(0);
  });

  it('an interrupt moved by one check point is caught', async () => {
    const module = new WebAssembly.Module(instrument(await wat(TICKER)));
    const sink = new MemorySink();
    new GuestCore({ module, mode: 'record', world: new ScriptedWorld(1, [], new Set([3])), sink, sliceInstructions: 1000n }).run();
    const i = sink.entries.findIndex((e) => e.kind === EntryKind.INTERRUPT);
    const entries = sink.entries.slice();
    entries[i] = { ...entries[i]!, icount: entries[i]!.icount + 1n } as LogEntry;
    const error = catchError(() => replay(module, entries));
    expect(error).toBeInstanceOf(DivergenceError);
    expect((error as DivergenceError).seq).toBe(i + 1);
  });
});

describe('checkpoints', () => {
  it('record writes state hashes every N instructions and replay verifies them', async () => {
    const rec = await record(TICKER, new ScriptedWorld(1), { slice: 5000n, checkpoint: 50_000n });
    const checkpoints = rec.entries.filter((e) => e.kind === EntryKind.CHECKPOINT);
    expect(checkpoints.length).toBeGreaterThan(3);
    expect(replay(rec.module, rec.entries).result.exit).toBe('returned');
    const entries = rec.entries.slice();
    const k = entries.indexOf(checkpoints[1]!);
    const forged = new Uint8Array(checkpoints[1]!.payload as Uint8Array);
    forged[0]! ^= 1;
    entries[k] = { ...checkpoints[1]!, payload: forged } as LogEntry;
    const error = catchError(() => replay(rec.module, entries));
    expect(error).toBeInstanceOf(DivergenceError);
    expect((error as Error).message).toMatch(/state hash/);
    expect((error as DivergenceError).seq).toBe(k + 1);
  });
});

describe('admission', () => {
  it('a module importing something unknown is refused before it runs', async () => {
    const module = new WebAssembly.Module(instrument(await wat(`(module (import "env" "getenv" (func (param i32))) (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32))) (memory (export "memory") 1) (func (export "_start")))`)));
    const error = catchError(() => new GuestCore({ module, mode: 'record', world: new ScriptedWorld(1), sink: new MemorySink() }));
    expect(error).toBeInstanceOf(AdmissionError);
    expect((error as Error).message).toMatch(/env\.getenv/);
    expect((error as Error).message).toMatch(/wasi_snapshot_preview1\.fd_write/);
  });

  it('an ABI import with the wrong signature is refused, naming both types', async () => {
    const module = new WebAssembly.Module(instrument(await wat(`(module (import "ft" "clock_now" (func (result i32))) (memory (export "memory") 1) (func (export "_start")))`)));
    const error = catchError(() => new GuestCore({ module, mode: 'record', world: new ScriptedWorld(1), sink: new MemorySink() }));
    expect(error).toBeInstanceOf(AdmissionError);
    expect((error as Error).message).toMatch(/ft\.clock_now with type \(-> i32\), the ABI's is \(-> i64\)/);
  });

  it('a module with a start section is refused: it would run before ftwasm could record it', async () => {
    const module = new WebAssembly.Module(instrument(await wat(`(module (memory (export "memory") 1) (func $s) (start $s) (func (export "_start")))`)));
    const error = catchError(() => new GuestCore({ module, mode: 'record', world: new ScriptedWorld(1), sink: new MemorySink() }));
    expect(error).toBeInstanceOf(AdmissionError);
    expect((error as Error).message).toMatch(/start section/);
  });

  it('an import the embedder declares deterministic is admitted and used', async () => {
    const module = new WebAssembly.Module(instrument(await wat(`(module (import "math" "twice" (func $t (param i32) (result i32))) (memory (export "memory") 1) (global $g (export "g") (mut i32) (i32.const 0)) (func (export "_start") (global.set $g (call $t (i32.const 21)))))`)));
    const guest = new GuestCore({ module, mode: 'record', world: new ScriptedWorld(1), sink: new MemorySink(), deterministicImports: { math: { twice: (x: number) => 2 * x } } });
    guest.run();
    expect((guest.exports.g as WebAssembly.Global).value).toBe(42);
  });
});

function catchError(f: () => unknown): unknown {
  try {
    f();
  } catch (error) {
    return error;
  }
  return undefined;
}

describe('recv with a buffer too small', () => {
  it('returns -needed, keeps the message queued, and the kv guest grows its buffer; replay agrees', async () => {
    const { readFileSync } = await import('node:fs');
    const module = new WebAssembly.Module(instrument(readFileSync(new URL('../../build/guest/kv.wasm', import.meta.url))));
    const big = `SET big ${'x'.repeat(20_000)}`;
    const sink = new MemorySink();
    const out = outputs();
    const rec = new GuestCore({ module, mode: 'record', world: new ScriptedWorld(2, [message(1, big), message(1, 'GET big')]), sink, outputs: out.sink }).run();
    const codes = sink.entries.filter((e) => e.kind === EntryKind.RECV && typeof e.payload === 'number').map((e) => e.payload);
    expect(codes).toContain(-(4 + big.length));
    expect(rec.exit).toBe('returned');
    const rep = replay(module, sink.entries);
    expect(rep.out.sent).toEqual(out.sent);
    expect(rep.result.icount).toBe(rec.icount);
  });
});

describe('divergence messages', () => {
  it('name the seq, both kinds and icounts, and the guest function when the engine shows it', async () => {
    const rec = await record(ECHO, new ScriptedWorld(4, [message(1, 'x')]));
    const entries = rec.entries.slice();
    const i = entries.findIndex((e) => e.kind === EntryKind.CLOCK_MONO);
    entries[i] = { ...entries[i]!, icount: entries[i]!.icount + 3n } as LogEntry;
    const error = catchError(() => replay(rec.module, entries)) as DivergenceError;
    expect(error).toBeInstanceOf(DivergenceError);
    expect(error.message).toMatch(new RegExp(`seq ${i + 1}: expected CLOCK_MONO at icount ${entries[i]!.icount}, got CLOCK_MONO at icount ${rec.entries[i]!.icount}`));
    expect(error.message).toMatch(/in guest function \S+/);
  });
});

describe('limits of one call (docs/ABI.md)', () => {
  // _start: send(1, 0, $len) then random_fill(0, $rnd), each length read from memory the test sets first.
  const LIMITS = `(module
    (import "ft" "send" (func $send (param i32 i32 i32)))
    (import "ft" "random_fill" (func $fill (param i32 i32)))
    (memory (export "memory") 32)
    (global $len (export "len") (mut i32) (i32.const 0))
    (global $rnd (export "rnd") (mut i32) (i32.const 0))
    (func (export "_start")
      (call $send (i32.const 1) (i32.const 0) (global.get $len))
      (call $fill (i32.const 0) (global.get $rnd))))`;

  async function run(len: number, rnd: number, messageBytesMax?: number) {
    const module = new WebAssembly.Module(instrument(await wat(LIMITS)));
    const out = outputs();
    const guest = new GuestCore({ module, mode: 'record', world: new ScriptedWorld(1), sink: new MemorySink(), outputs: out.sink, ...(messageBytesMax !== undefined ? { messageBytesMax } : {}) });
    (guest.exports.len as WebAssembly.Global).value = len;
    (guest.exports.rnd as WebAssembly.Global).value = rnd;
    return { result: guest.run(), sent: out.sent.length };
  }

  it('a send up to MESSAGE_BYTES_MAX and a random_fill up to RANDOM_FILL_BYTES_MAX go through; one byte more traps, naming the call and the limit', async () => {
    expect(MESSAGE_BYTES_MAX).toBe(1_047_552);
    const ok = await run(MESSAGE_BYTES_MAX, RANDOM_FILL_BYTES_MAX);
    expect(ok.result.exit).toBe('returned');
    expect(ok.sent).toBe(1);
    const send = await run(MESSAGE_BYTES_MAX + 1, 0);
    expect(send.result.exit).toBe('trap');
    expect(send.result.trap?.message).toMatch(new RegExp(`send of ${MESSAGE_BYTES_MAX + 1} bytes \\(limit ${MESSAGE_BYTES_MAX}\\)`));
    expect(send.sent).toBe(0);
    const fill = await run(0, RANDOM_FILL_BYTES_MAX + 1);
    expect(fill.result.trap?.message).toMatch(/random_fill of 65537 bytes \(limit 65536\)/);
  });

  it('a host with a lower message limit (its client service takes smaller payloads) traps a send above it', async () => {
    const low = await run(1001, 0, 1000);
    expect(low.result.trap?.message).toMatch(/send of 1001 bytes \(limit 1000\)/);
    expect((await run(1000, 0, 1000)).result.exit).toBe('returned');
    await expect(run(0, 0, 32 << 20)).rejects.toThrow(/messageBytesMax must be an integer in 0\.\.16777216/);
  });
});
