// Record/replay overhead on an import-heavy guest: 10 million imports (clock_now and random_fill), run
// with plain imports, recorded, and replayed, in one process. Prints ns added per recorded import, bytes per
// entry, encode/decode entries/s, and replay time / record time; writes bench/results/replay.json.
//   node bench/replay.mjs [--quick]      (--quick: 1 million imports)
import { writeResults } from './common.mjs';
import os from 'node:os';
import wabtInit from 'wabt';
import { instrument, GuestCore, RealWorld, FrameWriter, FrameReader, FrameSource, SharedRing, createRingBuffer, EntryKind } from 'ftwasm';

const quick = process.argv.includes('--quick');
const IMPORTS = quick ? 1_000_000 : 10_000_000;
const CLOCK_PER_RANDOM = 3; // three clock_now calls, then one random_fill of 8 bytes

const WAT = `(module
  (import "ft" "clock_now" (func $now (result i64)))
  (import "ft" "random_fill" (func $random (param i32 i32)))
  (memory (export "memory") 1)
  (global $acc (export "acc") (mut i64) (i64.const 0))
  (func (export "_start") (local $i i32)
    (loop $l
      (global.set $acc (i64.add (global.get $acc) (call $now)))
      (global.set $acc (i64.xor (global.get $acc) (call $now)))
      (global.set $acc (i64.add (global.get $acc) (call $now)))
      (call $random (i32.const 64) (i32.const 8))
      (global.set $acc (i64.add (global.get $acc) (i64.load (i32.const 64))))
      (local.set $i (i32.add (local.get $i) (i32.const 4)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const ${IMPORTS}))))))`;

const wabt = await wabtInit();
const parsed = wabt.parseWat('imports.wat', WAT);
const plainBytes = new Uint8Array(parsed.toBinary({}).buffer);
const meteredModule = new WebAssembly.Module(instrument(plainBytes));
const plainModule = new WebAssembly.Module(plainBytes);

function world() {
  const input = new SharedRing(createRingBuffer(1024));
  input.close();
  return new RealWorld({ input, cpuId: 1 });
}

function plainRun() {
  const w = world();
  let memory;
  const instance = new WebAssembly.Instance(plainModule, {
    ft: {
      clock_now: () => w.clockNow(),
      random_fill: (ptr, len) => w.randomFill(new Uint8Array(memory.buffer, ptr, len)),
    },
  });
  memory = instance.exports.memory;
  const t0 = process.hrtime.bigint();
  instance.exports._start();
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

function recordRun() {
  const frames = [];
  let frameBytes = 0;
  const sink = new FrameWriter({ on_frame: (f) => { frames.push(f); frameBytes += f.length; } });
  const core = new GuestCore({ module: meteredModule, mode: 'record', world: world(), sink, sliceInstructions: 10_000_000n });
  const t0 = process.hrtime.bigint();
  const result = core.run();
  sink.flush();
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  return { ms, frames, frameBytes, result };
}

// Decoding keeps no entry past its frame (as a backup does), counting kinds as it goes.
function decode(frames) {
  const t0 = process.hrtime.bigint();
  const reader = new FrameReader();
  let entries = 0;
  let clocks = 0;
  for (const f of frames) {
    reader.push(f);
    for (let d = reader.next(); d !== 'incomplete'; d = reader.next()) {
      entries += d.entries.length;
      for (const e of d.entries) if (e.kind === EntryKind.CLOCK_NOW) clocks++;
    }
  }
  return { ms: Number(process.hrtime.bigint() - t0) / 1e6, entries, clocks };
}

// Encoding the same mix through the writer's fast paths, with deltas like the recorded ones; `onlyClock`
// measures the bytes of clock entries alone.
function encode(count, onlyClock = false) {
  let bytes = 0;
  const sink = new FrameWriter({ on_frame: (f) => { bytes += f.length; } });
  const random = new Uint8Array(8);
  let icount = 0;
  let ns = 1_700_000_000_000_000_000n;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < count; i++) {
    icount += 23;
    ns += 61n;
    if (!onlyClock && i % (CLOCK_PER_RANDOM + 1) === CLOCK_PER_RANDOM) sink.appendRandom(icount, random);
    else sink.appendClock(EntryKind.CLOCK_NOW, icount, ns);
  }
  sink.flush();
  return { ms: Number(process.hrtime.bigint() - t0) / 1e6, bytes };
}

// Replay decodes the frames as it goes (as a backup does), so its time includes decoding.
function replayRun(frames) {
  const core = new GuestCore({ module: meteredModule, mode: 'replay', source: new FrameSource(frames) });
  const t0 = process.hrtime.bigint();
  const result = core.run();
  return { ms: Number(process.hrtime.bigint() - t0) / 1e6, result };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const rounds = quick ? 3 : 7;
const plainMs = [];
const recordMs = [];
const replayMs = [];
let last;
plainRun(); // warm-up: tier-up of both modules
recordRun();
for (let i = 0; i < rounds; i++) {
  plainMs.push(plainRun());
  last = recordRun();
  recordMs.push(last.ms);
}
const decoded = decode(last.frames);
for (let i = 0; i < rounds; i++) {
  const r = replayRun(last.frames);
  if (r.result.icount !== last.result.icount) throw new Error('replay icount differs from record');
  if (Buffer.compare(Buffer.from(r.result.stateHash), Buffer.from(last.result.stateHash)) !== 0) throw new Error('replay state differs');
  replayMs.push(r.ms);
}
const entries = decoded.entries;
const encoded = encode(entries);
const clockOnly = encode(decoded.clocks, true);
const results = {
  benchmark: 'replay',
  machine: { cpu: os.cpus()[0]?.model.trim(), cores: os.cpus().length, memoryGiB: +(os.totalmem() / 2 ** 30).toFixed(1), node: process.version, date: new Date().toISOString() },
  imports: IMPORTS,
  entries,
  medianMs: { plain: median(plainMs), record: median(recordMs), replay: median(replayMs) },
  nsAddedPerRecordedImport: ((median(recordMs) - median(plainMs)) * 1e6) / IMPORTS,
  bytesPerEntry: last.frameBytes / entries,
  bytesPerClockEntry: clockOnly.bytes / decoded.clocks,
  encodeEntriesPerS: entries / (encoded.ms / 1e3),
  decodeEntriesPerS: entries / (decoded.ms / 1e3),
  replayOverRecord: median(replayMs) / median(recordMs),
  samplesMs: { plain: plainMs, record: recordMs, replay: replayMs },
};
console.log(`imports: ${IMPORTS.toLocaleString('en-US')} (${CLOCK_PER_RANDOM} clock_now : 1 random_fill of 8 bytes)`);
console.log(`plain ${results.medianMs.plain.toFixed(0)} ms, record ${results.medianMs.record.toFixed(0)} ms, replay ${results.medianMs.replay.toFixed(0)} ms`);
console.log(`ns added per recorded import: ${results.nsAddedPerRecordedImport.toFixed(1)}`);
console.log(`bytes per entry: ${results.bytesPerEntry.toFixed(2)} (clock entries alone: ${results.bytesPerClockEntry.toFixed(2)})`);
console.log(`encode ${(results.encodeEntriesPerS / 1e6).toFixed(2)} M entries/s, decode ${(results.decodeEntriesPerS / 1e6).toFixed(2)} M entries/s`);
console.log(`replay / record time: ${results.replayOverRecord.toFixed(3)}`);
if (!quick) {
  writeResults('replay', results);
}
