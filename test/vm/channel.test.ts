// The shared ring between the host and a guest's worker: bounded, in order, nothing lost or woken late.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { createRingBuffer, SharedRing, RING_CLOSED } from '../../host/vm/channel.ts';
import { propertySeed } from '../support/fuel.ts';

const dist = fileURLToPath(new URL('../../dist/index.js', import.meta.url));

describe('SharedRing', () => {
  it('delivers every accepted message once, in order, refusing only when full; writeWithPrefix = write of the concatenation (property)', () => {
    const seed = propertySeed('shared ring');
    fc.assert(
      fc.property(
        fc.constantFrom(64, 128, 256, 1024),
        fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 120 }), fc.option(fc.integer({ min: 0, max: 0xffffffff }), { nil: undefined })), { maxLength: 200 }),
        (capacity, steps) => {
          const ring = new SharedRing(createRingBuffer(capacity));
          const expected: string[] = [];
          let n = 0;
          for (const [write, size, prefix] of steps) {
            if (write) {
              const payload = Uint8Array.from({ length: size }, (_, i) => (n * 31 + i) & 0xff);
              const whole = prefix === undefined ? payload : Buffer.concat([Buffer.from(Uint32Array.of(prefix).buffer), payload]);
              const room = capacity - ring.usedBytes();
              if (whole.length > ring.messageBytesMax) {
                expect(() => (prefix === undefined ? ring.write(payload) : ring.writeWithPrefix(prefix, payload))).toThrow(RangeError);
                continue;
              }
              const ok = prefix === undefined ? ring.write(payload) : ring.writeWithPrefix(prefix, payload);
              expect(ok).toBe(room >= 4 + whole.length);
              if (ok) expected.push(Buffer.from(whole).toString('hex'));
              n++;
            } else {
              const got = ring.tryRead();
              if (expected.length === 0) expect(got).toBeUndefined();
              else expect(Buffer.from(got!).toString('hex')).toBe(expected.shift());
            }
          }
          for (let m = ring.tryRead(); m !== undefined; m = ring.tryRead()) expect(Buffer.from(m).toString('hex')).toBe(expected.shift());
          expect(expected).toEqual([]);
          expect(ring.usedBytes()).toBe(0);
        },
      ),
      { seed, numRuns: 300 },
    );
  });

  it('a consumer blocked in another thread wakes for every write and for close: 2,000 messages, none lost or late', { timeout: 60_000 }, async () => {
    const toWorker = createRingBuffer(256);
    const fromWorker = createRingBuffer(1 << 16);
    // The worker echoes each message; it blocks in read(Infinity) whenever the ring is empty.
    const code = `
      const { workerData, parentPort } = require('node:worker_threads');
      import(workerData.dist).then(({ SharedRing }) => {
        const input = new SharedRing(workerData.toWorker);
        const output = new SharedRing(workerData.fromWorker);
        let n = 0;
        for (;;) {
          const m = input.read(Infinity);
          if (m === -1) break;
          while (!output.write(m)) {}
          n++;
        }
        parentPort.postMessage(n);
      });`;
    const worker = new Worker(code, { eval: true, workerData: { dist, toWorker, fromWorker } });
    const echoed = new Promise<number>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    const input = new SharedRing(toWorker);
    const output = new SharedRing(fromWorker);
    const got: number[] = [];
    const COUNT = 2_000;
    for (let i = 0; i < COUNT; i++) {
      while (!input.write(new Uint8Array(Uint32Array.of(i).buffer))) {
        await new Promise((r) => setImmediate(r));
      }
      // Every few messages, wait for the echo so the worker has emptied the ring and blocks again.
      if (i % 3 === 0) {
        const deadline = Date.now() + 10_000;
        while (got.length <= i && Date.now() < deadline) {
          for (let m = output.tryRead(); m !== undefined; m = output.tryRead()) got.push(new DataView(m.buffer).getUint32(0, true));
          if (got.length <= i) await new Promise((r) => setImmediate(r));
        }
        expect(got.length, `echo of message ${i} (a lost wake-up leaves the worker asleep)`).toBe(i + 1);
      }
    }
    input.close();
    expect(await echoed).toBe(COUNT);
    for (let m = output.tryRead(); m !== undefined; m = output.tryRead()) got.push(new DataView(m.buffer).getUint32(0, true));
    expect(got).toEqual(Array.from({ length: COUNT }, (_, i) => i));
    expect(input.read(0)).toBe(RING_CLOSED);
    await worker.terminate();
  });
});
