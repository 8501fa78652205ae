// Log codec benchmark: CLOCK_NOW entries with realistic deltas (icount +50..5000, clock +100..10000 ns).
// Uses the built package (npm install builds dist/), then prints encode and decode rates and bytes per entry, all measured in this run.
//   node bench/log.mjs [--quick] [--entries=N]      (default 10 million entries, --quick 1 million)
import { rng } from './common.mjs';

const entriesArg = process.argv.find((a) => a.startsWith('--entries='));
const ENTRIES = entriesArg ? Number(entriesArg.slice('--entries='.length)) : process.argv.includes('--quick') ? 1_000_000 : 10_000_000;
if (!Number.isSafeInteger(ENTRIES) || ENTRIES < 1 || ENTRIES > 50_000_000) throw new Error('entries: 1 .. 50000000');

const log = await import('ftwasm');

const random = rng(42);
const icountDeltas = new Uint16Array(ENTRIES);
const clockDeltas = new Uint16Array(ENTRIES);
for (let i = 0; i < ENTRIES; i++) {
  icountDeltas[i] = 50 + Math.floor(random() * 4951);
  clockDeltas[i] = 100 + Math.floor(random() * 9901);
}
const ICOUNT0 = 1_000n;
const NS0 = 1_700_000_000_000_000_000n;
const seconds = (t) => Number(process.hrtime.bigint() - t) / 1e9;

/**
 * Encode with the bigints made up front, a million at a time (timed: the appends only), so this is the cost
 * of the log alone. Chunks, because 20 million live bigints would make every GC slow and measure the GC.
 */
function encodePrecomputed() {
  const CHUNK = 1_000_000;
  const icounts = new Array(CHUNK);
  const clocks = new Array(CHUNK);
  let icount = ICOUNT0;
  let ns = NS0;
  const frames = [];
  let bytes = 0;
  const writer = new log.FrameWriter({
    on_frame: (f) => {
      bytes += f.length;
      frames.push(f);
    },
  });
  let s = 0;
  for (let base = 0; base < ENTRIES; base += CHUNK) {
    const n = Math.min(CHUNK, ENTRIES - base);
    for (let i = 0; i < n; i++) {
      icounts[i] = icount += BigInt(icountDeltas[base + i]);
      clocks[i] = ns += BigInt(clockDeltas[base + i]);
    }
    const t = process.hrtime.bigint();
    for (let i = 0; i < n; i++) writer.appendClock(log.EntryKind.CLOCK_NOW, icounts[i], clocks[i]);
    s += seconds(t);
  }
  const t = process.hrtime.bigint();
  writer.flush();
  s += seconds(t);
  return { s, frames, bytes };
}

/** Encode while making each bigint as a caller would (one add per value): the cost a guest sees. */
function encodeInline() {
  const writer = new log.FrameWriter({ on_frame: () => {} });
  let icount = ICOUNT0;
  let ns = NS0;
  const t = process.hrtime.bigint();
  for (let i = 0; i < ENTRIES; i++) {
    icount += BigInt(icountDeltas[i]);
    ns += BigInt(clockDeltas[i]);
    writer.appendClock(log.EntryKind.CLOCK_NOW, icount, ns);
  }
  writer.flush();
  return { s: seconds(t) };
}

function decode(frames) {
  const reader = new log.FrameReader();
  let entries = 0;
  const t = process.hrtime.bigint();
  for (const f of frames) {
    reader.push(f);
    const frame = reader.next();
    if (frame === 'incomplete') throw new Error('frame did not decode');
    entries += frame.count;
  }
  return { s: seconds(t), entries };
}

const mps = (n, s) => `${(n / s / 1e6).toFixed(2)} M entries/s`;
encodeInline(); // warm-up
const pre = encodePrecomputed();
const inline = encodeInline();
const dec = decode(pre.frames);
if (dec.entries !== ENTRIES) throw new Error(`decoded ${dec.entries} of ${ENTRIES}`);
console.log(`log bench: ${ENTRIES} CLOCK_NOW entries, icount delta 50-5000, clock delta 100-10000 ns, node ${process.version}`);
console.log(`  encode, values made up front:  ${mps(ENTRIES, pre.s)} (${pre.s.toFixed(2)} s)`);
console.log(`  encode, caller adds bigints:   ${mps(ENTRIES, inline.s)} (${inline.s.toFixed(2)} s)`);
console.log(`  decode (FrameReader):          ${mps(ENTRIES, dec.s)} (${dec.s.toFixed(2)} s); decode/encode time ${(dec.s / pre.s).toFixed(2)}`);
console.log(`  size: ${(pre.bytes / ENTRIES).toFixed(3)} bytes per entry including frame headers (${pre.frames.length} frames)`);
