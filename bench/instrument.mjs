// Benchmark of the fuel meter: how much slower an instrumented guest runs than the plain one, next to the
// existing JS tool wasm-metering (ewasm), and how fast `instrument` itself is. Every ratio compares runs
// made next to each other in one process, the variants of a guest interleaved so that drift hits them alike;
// each guest is measured in several fresh processes (--child) and their rounds are pooled. Times are CPU
// time of the process, so other load on the machine inflates them less than wall time (kept beside them).
//
//   node --expose-gc bench/instrument.mjs [--quick]
//
// Prints a table, writes everything to bench/results/instrument.json and a README table fragment to
// bench/results/instrument.md.
import { instrument } from 'ftwasm';
import { machineFacts, median, writeResults } from './common.mjs';
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, basename } from 'node:path';
import os from 'node:os';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

const require = createRequire(import.meta.url);
const { meterWASM } = require('wasm-metering');

const root = new URL('..', import.meta.url).pathname;
const quick = process.argv.includes('--quick');

// Limits of the run. Warm-up rounds let V8 tier every variant up to TurboFan (a wasm function that is
// running does not switch tiers; the next call does), then every round times each variant once.
const WARMUP_ROUNDS = quick ? 1 : 2;
// Each guest is measured in PROCESSES fresh processes (V8 places and compiles code anew in each, which moves
// a tight loop's speed by several percent either way), SAMPLE_ROUNDS rounds each; rounds are pooled.
// Five: with three, one guest's per-process ratios spread from 1.01 to 1.13 (nbody, 2026-11-27).
const PROCESSES = quick ? 1 : Number(process.env.BENCH_PROCESSES ?? 5);
// ...and within a process, COPIES separately compiled copies of each variant (the same module with a custom
// section naming the copy, so V8 compiles and places it anew), used in turn from round to round: placement
// luck is averaged inside a process too. wasm-metering, ~10x slower and far from the figures, gets one.
const COPIES = quick ? 1 : 3;
const SAMPLE_ROUNDS = quick ? 3 : 7;
// wasm-metering runs ~10x slower; it takes part in the first rounds only.
const METERED_SAMPLE_ROUNDS = 2;
// Instrumenting a small guest takes well under a millisecond: time batches for at least this long.
const INSTRUMENT_BATCH_MS = quick ? 100 : 400;
const INSTRUMENT_SAMPLES = quick ? 3 : 7;
const LARGE_MODULE_BYTES = 1 << 20;
const LARGE_SAMPLES = quick ? 5 : 15;

// 'unversioned': ftwasm with versionLoops off (no check-free copies of counted loops), to show what they buy.
const VARIANTS = ['plain', 'ftwasm', 'unversioned', 'metering'];

// ---------------------------------------------------------------------------------------------- helpers

function geomean(values) {
  return Math.exp(values.reduce((a, v) => a + Math.log(v), 0) / values.length);
}

function collectGarbage() {
  if (typeof globalThis.gc === 'function') globalThis.gc();
}

/** (slowdown - 1) of wasm-metering over that of ftwasm; Infinity when ftwasm has no overhead at all. */
function overheadRatio(meteringSlowdown, ftwasmSlowdown) {
  return ftwasmSlowdown > 1 ? (meteringSlowdown - 1) / (ftwasmSlowdown - 1) : Infinity;
}

// JSON has no BigInt or Infinity: write them as strings.
function jsonValue(_key, value) {
  if (typeof value === 'bigint') return value.toString();
  if (typeof value === 'number' && !Number.isFinite(value)) return String(value);
  return value;
}

function sameChecksum(a, b) {
  return typeof a === 'number' && typeof b === 'number' ? Object.is(a, b) : a === b;
}

const pct = (ratio) => `${ratio >= 1 ? '+' : ''}${((ratio - 1) * 100).toFixed(1)}%`;
const fixed = (v, d = 2) => (Number.isFinite(v) ? v.toFixed(d) : v === Infinity ? '∞' : String(v));

function table(headers, rows) {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
  const line = (cells) => cells.map((c, i) => (i === 0 ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i]))).join('  ');
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

// ---------------------------------------------------------------------------------------------- guests

