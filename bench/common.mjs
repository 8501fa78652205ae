// What the benches share: a seeded generator, medians, percentiles, the facts of the machine a result
// was measured on, and where results are written.
import { mkdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';

/** xorshift32 in [0, 1): every run measures the same inputs. */
export function rng(seed) {
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

export function median(values) {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** The q-quantile (0..1) of `values`, nearest rank. */
export function quantile(values, q) {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
}

export function machineFacts() {
  const cpus = os.cpus();
  return {
    cpu: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    memoryBytes: os.totalmem(),
    memoryGiB: +(os.totalmem() / 2 ** 30).toFixed(1),
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    node: process.version,
    v8: process.versions.v8,
    exposeGc: typeof globalThis.gc === 'function',
    // Other work on the machine skews the figures: the 1-minute load average before (and after) the run.
    loadAverageStart: +os.loadavg()[0].toFixed(2),
    date: new Date().toISOString(),
  };
}

/** A loopback port nobody listens on right now (bound to 0, then released). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/**
 * Records a full run: bench/results/NAME.json (with `replacer`, for values JSON cannot hold) and, when given,
 * the README table fragment bench/results/NAME.md. Returns both paths.
 */
export function writeResults(name, results, md, replacer = undefined) {
  const dir = new URL('./results/', import.meta.url);
  mkdirSync(dir, { recursive: true });
  const json = new URL(`${name}.json`, dir);
  const markdown = new URL(`${name}.md`, dir);
  writeFileSync(json, `${JSON.stringify(results, replacer, 2)}\n`);
  if (md !== undefined) writeFileSync(markdown, md.endsWith('\n') ? md : `${md}\n`);
  return { json: json.pathname, markdown: markdown.pathname };
}
