// An etcd server for the etcd arbiter tests: the one named by FTWASM_ETCD_URL (started by .ci/run), or one of
// our own from /usr/bin/etcd on free loopback ports in a temp dir, stopped in afterAll and killed on exit.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** How long a started server may take to answer /health. */
export const ETCD_START_TIMEOUT_MS = 20_000;
/** How long a stopped server may take to exit after SIGTERM before it gets SIGKILL. */
const ETCD_STOP_TIMEOUT_MS = 5_000;
/** Start attempts, each on new ports (another process may take a free port before etcd binds it). */
const ETCD_START_ATTEMPTS_MAX = 3;
/** Characters of server output kept for failure messages. */
const OUTPUT_TAIL_CHARS = 4_000;

export interface EtcdForTests {
  /** Client URL, e.g. http://127.0.0.1:23790. */
  url: string;
  /** Where it came from, for messages. */
  origin: 'FTWASM_ETCD_URL' | 'started by the test';
  stop(): Promise<void>;
}

/** The etcd server the tests use; throws with "install etcd-server" when there is neither URL nor binary. */
export async function etcdForTests(): Promise<EtcdForTests> {
  const fromEnv = process.env['FTWASM_ETCD_URL'];
  if (fromEnv !== undefined && fromEnv !== '') {
    await waitHealthy(fromEnv.split(',')[0]!, undefined, () => '');
    return { url: fromEnv, origin: 'FTWASM_ETCD_URL', stop: async () => undefined };
  }
  const binary = process.env['FTWASM_ETCD_BIN'] ?? '/usr/bin/etcd';
  if (!existsSync(binary)) {
    throw new Error(
      `no etcd for the etcd arbiter tests: FTWASM_ETCD_URL is unset and ${binary} does not exist; ` +
        'install etcd-server (apt-get install -y etcd-server) or set FTWASM_ETCD_URL',
    );
  }
  let lastError: unknown;
  for (let attempt = 1; attempt <= ETCD_START_ATTEMPTS_MAX; attempt++) {
    try {
      return await startEtcd(binary);
    } catch (error) {
      lastError = error;
    }
  }
  throw lastError;
}

async function startEtcd(binary: string): Promise<EtcdForTests> {
  const [clientPort, peerPort] = [await freePort(), await freePort()];
  const dataDir = mkdtempSync(join(tmpdir(), 'ftwasm-etcd-'));
  const url = `http://127.0.0.1:${clientPort}`;
  const peer = `http://127.0.0.1:${peerPort}`;
  const child = spawn(
    binary,
    [
      '--name', 'ftwasm-test',
      '--data-dir', join(dataDir, 'data'),
      '--listen-client-urls', url,
      '--advertise-client-urls', url,
      '--listen-peer-urls', peer,
      '--initial-advertise-peer-urls', peer,
      '--initial-cluster', `ftwasm-test=${peer}`,
      '--initial-cluster-state', 'new',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  const keep = (chunk: Buffer): void => {
    output = (output + chunk.toString('utf8')).slice(-OUTPUT_TAIL_CHARS);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const killOnExit = (): void => {
    child.kill('SIGKILL');
  };
  process.once('exit', killOnExit);
  const stop = async (): Promise<void> => {
    process.removeListener('exit', killOnExit);
    await stopChild(child);
    rmSync(dataDir, { recursive: true, force: true });
  };
  try {
    await waitHealthy(url, child, () => output);
  } catch (error) {
    await stop();
    throw error;
  }
  return { url, origin: 'started by the test', stop };
}

/** Polls GET /health until it says healthy, the child exits, or ETCD_START_TIMEOUT_MS passes. */
async function waitHealthy(url: string, child: ChildProcess | undefined, output: () => string): Promise<void> {
  const deadline = Date.now() + ETCD_START_TIMEOUT_MS;
  let last = '';
  while (Date.now() < deadline) {
    if (child !== undefined && child.exitCode !== null) {
      throw new Error(`etcd exited with code ${child.exitCode} before answering at ${url}:\n${output()}`);
    }
    try {
      const response = await fetch(`${url}/health`, { signal: AbortSignal.timeout(1_000) });
      last = await response.text();
      if (response.ok && /"health"\s*:\s*"true"/.test(last)) return;
    } catch (error) {
      last = String(error);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`etcd at ${url} not healthy within ${ETCD_START_TIMEOUT_MS} ms (last answer: ${last}):\n${output()}`);
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), ETCD_STOP_TIMEOUT_MS);
  await exited;
  clearTimeout(timer);
}

/** A loopback port nothing listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/**
 * Whether the etcd tests can run here: FTWASM_ETCD_URL, an installed etcd, or CI (whose .ci/run installs and
 * starts one, so a missing etcd fails there). A fresh developer machine may have none: `npm install && npm
 * test` must still pass on it, so the etcd tests then say loudly that they did not run.
 */
export const ETCD_PRESENT = Boolean(process.env['FTWASM_ETCD_URL']) || existsSync('/usr/bin/etcd') || process.env['CI'] === 'true';