/** Every bench guest: guest/bench/<name>.ts built to build/guest/<name>.wasm. */
function benchGuests() {
  const dir = join(root, 'guest/bench');
  const names = readdirSync(dir)
    .filter((f) => f.endsWith('.ts') && !f.startsWith('_') && !f.endsWith('.d.ts'))
    .map((f) => basename(f, '.ts'))
    .sort();
  return names.map((name) => {
    const path = join(root, 'build/guest', `${name}.wasm`);
    if (!existsSync(path)) throw new Error(`${path} is missing: run \`npm run build\` first`);
    return { name, bytes: new Uint8Array(readFileSync(path)) };
  });
}

/** `bytes` with a custom section `ftwasm-bench-copy-<k>` appended: other bytes, so V8 compiles them anew. */
function withCopyTag(bytes, k) {
  const name = new TextEncoder().encode(`ftwasm-bench-copy-${k}`);
  const out = new Uint8Array(bytes.length + 3 + name.length);
  out.set(bytes, 0);
  out.set([0, name.length + 1, name.length], bytes.length);
  out.set(name, bytes.length + 3);
  return out;
}

/** COPIES instances per variant (one for wasm-metering), with the counters each one reports. */
async function instantiateVariants(bytes) {
  const counters = { gas: 0, exhausted: 0 };
  const imports = {
    env: {
      abort(_message, _file, line, column) {
        throw new Error(`guest aborted at ${line}:${column}`);
      },
    },
    ftwasm: {
      fuel_exhausted() {
        counters.exhausted++;
        throw new Error('fuel exhausted: the bench gives 2^63-1 and should never run out');
      },
    },
    metering: {
      usegas(gas) {
        counters.gas += gas;
      },
    },
  };
  const modules = {
    plain: bytes,
    ftwasm: instrument(bytes),
    unversioned: instrument(bytes, { versionLoops: false }),
    metering: new Uint8Array(meterWASM(Buffer.from(bytes), {})),
  };
  const instances = {};
  for (const v of VARIANTS) {
    instances[v] = [];
    for (let k = 0; k < (v === 'metering' ? 1 : COPIES); k++) {
      instances[v].push((await WebAssembly.instantiate(withCopyTag(modules[v], k), imports)).instance);
    }
  }
  return { modules, instances, counters };
}

/** Runs `run()` of one variant once; returns time and checksum, plus its instruction count or gas. */
function runOnce(variant, instance, counters) {
  collectGarbage();
  const fuel = instance.exports.ftwasm_fuel;
  const metered = variant === 'ftwasm' || variant === 'unversioned';
  const fuelBefore = metered ? fuel.value : 0n;
  const gasBefore = counters.gas;
  // CPU time of this process, not wall time: on a shared 2-core machine a run that is descheduled for a
  // while would otherwise count the wait (wall time is kept beside it). Garbage was collected just before,
  // and tier-up finished in the warm-up rounds, so V8's background threads are idle here.
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const checksum = instance.exports.run();
  const wallMs = performance.now() - t0;
  const cpu = process.cpuUsage(c0);
  const sample = { ms: (cpu.user + cpu.system) / 1000, wallMs, checksum };
  if (metered) sample.icount = fuelBefore - fuel.value; // the same with and without loop copies, checked below
  if (variant === 'metering') sample.gas = counters.gas - gasBefore;
  return sample;
}

