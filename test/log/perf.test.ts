// Throughput and size of the log for clock entries. Prints figures; asserts only correctness, never time.
// FTW_LOG_PERF_ENTRIES=10000000 npx vitest run test/log/perf.test.ts  for the full-size measurement.
import { expect, test } from 'vitest';
import { EntryKind, FrameReader, FrameWriter, type DecodedFrame } from '../../host/log/index.ts';

const ENTRIES = Number(process.env.FTW_LOG_PERF_ENTRIES ?? 1_000_000);
const ROUND = 1_000_000;

/** A deterministic xorshift, so that the figures are comparable between runs. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 4294967296;
  };
}

test('clock entries: encode/decode throughput and bytes per entry are printed, the stream round-trips', () => {
  const random = rng(42);
  const round = Math.min(ROUND, ENTRIES);
  const icounts: bigint[] = new Array(round);
  const clocks: bigint[] = new Array(round);
  let icount = 1_000n;
  let ns = 1_700_000_000_000_000_000n;
  for (let i = 0; i < round; i++) {
    icount += BigInt(50 + Math.floor(random() * 4951));
    ns += BigInt(100 + Math.floor(random() * 9901));
    icounts[i] = icount;
    clocks[i] = ns;
  }
  const span = icount;
  const rounds = Math.ceil(ENTRIES / round);

  // Encode: one writer for the whole run; each round replays the precomputed values shifted by one
  // add per entry, as a caller holding bigints from its fuel meter and clock would.
  const frames: Uint8Array[] = [];
  let frameBytes = 0;
  const writer = new FrameWriter({
    on_frame: (f) => {
      frameBytes += f.length;
      if (frames.length < 4096) frames.push(f);
    },
  });
  let written = 0;
  const t0 = process.hrtime.bigint();
  for (let r = 0; r < rounds && written < ENTRIES; r++) {
    const shift = span * BigInt(r);
    const nsShift = 10_000_000_000n * BigInt(r);
    for (let i = 0; i < round && written < ENTRIES; i++, written++) {
      writer.appendClock(EntryKind.CLOCK_NOW, icounts[i]! + shift, clocks[i]! + nsShift);
    }
  }
  writer.flush();
  const encodeS = Number(process.hrtime.bigint() - t0) / 1e9;

  // Encode with values precomputed (no caller-side bigint arithmetic): one round.
  const writer2 = new FrameWriter({ on_frame: () => {} });
  const t1 = process.hrtime.bigint();
  for (let i = 0; i < round; i++) writer2.appendClock(EntryKind.CLOCK_NOW, icounts[i]!, clocks[i]!);
  writer2.flush();
  const encodePureS = Number(process.hrtime.bigint() - t1) / 1e9;

  // Decode the first frames kept (up to 4096 frames = 16.7M entries), repeated up to ENTRIES.
  let decoded = 0;
  let last: DecodedFrame | undefined;
  const t2 = process.hrtime.bigint();
  const reader = new FrameReader();
  for (const f of frames) {
    reader.push(f);
    const frame = reader.next();
    if (frame === 'incomplete') throw new Error('frame did not decode');
    decoded += frame.count;
    last = frame;
  }
  const decodeS = Number(process.hrtime.bigint() - t2) / 1e9;

  expect(decoded).toBe(Math.min(ENTRIES, frames.length * 4096));
  expect(last!.entries[last!.entries.length - 1]!.seq).toBe(decoded);
  const perEntry = frameBytes / ENTRIES;
  console.log(
    [
      `[log perf] ${ENTRIES} CLOCK_NOW entries (icount delta 50-5000, clock delta 100-10000 ns)`,
      `  encode (caller adds bigints): ${(ENTRIES / encodeS / 1e6).toFixed(2)} M entries/s (${encodeS.toFixed(2)} s)`,
      `  encode (values precomputed):  ${(round / encodePureS / 1e6).toFixed(2)} M entries/s`,
      `  decode (FrameReader):         ${(decoded / decodeS / 1e6).toFixed(2)} M entries/s (${decoded} entries)`,
      `  size: ${perEntry.toFixed(3)} bytes per entry including frame headers (${frameBytes} bytes)`,
    ].join('\n'),
  );
});
