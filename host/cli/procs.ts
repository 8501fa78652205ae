// Child processes of the ftwasm CLI on loopback: shared by the failover demo (npm start) and the e2e tests.
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';

export interface CliProcess {
  process: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<number | null>;
}

/** Runs `node <cli> ...args`, collecting its output. */
export function spawnCli(cli: string, args: string[]): CliProcess {
  const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  // 'close', not 'exit': it comes once the child's output has been read too (its last lines can arrive after
  // the exit event), so whoever awaits `exited` then sees everything it wrote.
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  return { process: child, stdout: () => out, stderr: () => err, exited };
}

/** A loopback port nobody listens on right now (bound to 0, then released). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
  });
}

/** Waits until `cond` holds, polling every 10 ms; throws naming `what` after `timeout_ms`. */
export async function until(cond: () => boolean, what: string, timeout_ms: number): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > timeout_ms) throw new Error(`timed out after ${timeout_ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** SIGKILLs the process if it still runs, and waits (bounded) for it to exit. */
export async function stopCli(p: CliProcess, wait_ms = 5_000): Promise<void> {
  if (p.process.exitCode === null && p.process.signalCode === null) p.process.kill('SIGKILL');
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([p.exited, new Promise((r) => (timer = setTimeout(r, wait_ms)))]);
  clearTimeout(timer);
}

/** The ports a node named on its stderr (the groups of `pattern`, e.g. from its ready line), once it did. */
export async function portsFrom(p: CliProcess, pattern: RegExp, what: string, timeout_ms: number): Promise<number[]> {
  await until(() => pattern.test(p.stderr()), `${what}; it said:\n${p.stderr().slice(-1500)}`, timeout_ms);
  return pattern.exec(p.stderr())!.slice(1).map(Number);
}
