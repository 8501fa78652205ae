// Snapshots at a recv (host/vm/snapshot.ts, docs/SNAPSHOT.md): taking one does not change what the guest
// records, and a fresh instance restored from it, fed the log after it, ends in the same state.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { instrument, prepareUnwind, InstrumentError } from '../../host/instrument/index.ts';
import { EntryKind } from '../../host/log/index.ts';
import type { LogEntry } from '../../host/log/index.ts';
import { GuestCore } from '../../host/vm/core.ts';
import { VmStateError } from '../../host/vm/errors.ts';
import { ArraySource } from '../../host/vm/sources.ts';
import { decodeSnapshot, encodeSnapshot } from '../../host/vm/snapshot.ts';
import type { GuestSnapshot } from '../../host/vm/snapshot.ts';
import { MemorySink, ScriptedWorld, message } from '../support/memlog.ts';
import { propertySeed } from '../support/fuel.ts';
import { wat } from '../support/wat.ts';

const kvBytes = readFileSync(new URL('../../build/guest/kv.wasm', import.meta.url));
const kv = new WebAssembly.Module(instrument(await prepareUnwind(kvBytes)));

/** A ScriptedWorld that asks for a snapshot when `at` messages have been taken (and again at each of `more`). */
class SnapshotWorld extends ScriptedWorld {
  private taken = 0;
  constructor(seed: number, messages: Uint8Array[], private readonly at: ReadonlySet<number>, interruptAt?: ReadonlySet<number>) {
    super(seed, messages, interruptAt);
  }
  snapshotWanted(): boolean {
    return this.at.has(this.taken);
  }
  override recv(cap: number): Uint8Array | number {
    const got = super.recv(cap);
    if (typeof got !== 'number') this.taken++;
    return got;
  }
  done(at: number): void {
    (this.at as Set<number>).delete(at);
  }
}

function record(module: WebAssembly.Module, seed: number, script: Uint8Array[], at: number[] = []) {
  const world = new SnapshotWorld(seed, script.slice(), new Set(at));
  const sink = new MemorySink();
  const snapshots: GuestSnapshot[] = [];
  const sent: string[] = [];
  const guest = new GuestCore({
    module, mode: 'record', world, sink,
    outputs: { send: (s, b, seq) => sent.push(`${seq}:${s}:${Buffer.from(b).toString()}`), log: () => {} },
    onSnapshot: (s) => {
      snapshots.push(s);
      world.done(at.find((n) => (world as unknown as { taken: number }).taken === n)!);
    },
    sliceInstructions: 5_000n,
  });
  const result = guest.run();
  return { entries: sink.entries, result, snapshots, sent };
}

function replayFrom(module: WebAssembly.Module, snapshot: GuestSnapshot | undefined, entries: readonly LogEntry[]) {
  const sent: string[] = [];
  const rest = snapshot ? entries.filter((e) => e.seq > snapshot.lastSeq) : entries;
  const guest = new GuestCore({
    module, mode: 'replay', source: new ArraySource(rest),
    outputs: { send: (s, b, seq) => sent.push(`${seq}:${s}:${Buffer.from(b).toString()}`), log: () => {} },
    ...(snapshot ? { restore: snapshot } : {}),
  });
  return { result: guest.run(), sent };
}

const roundTrip = (s: GuestSnapshot): GuestSnapshot => decodeSnapshot(Buffer.concat(encodeSnapshot(s)));
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

const command = fc.oneof(
  fc.tuple(fc.integer({ min: 0, max: 7 }), fc.integer({ min: 0, max: 999 })).map(([k, v]) => `SET k${k} v${v}`),
  fc.integer({ min: 0, max: 7 }).map((k) => `GET k${k}`),
  fc.integer({ min: 0, max: 7 }).map((k) => `INCR n${k}`),
  fc.integer({ min: 0, max: 7 }).map((k) => `DEL k${k}`),
);

