// Outputs from the guest's worker to the host in batches: one 'sends' message carries them in two
// transferred buffers, (session, seq, length) triples and the bytes back to back, instead of an array of
// objects that structured clone would serialize and rebuild one by one.
import type { WorkerMessage } from './worker.ts';

/** Outputs as one 'sends' message: (session, seq, length) triples and the bytes, each in one buffer. */
export function packSends(sends: readonly { session: number; bytes: Uint8Array; seq: number }[]): Extract<WorkerMessage, { t: 'sends' }> {
  const meta = new Float64Array(sends.length * 3);
  let total = 0;
  for (const o of sends) total += o.bytes.length;
  const data = new Uint8Array(total);
  let at = 0;
  sends.forEach((o, i) => {
    meta[3 * i] = o.session;
    meta[3 * i + 1] = o.seq;
    meta[3 * i + 2] = o.bytes.length;
    data.set(o.bytes, at);
    at += o.bytes.length;
  });
  return { t: 'sends', count: sends.length, meta, data };
}

/** The outputs of a 'sends' message, in order; each gets bytes of its own (a copy: see the runner). */
export function unpackSends(m: Extract<WorkerMessage, { t: 'sends' }>, each: (session: number, bytes: Uint8Array, seq: number) => void): void {
  let at = 0;
  for (let i = 0; i < m.count; i++) {
    const length = m.meta[3 * i + 2]!;
    each(m.meta[3 * i]!, m.data.slice(at, at + length), m.meta[3 * i + 1]!);
    at += length;
  }
}
