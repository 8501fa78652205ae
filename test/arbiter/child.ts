// Real child processes using the arbiter: host/arbiter bundled once by esbuild into a CommonJS file that plain
// `node -e` can require (Node 20 cannot run the .ts sources), with npm packages left to node_modules.
import { build } from 'esbuild';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { ArbiterOptions, ClaimResult, EpochClaim } from '../../host/arbiter/index.ts';

const root = new URL('../..', import.meta.url).pathname;
/** A racing child must be ready, and then done, within this. */
export const CHILD_TIMEOUT_MS = 20_000;

let bundled: Promise<string> | undefined;
let bundleDir: string | undefined;

/** Path of host/arbiter bundled as CommonJS (built once per test file, until removeArbiterBundle). */
export function arbiterBundle(): Promise<string> {
  bundled ??= (async () => {
    // Inside the checkout (build/ is ignored), so that the bundle's imports of external packages resolve from
    // its node_modules: NODE_PATH serves require() but not import(), and the etcd client is loaded with import().
    mkdirSync(join(root, 'build'), { recursive: true });
    bundleDir = mkdtempSync(join(root, 'build', 'arbiter-bundle-'));
    const outfile = join(bundleDir, 'arbiter.cjs');
    await build({
      entryPoints: [join(root, 'host/arbiter/index.ts')],
      outfile,
      bundle: true,
      platform: 'node',
      target: 'node20',
      format: 'cjs',
      packages: 'external',
      logLevel: 'silent',
    });
    return outfile;
  })();
  return bundled;
}

/** Deletes the bundle, if one was built. */
export function removeArbiterBundle(): void {
  if (bundleDir !== undefined) rmSync(bundleDir, { recursive: true, force: true });
  bundleDir = undefined;
  bundled = undefined;
}

// Opens the arbiter, says "ready", waits for "go" on stdin so that all children claim at once, claims, prints the result.
const RACER = `
const { openArbiter } = require(process.env.FTWASM_ARBITER_BUNDLE);
const job = JSON.parse(process.env.FTWASM_ARBITER_JOB);
(async () => {
  const arbiter = await openArbiter(job.spec, job.options);
  process.stdout.write('ready\\n');
  await new Promise((resolve) => process.stdin.once('data', resolve));
  const result = await arbiter.claim(job.epoch, job.nodeId);
  process.stdout.write(JSON.stringify(result) + '\\n');
  await arbiter.close();
  process.exit(0);
})().catch((error) => { process.stderr.write(String((error && error.stack) || error)); process.exit(1); });
`;

// Claims the next epoch, holds the primary lease, says so, then idles until killed.
const LEASE_HOLDER = `
const { openArbiter } = require(process.env.FTWASM_ARBITER_BUNDLE);
const job = JSON.parse(process.env.FTWASM_ARBITER_JOB);
(async () => {
  const arbiter = await openArbiter(job.spec, job.options);
  const result = await arbiter.claim(job.epoch, job.nodeId);
  if (!result.won) throw new Error('lost the claim: ' + JSON.stringify(result));
  await arbiter.holdLease(result.claim, job.ttlSeconds);
  process.stdout.write(JSON.stringify(result.claim) + '\\n');
  setInterval(() => undefined, 1000);
})().catch((error) => { process.stderr.write(String((error && error.stack) || error)); process.exit(1); });
`;

interface Job {
  spec: string;
  options: ArbiterOptions;
  epoch: number;
  nodeId: string;
  ttlSeconds?: number;
}

function spawnJob(script: string, job: Job, bundle: string): ChildProcess {
  return spawn(process.execPath, ['-e', script], {
    env: {
      ...process.env,
      FTWASM_ARBITER_BUNDLE: bundle,
      FTWASM_ARBITER_JOB: JSON.stringify(job),
      NODE_PATH: join(root, 'node_modules'),
    },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
}

/** Output of a child, line by line, with a wait for the next line bounded by `deadlineMs`. */
class Lines {
  private buffered = '';
  private stderr = '';
  private waiter: (() => void) | undefined;
  /** The child exited and its stdio closed: whatever it wrote has been read. */
  private closed = false;

  constructor(readonly child: ChildProcess, readonly name: string) {
    child.stdout!.on('data', (chunk: Buffer) => {
      this.buffered += chunk.toString('utf8');
      this.waiter?.();
    });
    child.stderr!.on('data', (chunk: Buffer) => {
      this.stderr = (this.stderr + chunk.toString('utf8')).slice(-4_000);
    });
    // 'close', not 'exit': a child's last output can arrive after its exit event.
    child.once('close', () => {
      this.closed = true;
      this.waiter?.();
    });
  }

  async next(deadlineMs: number): Promise<string> {
    for (;;) {
      const newline = this.buffered.indexOf('\n');
      if (newline >= 0) {
        const line = this.buffered.slice(0, newline);
        this.buffered = this.buffered.slice(newline + 1);
        return line;
      }
      if (this.closed) {
        throw new Error(`${this.name} exited (${this.child.exitCode ?? this.child.signalCode}) without a line: ${this.stderr}`);
      }
      const left = deadlineMs - Date.now();
      if (left <= 0) throw new Error(`${this.name} gave no line within ${CHILD_TIMEOUT_MS} ms: ${this.stderr}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.waiter = undefined;
    }
  }
}

/** `count` processes each open the arbiter, then all claim `epoch` at once; returns their results, node ids `proc-<i>`. */
export async function raceInProcesses(spec: string, options: ArbiterOptions, epoch: number, count: number): Promise<ClaimResult[]> {
  const bundle = await arbiterBundle();
  const deadline = Date.now() + CHILD_TIMEOUT_MS;
  const racers = Array.from({ length: count }, (_, i) => new Lines(spawnJob(RACER, { spec, options, epoch, nodeId: `proc-${i}` }, bundle), `racer proc-${i}`));
  try {
    const ready = await Promise.all(racers.map((racer) => racer.next(deadline)));
    for (const line of ready) if (line !== 'ready') throw new Error(`a racer said ${JSON.stringify(line)} instead of ready`);
    for (const racer of racers) racer.child.stdin!.write('go\n');
    const lines = await Promise.all(racers.map((racer) => racer.next(deadline)));
    return lines.map((line) => JSON.parse(line) as ClaimResult);
  } finally {
    for (const racer of racers) if (racer.child.exitCode === null) racer.child.kill('SIGKILL');
  }
}

/** A process that won `epoch` and holds the primary lease; kill it with `kill()` to play a crashed primary. */
export async function leaseHolderProcess(spec: string, options: ArbiterOptions, epoch: number, ttlSeconds: number): Promise<{ claim: EpochClaim; kill(): void }> {
  const bundle = await arbiterBundle();
  const child = spawnJob(LEASE_HOLDER, { spec, options, epoch, nodeId: 'crashing-primary', ttlSeconds }, bundle);
  const killOnExit = (): void => {
    child.kill('SIGKILL');
  };
  process.once('exit', killOnExit);
  const kill = (): void => {
    process.removeListener('exit', killOnExit);
    child.kill('SIGKILL');
  };
  try {
    const line = await new Lines(child, 'lease holder').next(Date.now() + CHILD_TIMEOUT_MS);
    return { claim: JSON.parse(line) as EpochClaim, kill };
  } catch (error) {
    kill();
    throw error;
  }
}