describe('snapshots of the kv guest at a recv', () => {
  it('change nothing the guest records, and a restored guest replays the rest of the log to the same end', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 1, max: 4 }), command), { minLength: 1, maxLength: 40 }),
        fc.uniqueArray(fc.integer({ min: 0, max: 40 }), { minLength: 1, maxLength: 3 }),
        fc.integer({ min: 1, max: 2 ** 31 - 1 }),
        (requests, points, seed) => {
          const script = requests.map(([session, text]) => message(session, text));
          const at = points.filter((n) => n <= script.length);
          fc.pre(at.length > 0);
          const plain = record(kv, seed, script);
          const taken = record(kv, seed, script, at);
          expect(taken.snapshots.length).toBe(at.length);
          // The recording with snapshots is the recording without: every entry, output and the end state.
          expect(taken.entries).toEqual(plain.entries);
          expect(taken.sent).toEqual(plain.sent);
          expect(hex(taken.result.stateHash)).toBe(hex(plain.result.stateHash));
          expect(taken.result.icount).toBe(plain.result.icount);
          for (const snapshot of taken.snapshots) {
            const restored = replayFrom(kv, roundTrip(snapshot), taken.entries);
            expect(restored.result.exit).toBe('returned');
            expect(restored.result.icount).toBe(plain.result.icount);
            expect(hex(restored.result.stateHash)).toBe(hex(plain.result.stateHash));
            // The outputs after the snapshot, with their seqs.
            expect(restored.sent).toEqual(plain.sent.filter((s) => Number(s.split(':')[0]) > snapshot.lastSeq));
          }
        },
      ),
      { numRuns: 40, seed: propertySeed('snapshot-kv') },
    );
  });

  it('a snapshot before any request restores to a guest that serves all of them', () => {
    const script = ['SET a 1', 'INCR a', 'GET a'].map((t) => message(1, t));
    const rec = record(kv, 9, script, [0]);
    expect(rec.snapshots).toHaveLength(1);
    const [snapshot] = rec.snapshots;
    expect(snapshot!.lastSeq).toBeGreaterThan(0); // the guest's start-up entries (seed, ...) come first
    const restored = replayFrom(kv, roundTrip(snapshot!), rec.entries);
    expect(restored.sent.map((s) => s.split(':').slice(2).join(':').trim())).toEqual(['OK', 'VALUE 2', 'VALUE 2']);
    expect(hex(restored.result.stateHash)).toBe(hex(rec.result.stateHash));
  });
});

describe('snapshots of a replaying guest', () => {
  it('taken at recvs of a replay change nothing it replays, and restore to the same end', () => {
    const script = ['SET a 1', 'INCR a', 'SET b 7', 'INCR a', 'GET b', 'DEL a', 'INCR a'].map((t, i) => message(1 + (i % 2), t));
    const rec = record(kv, 5, script);
    // A world that wants a snapshot at the 2nd and 5th recv the replay reaches (replay asks it only that).
    let calls = 0;
    const wanted = new Set([2, 5]);
    const world = Object.assign(new ScriptedWorld(1), { snapshotWanted: () => wanted.delete(++calls) });
    const snapshots: GuestSnapshot[] = [];
    const sent: string[] = [];
    const replaying = new GuestCore({
      module: kv, mode: 'replay', source: new ArraySource(rec.entries), world,
      outputs: { send: (s, b, seq) => sent.push(`${seq}:${s}:${Buffer.from(b).toString()}`), log: () => {} },
      onSnapshot: (s) => snapshots.push(s),
    });
    const result = replaying.run();
    expect(snapshots).toHaveLength(2);
    expect(sent).toEqual(rec.sent);
    expect(hex(result.stateHash)).toBe(hex(rec.result.stateHash));
    for (const snapshot of snapshots) {
      const restored = replayFrom(kv, roundTrip(snapshot), rec.entries);
      expect(hex(restored.result.stateHash)).toBe(hex(rec.result.stateHash));
      expect(restored.sent).toEqual(rec.sent.filter((x) => Number(x.split(':')[0]) > snapshot.lastSeq));
    }
  });
});