/** One process's share: the rounds of one guest, raw (runs in a child process, see main). */
async function measureGuest(guest) {
  const { modules, instances, counters } = await instantiateVariants(guest.bytes);
  // One entry per timed round: { plain, ftwasm, metering? } in ms. Ratios are taken within a round (the
  // runs being compared sat next to each other in time), then the median over rounds.
  const rounds = [];
  const wallRounds = [];
  const checksums = [];
  const counts = { icount: new Set(), gas: new Set() };
  for (let round = 0; round < WARMUP_ROUNDS + SAMPLE_ROUNDS; round++) {
    const warm = round >= WARMUP_ROUNDS;
    const meteredRound = round < WARMUP_ROUNDS + METERED_SAMPLE_ROUNDS;
    const order = VARIANTS.filter((v) => v !== 'metering' || meteredRound);
    const times = {};
    const walls = {};
    // Rotate the order each round so no variant always runs first (or right after the slow one).
    for (let i = 0; i < order.length; i++) {
      const variant = order[(i + round) % order.length];
      const copies = instances[variant];
      // Warm-up rounds run every copy (each must tier up); timed rounds take the copies in turn.
      if (!warm) for (let k = 1; k < copies.length; k++) runOnce(variant, copies[k], counters);
      const s = runOnce(variant, copies[warm ? (round - WARMUP_ROUNDS) % copies.length : 0], counters);
      checksums.push({ variant, checksum: s.checksum });
      if (s.icount !== undefined) counts.icount.add(s.icount.toString());
      if (s.gas !== undefined) counts.gas.add(s.gas);
      times[variant] = s.ms;
      walls[variant] = s.wallMs;
    }
    if (warm) {
      rounds.push(times);
      wallRounds.push(walls);
    }
    // Give background TurboFan compilation a moment after the first calls of every variant.
    else await sleep(50);
    process.stderr.write('.');
  }
  const reference = checksums[0].checksum;
  if (checksums.some((c) => !sameChecksum(c.checksum, reference))) {
    throw new Error(`${guest.name}: checksums differ: ${JSON.stringify(checksums.map((c) => [c.variant, String(c.checksum)]))}`);
  }
  if (counts.icount.size !== 1) throw new Error(`${guest.name}: icount differs between runs: ${[...counts.icount]}`);
  if (counts.gas.size !== 1) throw new Error(`${guest.name}: wasm-metering gas differs between runs: ${[...counts.gas]}`);
  return {
    rounds,
    wallRounds,
    checksum: String(reference),
    icount: [...counts.icount][0],
    gas: [...counts.gas][0],
    bytes: { plain: modules.plain.length, ftwasm: modules.ftwasm.length, unversioned: modules.unversioned.length, metering: modules.metering.length },
  };
}

/** Runs measureGuest for `name` in a fresh `node --expose-gc` process and returns what it printed. */
function measureInChild(name) {
  const args = ['--expose-gc', fileURLToPath(import.meta.url), '--child', name, ...(quick ? ['--quick'] : [])];
  const r = spawnSync(process.execPath, args, { encoding: 'utf8', timeout: 15 * 60_000, stdio: ['ignore', 'pipe', 'inherit'] });
  if (r.status !== 0) throw new Error(`bench child for ${name} failed (status ${r.status}, signal ${r.signal})`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1));
}

/** Pools the rounds of every process that measured `name`, checks they agree, and takes the figures. */
function summarizeGuest(name, parts) {
  for (const p of parts) {
    if (p.checksum !== parts[0].checksum || p.icount !== parts[0].icount || p.gas !== parts[0].gas) {
      throw new Error(`${name}: processes disagree: ${JSON.stringify(parts.map((q) => [q.checksum, q.icount, q.gas]))}`);
    }
  }
  const rounds = parts.flatMap((p) => p.rounds);
  const wallRounds = parts.flatMap((p) => p.wallRounds);
  const reference = parts[0].checksum;
  const modules = { plain: { length: parts[0].bytes.plain }, ftwasm: { length: parts[0].bytes.ftwasm }, metering: { length: parts[0].bytes.metering } };
  const counts = { icount: new Set([parts[0].icount]), gas: new Set([parts[0].gas]) };
  const guest = { name };
  const samples = Object.fromEntries(VARIANTS.map((v) => [v, rounds.filter((r) => v in r).map((r) => r[v])]));
  const medianMs = Object.fromEntries(VARIANTS.map((v) => [v, median(samples[v])]));
  const pairedRatio = (v) => median(rounds.filter((r) => v in r).map((r) => r[v] / r.plain));
  const perProcess = parts.map((p) => median(p.rounds.map((r) => r.ftwasm / r.plain)));
  const icount = BigInt([...counts.icount][0]);
  return {
    name: guest.name,
    checksum: String(reference),
    checksumsEqual: true,
    samplesMs: samples,
    medianMs,
    // Median over rounds of (variant / plain in the same round): the figure reported.
    ratio: { ftwasm: pairedRatio('ftwasm'), unversioned: pairedRatio('unversioned'), metering: pairedRatio('metering') },
    // The ftwasm ratio of each process alone: how far one process's code placement moves it.
    processRatios: perProcess,
    // The same on wall-clock time (the figures above are CPU time): they differ when the machine is busy.
    wallRatio: {
      ftwasm: median(wallRounds.map((r) => r.ftwasm / r.plain)),
      metering: median(wallRounds.filter((r) => 'metering' in r).map((r) => r.metering / r.plain)),
    },
    // Median variant time / median plain time: a cross-check.
    ratioOfMedians: { ftwasm: medianMs.ftwasm / medianMs.plain, metering: medianMs.metering / medianMs.plain },
    // wasm-metering overhead / ftwasm overhead for this guest; Infinity when ftwasm ran as fast or faster.
    overheadRatio: overheadRatio(pairedRatio('metering'), pairedRatio('ftwasm')),
    icount: icount.toString(),
    instructionsPerNs: Number(icount) / (medianMs.plain * 1e6),
    meteringGas: [...counts.gas][0],
    bytes: {
      plain: modules.plain.length,
      ftwasm: modules.ftwasm.length,
      metering: modules.metering.length,
    },
    growth: {
      ftwasm: modules.ftwasm.length / modules.plain.length - 1,
      metering: modules.metering.length / modules.plain.length - 1,
    },
  };
}

