// The guest in a worker thread: blocking recv waits without spinning, and an endless guest never blocks
// the host's event loop.
import { describe, expect, it } from 'vitest';
import { instrument } from '../../host/instrument/index.ts';
import { GuestRunner, FrameSource, GuestCore, THROTTLE_PAUSE_US_MAX } from '../../host/vm/index.ts';
import { FrameReader, EntryKind } from '../../host/log/index.ts';
import { wat } from '../support/wat.ts';
import { message } from '../support/memlog.ts';

const SPIN = `(module (memory (export "memory") 1) (func (export "_start") (loop $l (br $l))))`;

// recv with a 30 ms timeout, counting timeouts in memory, until a message arrives; then echoes it.
/** A module text with the recv and send imports and one page of exported memory, then `body`. */
const withRecvSend = (body: string): string => `(module
  (import "ft" "recv" (func $recv (param i32 i32 i32) (result i32)))
  (import "ft" "send" (func $send (param i32 i32 i32)))
  (memory (export "memory") 1)
  ${body})`;

const WAITER = withRecvSend(`
  (global $timeouts (export "timeouts") (mut i32) (i32.const 0))
  (func (export "_start") (local $n i32)
    (block $got (loop $wait
      (local.set $n (call $recv (i32.const 0) (i32.const 64) (i32.const 30)))
      (br_if $got (i32.gt_s (local.get $n) (i32.const 0)))
      (global.set $timeouts (i32.add (global.get $timeouts) (i32.const 1)))
      (br $wait)))
    (call $send (i32.load (i32.const 0)) (i32.const 4) (i32.sub (local.get $n) (i32.const 4))))`);