describe('snapshots of a guest driven by interrupts', () => {
  it('the ticker guest: snapshots at its recvs between timer interrupts change nothing, and each restores to the same end', async () => {
    const ticker = new WebAssembly.Module(instrument(await prepareUnwind(readFileSync(new URL('../../build/guest/ticker.wasm', import.meta.url)))));
    const script = ['a', 'b', 'c', 'd'].map((t, i) => message(1 + i, t));
    // Interrupts at many check-ins; snapshots at the recvs after the 1st and 3rd message.
    const interrupts = new Set(Array.from({ length: 40 }, (_, i) => 3 + i * 7));
    const run = (at: number[]) => {
      const world = new SnapshotWorld(11, script.slice(), new Set(at), interrupts);
      const sink = new MemorySink();
      const snapshots: GuestSnapshot[] = [];
      const sent: string[] = [];
      const core = new GuestCore({
        module: ticker, mode: 'record', world, sink, sliceInstructions: 20_000n,
        outputs: { send: (s, b, seq) => sent.push(`${seq}:${s}:${Buffer.from(b).toString()}`), log: () => {} },
        onSnapshot: (snap) => {
          snapshots.push(snap);
          world.done(at.find((n) => (world as unknown as { taken: number }).taken === n)!);
        },
      });
      return { result: core.run(), entries: sink.entries, snapshots, sent };
    };
    const plain = run([]);
    const taken = run([1, 3]);
    expect(taken.snapshots).toHaveLength(2);
    expect(taken.entries.filter((e) => e.kind === EntryKind.INTERRUPT).length).toBeGreaterThan(5);
    expect(taken.entries).toEqual(plain.entries);
    expect(hex(taken.result.stateHash)).toBe(hex(plain.result.stateHash));
    for (const snapshot of taken.snapshots) {
      const restored = replayFrom(ticker, roundTrip(snapshot), taken.entries);
      expect(restored.result.exit).toBe('returned');
      expect(hex(restored.result.stateHash)).toBe(hex(plain.result.stateHash));
      expect(restored.sent).toEqual(plain.sent.filter((x) => Number(x.split(':')[0]) > snapshot.lastSeq));
    }
  });
});

describe('snapshots of a hand-written guest with locals live across recv', () => {
  // The count of messages lives in a local of _start and in a global; both must come back.
  const COUNTER = `(module
    (import "ft" "recv" (func $recv (param i32 i32 i32) (result i32)))
    (import "ft" "send" (func $send (param i32 i32 i32)))
    (memory (export "memory") 1)
    (global $g (mut i64) (i64.const 5))
    (func $serve (param $base i32) (result i32) (local $n i32) (local $i i32)
      (loop $next
        (local.set $n (call $recv (i32.const 16) (i32.const 64) (i32.const -1)))
        (if (i32.ge_s (local.get $n) (i32.const 4)) (then
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (global.set $g (i64.mul (global.get $g) (i64.const 3)))
          (i32.store (i32.const 200) (i32.add (local.get $base) (local.get $i)))
          (i64.store (i32.const 204) (global.get $g))
          (call $send (i32.load (i32.const 16)) (i32.const 200) (i32.const 12))
          (br $next))))
      (local.get $i))
    (func (export "_start")
      (i32.store (i32.const 300) (call $serve (i32.const 1000)))))`;

  it('restores locals of two frames and a global', async () => {
    const module = new WebAssembly.Module(instrument(await prepareUnwind(await wat(COUNTER))));
    const script = [1, 2, 3, 4, 5].map((n) => message(n, 'x'));
    const plain = record(module, 1, script);
    const rec = record(module, 1, script, [2, 4]);
    expect(rec.entries).toEqual(plain.entries);
    expect(rec.snapshots).toHaveLength(2);
    for (const snapshot of rec.snapshots) {
      const restored = replayFrom(module, roundTrip(snapshot), rec.entries);
      expect(hex(restored.result.stateHash)).toBe(hex(plain.result.stateHash));
      expect(restored.sent).toEqual(plain.sent.filter((s) => Number(s.split(':')[0]) > snapshot.lastSeq));
    }
  });
});