// ---------------------------------------------------------------------------------------------- instrument speed

/** Median time of `fn` per call, timing batches of calls that each last at least INSTRUMENT_BATCH_MS. */
function timePerCall(fn) {
  for (let i = 0; i < 20; i++) fn(); // warm-up: let V8 optimise the instrumenter
  let perBatch = 1;
  for (;;) {
    const t0 = performance.now();
    for (let i = 0; i < perBatch; i++) fn();
    if (performance.now() - t0 >= INSTRUMENT_BATCH_MS / 4) break;
    perBatch *= 2;
  }
  perBatch *= 4;
  const perCall = [];
  for (let s = 0; s < INSTRUMENT_SAMPLES; s++) {
    collectGarbage();
    const t0 = cpuMs();
    for (let i = 0; i < perBatch; i++) fn();
    perCall.push((cpuMs() - t0) / perBatch);
  }
  return median(perCall);
}

function instrumentSpeed(guest) {
  const msPerCall = timePerCall(() => instrument(guest.bytes));
  return { name: guest.name, bytes: guest.bytes.length, msPerCall, mbPerS: guest.bytes.length / 1e6 / (msPerCall / 1e3) };
}

// ---------------------------------------------------------------------------------------------- a ~1 MiB module

// A synthetic MVP-only module (so wasm-metering can read it too), written directly as bytes: functions of
// about 1 KiB made of loops, if/else, br_table switches, memory loads and stores, and calls to the function
// before them, with immediates from a fixed PRNG so LEB widths vary. It is validated, never run.
function u32leb(n) {
  const out = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

function s32leb(n) {
  const out = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

function section(id, content) {
  return [id, ...u32leb(content.length), ...content];
}

function vector(items) {
  return [...u32leb(items.length), ...items.flat()];
}

function syntheticBody(index, next) {
  // Params: 0, 1 (i32). Locals: 2, 3, 4 (i32).
  const c = () => s32leb((next() | 0) >> (next() & 31));
  const code = [0x01, 0x03, 0x7f]; // one declaration: 3 x i32
  while (code.length < 1000) {
    // counter = 0; loop { t = (a + counter) ^ k; mem[counter*4 + 16] = t;
    //   if (t & 1) b = f(index-1)(b, t) else b = rotl(b, 7);
    //   switch (t & 3) { ... b += k } ; counter++; br_if counter < (a & 15) }
    code.push(0x41, 0x00, 0x21, 0x02); // i32.const 0; local.set 2
    code.push(0x03, 0x40); // loop
    code.push(0x20, 0x00, 0x20, 0x02, 0x6a, 0x41, ...c(), 0x73, 0x21, 0x03); // t = (a + counter) ^ k
    code.push(0x20, 0x02, 0x41, 0x04, 0x6c, 0x20, 0x03, 0x36, 0x02, 0x10); // i32.store align=2 offset=16
    code.push(0x20, 0x03, 0x41, 0x01, 0x71, 0x04, 0x40); // if (t & 1)
    if (index > 0) code.push(0x20, 0x01, 0x20, 0x03, 0x10, ...u32leb(index - 1), 0x21, 0x01);
    else code.push(0x20, 0x01, 0x20, 0x03, 0x6b, 0x21, 0x01);
    code.push(0x05); // else
    code.push(0x20, 0x01, 0x41, 0x07, 0x77, 0x21, 0x01); // b = rotl(b, 7)
    code.push(0x0b); // end
    code.push(0x02, 0x40, 0x02, 0x40, 0x02, 0x40); // block block block
    code.push(0x20, 0x03, 0x41, 0x03, 0x71, 0x0e, 0x03, 0x00, 0x01, 0x02, 0x02); // br_table 0 1 2 2
    code.push(0x0b, 0x20, 0x01, 0x41, ...c(), 0x6a, 0x21, 0x01); // end; b += k
    code.push(0x0b, 0x20, 0x01, 0x20, 0x02, 0x28, 0x02, 0x00, 0x73, 0x21, 0x01); // end; b ^= mem[counter]
    code.push(0x0b); // end
    code.push(0x20, 0x02, 0x41, 0x01, 0x6a, 0x22, 0x02); // counter = counter + 1 (tee)
    code.push(0x20, 0x00, 0x41, 0x0f, 0x71, 0x49, 0x0d, 0x00); // br_if 0 (counter < a & 15)
    code.push(0x0b); // end loop
  }
  code.push(0x20, 0x01, 0x0b); // return b
  return [...u32leb(code.length), ...code];
}

/** Returns { bytes, functions }: a valid module of at least `targetBytes` bytes. */
function syntheticModule(targetBytes) {
  let seed = 0x2545f491;
  const next = () => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return seed >>> 0;
  };
  const bodies = [];
  let size = 0;
  while (size < targetBytes - 64) {
    const body = syntheticBody(bodies.length, next);
    bodies.push(body);
    size += body.length;
  }
  const n = bodies.length;
  const bytes = [
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, vector([[0x60, 0x02, 0x7f, 0x7f, 0x01, 0x7f]])), // type 0: (i32, i32) -> i32
    ...section(3, vector(Array.from({ length: n }, () => [0x00]))),
    ...section(5, vector([[0x00, 0x01]])), // memory min 1
    ...section(7, vector([[0x04, ...Buffer.from('main'), 0x00, ...u32leb(n - 1)], [0x06, ...Buffer.from('memory'), 0x02, 0x00]])),
    ...section(10, vector(bodies)),
  ];
  const out = new Uint8Array(bytes);
  if (!WebAssembly.validate(out)) throw new Error('synthetic module does not validate');
  return { bytes: out, functions: n };
}

