// Failover with real processes on loopback: a primary, a backup and a client load; the primary is killed
// with SIGKILL midway. Every request must be answered exactly once and in order, by whichever node is
// primary, and the backup must have gone live in a new epoch won from the file arbiter.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, spawnCli, stopCli, until as untilMs, type CliProcess } from '../../host/cli/procs.ts';

const root = new URL('../..', import.meta.url).pathname;
const cli = join(root, 'dist/cli.js');
const kv = join(root, 'build/guest/kv.wasm');
const WAIT_MS_MAX = 20_000;

const children: CliProcess[] = [];
let dir = '';

function ftwasm(args: string[]): CliProcess {
  const child = spawnCli(cli, args);
  children.push(child);
  return child;
}

const until = (cond: () => boolean, what: string, timeout_ms = WAIT_MS_MAX): Promise<void> => untilMs(cond, what, timeout_ms);

beforeAll(() => {
  expect(existsSync(cli), 'dist/cli.js is built by npm install / npm test').toBe(true);
  dir = mkdtempSync(join(tmpdir(), 'ftwasm-failover-'));
  mkdirSync(join(dir, 'arbiter'));
  writeFileSync(join(dir, 'secret'), 'e2e shared secret, 32 bytes long\n');
});

afterAll(async () => {
  await Promise.all(children.map((child) => stopCli(child)));
  rmSync(dir, { recursive: true, force: true });
});

describe('failover across real processes', () => {
  it('kill -9 of the primary midway: the backup goes live in epoch 2 and the load sees every reply exactly once, in order', async () => {
    const [clientsP, replication, clientsB] = [await freePort(), await freePort(), await freePort()];
    const arbiter = `file:${join(dir, 'arbiter')}`;
    const secret = join(dir, 'secret');
    const primary = ftwasm(['primary', kv, '--clients', `127.0.0.1:${clientsP}`, '--replication', `127.0.0.1:${replication}`, '--arbiter', arbiter, '--secret-file', secret]);
    await until(() => primary.stderr().includes('primary: ready in epoch 1'), 'the primary to be ready');
    const backup = ftwasm(['backup', kv, '--primary', `127.0.0.1:${replication}`, '--clients', `127.0.0.1:${clientsB}`, '--arbiter', arbiter, '--secret-file', secret]);
    await until(() => backup.stderr().includes('connected to the primary'), 'the backup to connect');

    const sessions = 4;
    const requests = 400;
    const load = ftwasm(['load', '--servers', `127.0.0.1:${clientsP},127.0.0.1:${clientsB}`, '--sessions', String(sessions), '--requests', String(requests), '--interval-ms', '3', '--timeout-ms', '30000']);
    // Midway: once some hundreds of replies came back through the primary.
    await until(() => /load: [3-9]00 responses/.test(load.stderr()), 'the load to be under way');
    const killed_ms = Date.now();
    primary.process.kill('SIGKILL');
    await until(() => backup.stderr().includes('LIVE as primary in epoch 2'), 'the backup to go live');
    const failover_ms = Date.now() - killed_ms;

    const code = await Promise.race([load.exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 45_000))]);
    expect(code, load.stderr()).toBe(0);
    const lines = load.stdout().trim().split('\n');
    const verdict = JSON.parse(lines.at(-1)!);
    expect(verdict).toEqual({ sent: sessions * requests, responses: sessions * requests, lost: 0, duplicated: 0, out_of_order: 0 });
    expect(readdirSync(join(dir, 'arbiter', 'default')).filter((n) => n.startsWith('epoch-')).sort()).toEqual(['epoch-0000000000000001', 'epoch-0000000000000002']);
    expect(backup.stderr()).toMatch(/won epoch 2/);
    console.log(`e2e failover: backup live ${failover_ms} ms after kill -9; verdict ${lines.at(-1)}`);

    backup.process.kill('SIGTERM');
    const backupCode = await Promise.race([backup.exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 5_000))]);
    expect(backupCode).toBe(0);
  });
});
