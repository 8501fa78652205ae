// How much the backup's main thread spends decoding received frames (OutputGate.onFrames), per request.
import { FrameWriter, FrameReader, EntryKind } from '/work/main/dist/index.js';
const frames = [];
const w = new FrameWriter({ next_seq: 1, on_frame: (f) => frames.push(f.slice()) });
let icount = 1000n;
const N = 200_000;
for (let i = 0; i < N; i++) {
  const p = new Uint8Array(20); new DataView(p.buffer).setUint32(0, i % 8, true);
  w.append({ seq: w.nextSeq, kind: EntryKind.RECV, icount: (icount += 500n), payload: p });
  w.append({ seq: w.nextSeq, kind: EntryKind.SEND, icount: (icount += 800n), payload: { session: i % 8, digest: 1234, length: 12 } });
  if (i % 64 === 63) w.flush();
}
w.flush();
const bytes = frames.reduce((s, f) => s + f.length, 0);
console.log('frames', frames.length, 'bytes/request', (bytes / N).toFixed(1));
for (let round = 0; round < 5; round++) {
  const r = new FrameReader();
  const t0 = process.cpuUsage();
  let recvs = 0;
  for (const f of frames) { r.push(f); for (let x = r.next(); x !== 'incomplete'; x = r.next()) for (const e of x.entries) if (e.kind === EntryKind.RECV) recvs++; }
  const u = process.cpuUsage(t0);
  console.log('decode us/request', ((u.user + u.system) / N).toFixed(3), recvs);
}