/** CPU milliseconds this process has used (user + system): unlike wall time, not inflated by other load. */
function cpuMs() {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

function largeModule() {
  const { bytes, functions } = syntheticModule(LARGE_MODULE_BYTES);
  // The very first call pays for V8 compiling the instrumenter: that is what a CLI run sees.
  let t0 = cpuMs();
  const first = instrument(bytes);
  const coldMs = cpuMs() - t0;
  if (!WebAssembly.validate(first)) throw new Error('instrumented synthetic module does not validate');
  const warmMs = [];
  const wallMs = [];
  // No forced GC between samples: a full gc() here makes V8 re-warm the instrumenter (samples doubled to
  // 100-180 ms), which no library user sees; the garbage of one call is collected as it would be in use.
  for (let i = 0; i < LARGE_SAMPLES; i++) {
    t0 = cpuMs();
    const w0 = performance.now();
    instrument(bytes);
    warmMs.push(cpuMs() - t0);
    wallMs.push(performance.now() - w0);
  }
  // wasm-metering on the same module, once: it goes through a JSON form and takes seconds.
  collectGarbage();
  t0 = performance.now();
  const metered = meterWASM(Buffer.from(bytes), {});
  const meteringMs = performance.now() - t0;
  const meteredValid = WebAssembly.validate(new Uint8Array(metered));
  const warm = median(warmMs);
  return {
    source: 'synthetic: generated as raw bytes by bench/instrument.mjs (MVP opcodes only; loops, if/else, br_table, loads/stores, calls)',
    bytes: bytes.length,
    functions,
    instrumentedBytes: first.length,
    growth: first.length / bytes.length - 1,
    coldMs,
    medianMs: warm,
    minMs: Math.min(...warmMs),
    samplesMs: warmMs,
    wallMedianMs: median(wallMs),
    mbPerS: bytes.length / 1e6 / (warm / 1e3),
    meteringMs,
    meteringValid: meteredValid,
    meteringGrowth: metered.length / bytes.length - 1,
  };
}

// ---------------------------------------------------------------------------------------------- main

async function main() {
  const machine = machineFacts();
  if (!machine.exposeGc) process.stderr.write('note: run with node --expose-gc for steadier samples\n');
  const guests = benchGuests();

  const parts = Object.fromEntries(guests.map((g) => [g.name, []]));
  for (let p = 0; p < PROCESSES; p++) {
    for (const guest of guests) {
      process.stderr.write(`${guest.name} (process ${p + 1}/${PROCESSES}) `);
      parts[guest.name].push(measureInChild(guest.name));
      process.stderr.write('\n');
    }
  }
  const runtime = guests.map((g) => summarizeGuest(g.name, parts[g.name]));
  const speed = guests.map(instrumentSpeed);
  const large = largeModule();
  machine.loadAverageEnd = +os.loadavg()[0].toFixed(2);

  const ftwasmRatio = median(runtime.map((r) => r.ratio.ftwasm));
  const meteringRatio = median(runtime.map((r) => r.ratio.metering));
  const ftwasmOverhead = ftwasmRatio - 1;
  const meteringOverhead = meteringRatio - 1;
  const summary = {
    medianSlowdown: { ftwasm: ftwasmRatio, unversioned: median(runtime.map((r) => r.ratio.unversioned)), metering: meteringRatio },
    geomeanSlowdown: { ftwasm: geomean(runtime.map((r) => r.ratio.ftwasm)), metering: geomean(runtime.map((r) => r.ratio.metering)) },
    worst: runtime.reduce((w, r) => (r.ratio.ftwasm > w.ratio ? { guest: r.name, ratio: r.ratio.ftwasm } : w), { guest: '', ratio: 0 }),
    // Overhead = slowdown - 1. If ftwasm's median overhead is at or below zero (noise), the ratio is infinite.
    overheadRatio: overheadRatio(meteringRatio, ftwasmRatio),
    instrumentMedianMbPerS: median(speed.map((s) => s.mbPerS)),
    largeModuleMs: large.medianMs,
    targets: {
      medianSlowdownAtMost5pct: ftwasmRatio <= 1.05,
      medianSlowdownAtMost3pct: ftwasmRatio <= 1.03,
      atLeast2xLessOverheadThanMetering: ftwasmOverhead <= 0 || meteringOverhead / ftwasmOverhead >= 2,
      instrument1MiBUnder50ms: large.medianMs < 50,
    },
  };

  const results = {
    benchmark: 'instrument',
    machine,
    config: {
      processes: PROCESSES, copiesPerProcess: COPIES, warmupRounds: WARMUP_ROUNDS, sampleRoundsPerProcess: SAMPLE_ROUNDS, meteredSampleRounds: METERED_SAMPLE_ROUNDS,
      instrumentBatchMs: INSTRUMENT_BATCH_MS, largeSamples: LARGE_SAMPLES, quick,
      ftwasmFuel: '2^63-1 (default)', meteringOptions: 'meterWASM(bytes, {}): default cost table, meterType i32, import metering.usegas',
      guestFlags: 'asc --target release (-O3, incremental runtime) --disable sign-extension,nontrapping-f2i,bulk-memory,mutable-globals',
    },
    runtime,
    instrumentSpeed: speed,
    largeModule: large,
    summary,
  };
  const written = writeResults('instrument', results, markdown(results), jsonValue);
  print(results, written.json, written.markdown);
}

/** The README fragment: one row per guest and the summary line. */
function markdown(results) {
  const { machine, runtime, largeModule: large, summary } = results;
  const lines = [
    '| guest | plain (CPU ms) | ftwasm (CPU ms) | ftwasm slowdown | without loop copies | wasm-metering (CPU ms) | wasm-metering slowdown | size growth ftwasm / wasm-metering |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...runtime.map((r) =>
      `| ${r.name} | ${fixed(r.medianMs.plain, 0)} | ${fixed(r.medianMs.ftwasm, 0)} | ${pct(r.ratio.ftwasm)} | ${pct(r.ratio.unversioned)} | ` +
      `${fixed(r.medianMs.metering, 0)} | ${fixed(r.ratio.metering)}x | ${pct(1 + r.growth.ftwasm)} / ${pct(1 + r.growth.metering)} |`),
    `| **median** | | | **${pct(summary.medianSlowdown.ftwasm)}** | ${pct(summary.medianSlowdown.unversioned)} | | **${fixed(summary.medianSlowdown.metering)}x** | |`,
    '',
    `Overhead ratio (wasm-metering overhead / ftwasm overhead, medians): ${fixed(summary.overheadRatio, 1)}x. ` +
    `Instrumenting a ${(large.bytes / 2 ** 20).toFixed(2)} MiB synthetic module: ${fixed(large.medianMs, 1)} ms of CPU ` +
    `(${fixed(large.mbPerS, 1)} MB/s; wasm-metering: ${fixed(large.meteringMs, 0)} ms).`,
    `Times are CPU time of the bench process (wall time is in the JSON). Measured by \`npm run bench\` on ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB, Node ${machine.node}, ${machine.date.slice(0, 10)}.`,
    '',
  ];
  return lines.join('\n');
}

