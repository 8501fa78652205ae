import { test } from 'vitest';
import { EntryKind, FrameWriter } from '../../host/log/index.ts';
test('exp', () => {
  const N = 2_000_000;
  const d1 = new Uint16Array(N).map((_, i) => 50 + (i * 7919) % 4951);
  const d2 = new Uint16Array(N).map((_, i) => 100 + (i * 104729) % 9901);
  for (let rep = 0; rep < 4; rep++) {
    const w = new FrameWriter({ on_frame: () => {} });
    let a = 1000n, b = 1_700_000_000_000_000_000n;
    const t = process.hrtime.bigint();
    for (let i = 0; i < N; i++) { a += BigInt(d1[i]!); b += BigInt(d2[i]!); w.appendClock(EntryKind.CLOCK_NOW, a, b); }
    w.flush();
    const s = Number(process.hrtime.bigint() - t) / 1e9;
    console.log('rep', rep, (N / s / 1e6).toFixed(2), 'M/s');
  }
  console.log(process.execArgv, process.env.NODE_OPTIONS);
});
