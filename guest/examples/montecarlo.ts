// Estimates pi by sampling points in the unit square with bytes from random_fill. The first message gives
// the sample count as ASCII decimal (empty: SAMPLES_DEFAULT); the answer goes back on its session as
//   PI <estimate> SAMPLES <n> INSIDE <hits>
// or `ERR <reason>`, and the guest exits. Progress is logged every tenth of the way. Every random byte is
// an input the log must carry (8 bytes a sample), so SAMPLES_MAX is kept modest.

import * as ft from "../sdk";

const SAMPLES_DEFAULT: i64 = 1_000_000;
const SAMPLES_MAX: i64 = 10_000_000;
const BATCH_SAMPLES: i32 = 512; // one random_fill of 4 KiB
const BYTES_PER_SAMPLE: i32 = 8;
// Coordinates are 31-bit integers in [0, 2^31): a point is inside when x^2 + y^2 < 2^62, exactly, in u64.
const RADIUS_SQUARED: u64 = 1 << 62;

const batch = new Uint8Array(BATCH_SAMPLES * BYTES_PER_SAMPLE);

/** Counts the points of `samples` (<= BATCH_SAMPLES) fresh samples inside the quarter circle. */
function sampleBatch(samples: i32): i64 {
  ft.randomFill(batch.subarray(0, samples * BYTES_PER_SAMPLE));
  const base = batch.dataStart;
  let inside: i64 = 0;
  for (let i = 0; i < samples; i++) {
    const at = base + <usize>(i * BYTES_PER_SAMPLE);
    const x = <u64>(load<u32>(at) >> 1);
    const y = <u64>(load<u32>(at, 4) >> 1);
    if (x * x + y * y < RADIUS_SQUARED) inside++;
  }
  return inside;
}

/** The sample count a request asks for, or -1 when it is not a count in 1..SAMPLES_MAX. */
function requestedSamples(payload: Uint8Array): i64 {
  let start = 0;
  let end = payload.length;
  while (start < end && unchecked(payload[start]) <= 0x20) start++;
  while (end > start && unchecked(payload[end - 1]) <= 0x20) end--;
  if (start == end) return SAMPLES_DEFAULT;
  const parsed = ft.parseDecimal(payload, start, end);
  if (!parsed.ok || parsed.value < 1 || parsed.value > SAMPLES_MAX) return -1;
  return parsed.value;
}

function estimate(samples: i64): string {
  let inside: i64 = 0;
  let done: i64 = 0;
  let nextReport: i64 = 1;
  while (done < samples) {
    const n = <i32>min<i64>(samples - done, BATCH_SAMPLES);
    inside += sampleBatch(n);
    done += n;
    // Report when done crosses each tenth: done * 10 >= samples * nextReport.
    while (nextReport <= 10 && done * 10 >= samples * nextReport) {
      const progress = done.toString() + "/" + samples.toString();
      ft.log("montecarlo: " + (nextReport * 10).toString() + "% (" + progress + ")");
      nextReport++;
    }
  }
  const pi = 4.0 * <f64>inside / <f64>samples;
  return "PI " + pi.toString() + " SAMPLES " + samples.toString() + " INSIDE " + inside.toString() + "\n";
}

function main(): void {
  const request = ft.recv(ft.WAIT_FOREVER);
  if (request == null) {
    ft.log("montecarlo: input closed before any request");
    return;
  }
  const samples = requestedSamples(request.payload);
  if (samples < 0) {
    ft.send(request.session, "ERR samples must be a decimal count in 1.." + SAMPLES_MAX.toString() + "\n");
    return;
  }
  ft.send(request.session, estimate(samples));
}

main();