describe('GuestRunner', () => {
  it('group commit: outputs of queued requests share frames, each after the frame that logs it, in order; the replay agrees', async () => {
    // Echoes every message until input closes. All N requests are queued before the worker has started, so
    // the guest always finds more input waiting: its outputs go out in batches, after one log flush each.
    const ECHO = withRecvSend(`
      (func (export "_start") (local $n i32)
        (block $done (loop $next
          (local.set $n (call $recv (i32.const 0) (i32.const 64) (i32.const -1)))
          (br_if $done (i32.lt_s (local.get $n) (i32.const 0)))
          (call $send (i32.load (i32.const 0)) (i32.const 4) (i32.sub (local.get $n) (i32.const 4)))
          (br $next))))`);
    const N = 200;
    const module = new WebAssembly.Module(instrument(await wat(ECHO)));
    const runner = new GuestRunner({ module, mode: 'record', streamFrames: true });
    const frames: Uint8Array[] = [];
    let loggedTo = 0; // highest seq of the frames received so far
    const sent: { text: string; seq: number; logged: number }[] = [];
    runner.on('frame', (bytes, _first, last) => {
      frames.push(bytes);
      loggedTo = last;
    });
    runner.on('send', (_session, bytes, seq) => sent.push({ text: Buffer.from(bytes).toString(), seq, logged: loggedTo }));
    for (let i = 0; i < N; i++) expect(runner.send(message(1 + (i % 3), `m${i}`))).toBe(true);
    runner.closeInput();
    const result = await runner.done;
    expect(sent.map((o) => o.text)).toEqual(Array.from({ length: N }, (_, i) => `m${i}`));
    for (const o of sent) expect(o.seq).toBeLessThanOrEqual(o.logged); // its entry was in a frame before it
    // One flush per batch instead of one per output: far fewer frames than outputs.
    expect(frames.length).toBeLessThan(N / 4);
    const replayed = new GuestCore({ module, mode: 'replay', source: new FrameSource(frames) }).run();
    expect(replayed.icount).toBe(result.icount);
    expect(Buffer.from(replayed.stateHash)).toEqual(Buffer.from(result.stateHash));
  });

  it('group commit: a held output goes as soon as a recv finds no more input, even if the guest then computes without end', async () => {
    // Two requests are queued: the answer to the first is held (more input waits), the guest takes the second,
    // polls an empty ring, then spins. Its slices are far too long for a check-in to flush in time: only the
    // empty recv can.
    const POLL_THEN_SPIN = withRecvSend(`
      (func (export "_start") (local $n i32)
        (local.set $n (call $recv (i32.const 0) (i32.const 64) (i32.const -1)))
        (call $send (i32.load (i32.const 0)) (i32.const 4) (i32.sub (local.get $n) (i32.const 4)))
        (drop (call $recv (i32.const 100) (i32.const 64) (i32.const 0)))
        (drop (call $recv (i32.const 100) (i32.const 64) (i32.const 0)))
        (loop $spin (br $spin)))`);
    const module = new WebAssembly.Module(instrument(await wat(POLL_THEN_SPIN)));
    const runner = new GuestRunner({ module, mode: 'record', streamFrames: true, sliceInstructions: 10n ** 15n });
    const done = runner.done.catch(() => undefined);
    const sent: string[] = [];
    runner.on('send', (_s, bytes) => sent.push(Buffer.from(bytes).toString()));
    expect(runner.send(message(1, 'first'))).toBe(true);
    expect(runner.send(message(1, 'second'))).toBe(true);
    const deadline = Date.now() + 5_000;
    while (sent.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    await runner.terminate();
    await done;
    expect(sent).toEqual(['first']);
  });

  it('an endless guest leaves the event loop free and is stopped by terminate', async () => {
    const runner = new GuestRunner({ module: new WebAssembly.Module(instrument(await wat(SPIN))), mode: 'record', streamFrames: true });
    const ticks = await new Promise<number>((resolve) => {
      let n = 0;
      const timer = setInterval(() => {
        if (++n === 10) {
          clearInterval(timer);
          resolve(n);
        }
      }, 5);
    });
    expect(ticks).toBe(10);
    const done = runner.done.then(() => 'finished', (e: Error) => e.message);
    await runner.terminate();
    expect(await done).toMatch(/exited/);
  });

  it('recv blocks with its timeout, then takes the message; the recording replays', async () => {
    const module = new WebAssembly.Module(instrument(await wat(WAITER)));
    const runner = new GuestRunner({ module, mode: 'record', streamFrames: true });
    const frames: Uint8Array[] = [];
    const sent: string[] = [];
    runner.on('frame', (bytes) => frames.push(bytes));
    runner.on('send', (_s, bytes) => sent.push(Buffer.from(bytes).toString()));
    // Each timeout is a RECV entry with result 0, and the log is flushed before every blocking wait: count
    // them as the frames arrive. About one per 30 ms waited, not thousands (no spinning through recv).
    const reader = new FrameReader();
    let timeouts = 0;
    let firstAt = 0;
    runner.on('frame', (bytes) => {
      reader.push(bytes);
      for (let d = reader.next(); d !== 'incomplete'; d = reader.next()) {
        for (const e of d.entries) if (e.kind === EntryKind.RECV && e.payload === 0) timeouts++;
      }
      if (timeouts > 0 && firstAt === 0) firstAt = Date.now();
    });
    const deadline = Date.now() + 10_000;
    while (timeouts < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    expect(timeouts).toBeGreaterThanOrEqual(3);
    expect(runner.send(message(3, 'late'))).toBe(true);
    const result = await runner.done;
    expect(sent).toEqual(['late']);
    // one timeout ended before the first became visible, and one may be under way: 2 of slack
    expect(timeouts).toBeLessThanOrEqual(Math.ceil((Date.now() - firstAt) / 30) + 2);
    const replayed = new GuestCore({ module, mode: 'replay', source: new FrameSource(frames) }).run();
    expect(replayed.icount).toBe(result.icount);
    expect(Buffer.from(replayed.stateHash)).toEqual(Buffer.from(result.stateHash));
    expect((replayed as unknown as { exit: string }).exit).toBe('returned');
  });

  it('replay in the worker from pushed frames ends at the end of the log', async () => {
    const module = new WebAssembly.Module(instrument(await wat(WAITER)));
    const recorder = new GuestRunner({ module, mode: 'record', streamFrames: true });
    const frames: Uint8Array[] = [];
    recorder.on('frame', (bytes) => frames.push(bytes));
    recorder.send(message(1, 'now'));
    const recorded = await recorder.done;
    const replayer = new GuestRunner({ module, mode: 'replay' });
    const sent: string[] = [];
    replayer.on('send', (_s, bytes) => sent.push(Buffer.from(bytes).toString()));
    // pushed in pieces cut anywhere: the worker's reader reassembles frames
    const all = Buffer.concat(frames);
    for (let at = 0; at < all.length; at += 7) expect(replayer.pushLog(all.subarray(at, at + 7))).toBe(true);
    replayer.endLog();
    const replayed = await replayer.done;
    expect(sent).toEqual(['now']);
    expect(replayed.icount).toBe(recorded.icount);
    expect(Buffer.from(replayed.stateHash)).toEqual(Buffer.from(recorded.stateHash));
    // replay progress is visible to the host: every entry of the log was taken
    expect(replayer.replayedSeq).toBe(replayed.lastSeq);
    expect(replayed.lastSeq).toBeGreaterThan(0);
  });

  it('throttle: the guest pauses at every check-in until the throttle is lifted, and computes the same', async () => {
    // About 20 M instructions: tens of ms unthrottled; throttled to 50 ms per 100,000 instructions it
    // would need ~10 s. The wait below is 20x the unthrottled run of this same test, at least 1 s.
    const BUSY = `(module (memory (export "memory") 1) (global $acc (mut i32) (i32.const 0))
      (func (export "_start") (local $i i32)
        (loop $l (global.set $acc (i32.add (global.get $acc) (i32.mul (local.get $i) (local.get $i))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $l (i32.lt_u (local.get $i) (i32.const 2000000))))))`;
    const module = new WebAssembly.Module(instrument(await wat(BUSY)));
    const t0 = Date.now();
    const free = await new GuestRunner({ module, mode: 'record', streamFrames: true }).done;
    const freeMs = Date.now() - t0;
    const runner = new GuestRunner({ module, mode: 'record', streamFrames: true, sliceInstructions: 1_000_000n });
    runner.throttle(THROTTLE_PAUSE_US_MAX, 100_000n);
    expect(runner.throttlePauseUs).toBe(THROTTLE_PAUSE_US_MAX);
    let finished = false;
    const done = runner.done.then((r) => ((finished = true), r));
    await new Promise((r) => setTimeout(r, Math.max(1_000, 20 * freeMs)));
    expect(finished, `throttled guest finished although the unthrottled one took ${freeMs} ms`).toBe(false);
    runner.throttle(0);
    expect(runner.throttlePauseUs).toBe(0);
    const result = await done;
    expect(result.icount).toBe(free.icount);
    expect(Buffer.from(result.stateHash)).toEqual(Buffer.from(free.stateHash));
  });

  it('a busy main thread makes the worker wait: outputs in flight never exceed inFlightMax, none is lost', async () => {
    const CHATTY = `(module (import "ft" "send" (func $send (param i32 i32 i32))) (memory (export "memory") 1)
      (func (export "_start") (local $i i32)
        (loop $l (i32.store (i32.const 0) (local.get $i)) (call $send (i32.const 1) (i32.const 0) (i32.const 4))
          (local.set $i (i32.add (local.get $i) (i32.const 1))) (br_if $l (i32.lt_u (local.get $i) (i32.const 1000))))))`;
    const runner = new GuestRunner({ module: new WebAssembly.Module(instrument(await wat(CHATTY))), mode: 'record', streamFrames: true, inFlightMax: 4 });
    const seen: number[] = [];
    let inFlightWhileBusy = -1;
    runner.on('send', (_s, bytes) => {
      if (seen.length === 0) {
        const until = Date.now() + 150; // the main thread is busy: the worker must stop and wait
        while (Date.now() < until);
        inFlightWhileBusy = runner.inFlightNow;
      }
      seen.push(new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0, true));
    });
    await runner.done;
    expect(inFlightWhileBusy).toBeGreaterThan(0);
    expect(inFlightWhileBusy).toBeLessThanOrEqual(4);
    expect(seen).toEqual(Array.from({ length: 1000 }, (_, i) => i));
  });
});