function print(results, jsonPath, markdownPath) {
  const { machine, runtime, instrumentSpeed: speed, largeModule: large, summary } = results;
  const out = [];
  out.push(`ftwasm instrument bench — ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB, node ${machine.node}, ${machine.date}, ` +
    `load average ${machine.loadAverageStart} -> ${machine.loadAverageEnd}`);
  out.push('');
  out.push('Run time (median ms; ratio = median over rounds of variant/plain in the same round)');
  out.push(table(
    ['guest', 'plain', 'ftwasm', 'ratio', '(of medians)', 'no loop copies', 'wasm-metering', 'ratio', 'overhead ratio', 'icount', 'instr/ns', 'checksum'],
    runtime.map((r) => [
      r.name, fixed(r.medianMs.plain, 1), fixed(r.medianMs.ftwasm, 1), pct(r.ratio.ftwasm), pct(r.ratioOfMedians.ftwasm), pct(r.ratio.unversioned),
      fixed(r.medianMs.metering, 1), `${fixed(r.ratio.metering)}x`, `${fixed(r.overheadRatio, 1)}x`, r.icount, fixed(r.instructionsPerNs), `${r.checksum} ok`,
    ]),
  ));
  out.push('');
  out.push(`median slowdown: ftwasm ${pct(summary.medianSlowdown.ftwasm)} (without loop copies ${pct(summary.medianSlowdown.unversioned)}), wasm-metering ${fixed(summary.medianSlowdown.metering)}x ` +
    `(overhead ratio ${fixed(summary.overheadRatio, 1)}x); geomean ftwasm ${pct(summary.geomeanSlowdown.ftwasm)}, ` +
    `wasm-metering ${fixed(summary.geomeanSlowdown.metering)}x; worst ftwasm: ${summary.worst.guest} ${pct(summary.worst.ratio)}`);
  out.push('');
  out.push('Instrumenting (ftwasm, warm)');
  out.push(table(
    ['guest', 'bytes', 'ms/module', 'MB/s', 'growth ftwasm', 'growth wasm-metering'],
    speed.map((s, i) => [
      s.name, s.bytes, fixed(s.msPerCall, 3), fixed(s.mbPerS, 1),
      pct(1 + runtime[i].growth.ftwasm), pct(1 + runtime[i].growth.metering),
    ]),
  ));
  out.push('');
  out.push(`~1 MiB module (${large.source}): ${large.bytes} bytes, ${large.functions} functions`);
  out.push(`  ftwasm: median ${fixed(large.medianMs, 1)} ms (min ${fixed(large.minMs, 1)}, first call ${fixed(large.coldMs, 1)}), ` +
    `${fixed(large.mbPerS, 1)} MB/s, growth ${pct(1 + large.growth)}`);
  out.push(`  wasm-metering: ${fixed(large.meteringMs, 0)} ms (one run), growth ${pct(1 + large.meteringGrowth)}, valid ${large.meteringValid}`);
  out.push('');
  const t = summary.targets;
  const mark = (ok) => (ok ? 'met' : 'MISSED');
  out.push(`targets: median slowdown <= 5% ${mark(t.medianSlowdownAtMost5pct)} (<= 3% ${mark(t.medianSlowdownAtMost3pct)}); ` +
    `>= 2x less overhead than wasm-metering ${mark(t.atLeast2xLessOverheadThanMetering)}; 1 MiB < 50 ms ${mark(t.instrument1MiBUnder50ms)}`);
  out.push(`results: ${jsonPath}, ${markdownPath}`);
  console.log(out.join('\n'));
}

const child = process.argv.indexOf('--child');
if (child >= 0) {
  const guest = benchGuests().find((g) => g.name === process.argv[child + 1]);
  if (!guest) throw new Error(`no bench guest ${process.argv[child + 1]}`);
  process.stdout.write(`${JSON.stringify(await measureGuest(guest), jsonValue)}\n`);
} else {
  await main();
}