describe('bad snapshots and modules are named', () => {
  it('a module not prepared for unwinding cannot restore one', () => {
    const rec = record(kv, 3, [message(1, 'SET a 1')], [1]);
    const plainKv = new WebAssembly.Module(instrument(kvBytes));
    expect(() => new GuestCore({ module: plainKv, mode: 'replay', source: new ArraySource([]), restore: rec.snapshots[0]! })).toThrow(/prepareUnwind/);
  });

  it('damaged snapshot bytes are refused with the byte offset', () => {
    const rec = record(kv, 3, [message(1, 'SET a 1')], [1]);
    const bytes = Buffer.concat(encodeSnapshot(rec.snapshots[0]!));
    expect(() => decodeSnapshot(bytes.subarray(0, 20))).toThrow(/truncated header at byte 20/);
    expect(() => decodeSnapshot(bytes.subarray(0, bytes.length - 1))).toThrow(/memory of \d+ bytes runs past the end/);
    const bad = Buffer.from(bytes);
    bad.writeUInt32LE(0, 0);
    expect(() => decodeSnapshot(bad)).toThrow(VmStateError);
    expect(() => decodeSnapshot(bad)).toThrow(/bad magic at byte 0/);
  });

  it('prepareUnwind refuses an instrumented module, one without ft.recv, and garbage', async () => {
    await expect(prepareUnwind(instrument(kvBytes))).rejects.toMatchObject({ code: 'FTW_ALREADY_INSTRUMENTED' });
    const noRecv = await wat('(module (memory (export "memory") 1) (func (export "_start")))');
    await expect(prepareUnwind(noRecv)).rejects.toMatchObject({ code: 'FTW_UNWIND', message: expect.stringMatching(/ft\.recv/) });
    await expect(prepareUnwind(new Uint8Array([0, 97, 115, 109, 9]))).rejects.toBeInstanceOf(InstrumentError);
    await expect(prepareUnwind(await prepareUnwind(kvBytes))).rejects.toMatchObject({ code: 'FTW_UNWIND' });
    // What the meter refuses is refused first, by name (here exception handling), before Binaryen sees it.
    const eh = await wat(`(module (import "ft" "recv" (func $recv (param i32 i32 i32) (result i32))) (tag $e) (memory (export "memory") 1)
      (func (export "_start") (try (do (drop (call $recv (i32.const 0) (i32.const 16) (i32.const 0))) (throw $e)) (catch $e))))`, { exceptions: true });
    await expect(prepareUnwind(eh)).rejects.toMatchObject({ code: 'FTW_UNSUPPORTED' });
  });

  it('the prepared module says so in its meta, and only it', () => {
    expect(new GuestCore({ module: kv, mode: 'replay', source: new ArraySource([]) }).meta.unwind).toBe(true);
    expect(new GuestCore({ module: new WebAssembly.Module(instrument(kvBytes)), mode: 'replay', source: new ArraySource([]) }).meta.unwind).toBeUndefined();
  });
});

describe('GuestRunner.snapshot (worker threads)', () => {
  it('a guest waiting in recv gives a snapshot; a runner restored from it, fed the frames after, ends in the same state', async () => {
    const { GuestRunner } = await import('../../host/vm/runner.ts');
    const recorder = new GuestRunner({ module: kv, mode: 'record', streamFrames: true });
    const frames: Array<{ bytes: Uint8Array; firstSeq: number; lastSeq: number }> = [];
    recorder.on('frame', (bytes, firstSeq, lastSeq) => frames.push({ bytes, firstSeq, lastSeq }));
    const sent: string[] = [];
    recorder.on('send', (session, bytes) => sent.push(`${session}:${Buffer.from(bytes).toString().trim()}`));
    const ask = async (session: number, text: string): Promise<void> => {
      const before = sent.length;
      expect(recorder.send(message(session, text))).toBe(true);
      for (let i = 0; i < 500 && sent.length === before; i++) await new Promise((r) => setTimeout(r, 2));
    };
    await ask(1, 'SET a 10');
    await ask(2, 'INCR a');
    const snapshot = await recorder.snapshot();
    // Every frame up to the snapshot was emitted before it.
    expect(frames.at(-1)?.lastSeq).toBe(snapshot.lastSeq);
    await ask(1, 'INCR a');
    await ask(2, 'GET a');
    expect(sent).toEqual(['1:OK', '2:VALUE 11', '1:VALUE 12', '2:VALUE 12']);
    recorder.closeInput();
    const recorded = await recorder.done;

    const replayer = new GuestRunner({ module: kv, mode: 'replay', restore: roundTrip(snapshot) });
    const replayed: string[] = [];
    replayer.on('send', (session, bytes) => replayed.push(`${session}:${Buffer.from(bytes).toString().trim()}`));
    for (const f of frames.filter((f) => f.firstSeq > snapshot.lastSeq)) expect(replayer.pushLog(f.bytes)).toBe(true);
    replayer.endLog();
    const result = await replayer.done;
    expect(replayed).toEqual(['1:VALUE 12', '2:VALUE 12']);
    expect(result.icount).toBe(recorded.icount);
    expect(hex(result.stateHash)).toBe(hex(recorded.stateHash));
  });

  it('a module not prepared for unwinding refuses to give one', async () => {
    const { GuestRunner } = await import('../../host/vm/runner.ts');
    const runner = new GuestRunner({ module: new WebAssembly.Module(instrument(kvBytes)), mode: 'record' });
    await expect(runner.snapshot()).rejects.toThrow(/prepareUnwind/);
    runner.closeInput();
    await runner.done;
  });
});
