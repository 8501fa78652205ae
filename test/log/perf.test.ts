// Throughput and size of the log for clock entries. Prints figures; asserts only correctness, never time.
// bench/log.mjs measures the same outside vitest. For the full-size run here:
//   FTW_LOG_PERF_ENTRIES=10000000 npx vitest run test/log/perf.test.ts
import { expect, test } from 'vitest';
import { EntryKind, FrameReader, FrameWriter, type LogEntry } from '../../host/log/index.ts';
import { rng } from '../net/support.ts';

const ENTRIES = Number(process.env.FTW_LOG_PERF_ENTRIES ?? 1_000_000);
const ICOUNT0 = 1_000n;
const NS0 = 1_700_000_000_000_000_000n;

const seconds = (t: bigint) => Number(process.hrtime.bigint() - t) / 1e9;

/** Appends `n` clock entries with realistic deltas, making each bigint as a caller would. */
function encode(n: number, icountDeltas: Uint16Array, clockDeltas: Uint16Array, onFrame: (f: Uint8Array) => void): number {
  const writer = new FrameWriter({ on_frame: onFrame });
  let icount = ICOUNT0;
  let ns = NS0;
  const t = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    icount += BigInt(icountDeltas[i]!);
    ns += BigInt(clockDeltas[i]!);
    writer.appendClock(EntryKind.CLOCK_NOW, icount, ns);
  }
  writer.flush();
  return seconds(t);
}

test('clock entries: encode/decode rates and bytes per entry are printed, and the stream round-trips', () => {
  const random = rng(42);
  const icountDeltas = new Uint16Array(ENTRIES);
  const clockDeltas = new Uint16Array(ENTRIES);
  for (let i = 0; i < ENTRIES; i++) {
    icountDeltas[i] = 50 + Math.floor(random() * 4951);
    clockDeltas[i] = 100 + Math.floor(random() * 9901);
  }
  encode(Math.min(ENTRIES, 200_000), icountDeltas, clockDeltas, () => {}); // warm-up

  const frames: Uint8Array[] = [];
  let bytes = 0;
  const encodeS = encode(ENTRIES, icountDeltas, clockDeltas, (f) => {
    frames.push(f);
    bytes += f.length;
  });

  const reader = new FrameReader();
  let decoded = 0;
  let last: LogEntry | undefined;
  const t = process.hrtime.bigint();
  for (const f of frames) {
    reader.push(f);
    const frame = reader.next();
    if (frame === 'incomplete') throw new Error('a whole frame did not decode');
    decoded += frame.count;
    last = frame.entries[frame.count - 1];
  }
  const decodeS = seconds(t);

  let icount = ICOUNT0;
  let ns = NS0;
  for (let i = 0; i < ENTRIES; i++) {
    icount += BigInt(icountDeltas[i]!);
    ns += BigInt(clockDeltas[i]!);
  }
  expect(decoded).toBe(ENTRIES);
  expect(last).toEqual({ seq: ENTRIES, kind: EntryKind.CLOCK_NOW, icount, payload: ns });
  console.log(
    [
      `[log perf] ${ENTRIES} CLOCK_NOW entries, icount delta 50-5000, clock delta 100-10000 ns (under vitest; see bench/log.mjs)`,
      `  encode: ${(ENTRIES / encodeS / 1e6).toFixed(2)} M entries/s (${encodeS.toFixed(2)} s)`,
      `  decode: ${(ENTRIES / decodeS / 1e6).toFixed(2)} M entries/s (${decodeS.toFixed(2)} s)`,
      `  size:   ${(bytes / ENTRIES).toFixed(3)} bytes per entry including frame headers (${frames.length} frames)`,
    ].join('\n'),
  );
});
