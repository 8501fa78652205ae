// What the in-process replication tests share: the instrumented kv guest, a scratch directory of file
// arbiters, and nodes and clients that are closed after each test (registered as they are made).
import { afterAll, afterEach, beforeAll, expect } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openArbiter, type Arbiter } from '../../host/arbiter/index.ts';
import { instrument } from '../../host/instrument/index.ts';
import { FtClient } from '../../host/net/index.ts';
import { startBackup, startPrimary, type Backup, type Primary } from '../../host/replication/index.ts';
import { FrameSource, GuestCore, hex } from '../../host/vm/index.ts';

const root = new URL('../..', import.meta.url).pathname;
export const SECRET = new TextEncoder().encode('correct horse battery staple 0123');
export const WAIT_MS_MAX = 15_000;

export const text = (s: string) => new TextEncoder().encode(s);
export const str = (b: Uint8Array) => new TextDecoder().decode(b);

/** Polls until cond() holds; fails after WAIT_MS_MAX naming `what`. */
export async function until(cond: () => boolean, what: string): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > WAIT_MS_MAX) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Registers the file's hooks; what it returns makes nodes, arbiters and clients that the next afterEach closes. */
export function replicationFixture(prefix: string, onEvent?: (text: string) => void) {
  let module: WebAssembly.Module | undefined;
  let scratch = '';
  let stores = 0;
  const cleanups: Array<() => unknown> = [];
  beforeAll(() => {
    module = new WebAssembly.Module(instrument(readFileSync(join(root, 'build/guest/kv.wasm'))));
    scratch = mkdtempSync(join(tmpdir(), `ftwasm-${prefix}-`));
  });
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await Promise.resolve(c()).catch(() => undefined);
  });
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));

  const f = {
    /** The instrumented kv guest (after beforeAll). */
    get module(): WebAssembly.Module {
      if (!module) throw new Error('the fixture is used before beforeAll');
      return module;
    },
    get scratch(): string {
      return scratch;
    },
    /** Closed after the test, last made first. */
    cleanup(c: () => unknown): void {
      cleanups.push(c);
    },
    async arbiter(): Promise<Arbiter> {
      const a = await openArbiter(`file:${scratch}`, { deployment: `d${++stores}` });
      cleanups.push(() => a.close());
      return a;
    },
    async primary(options: Partial<Parameters<typeof startPrimary>[0]> = {}): Promise<Primary> {
      const p = await startPrimary({ module: f.module, arbiter: options.arbiter ?? (await f.arbiter()), secret: SECRET, ...(onEvent ? { onEvent } : {}), ...options });
      cleanups.push(() => p.close());
      return p;
    },
    async backupOf(p: Primary | { replicationAddress(): { host: string; port: number } }, a: Arbiter, options: Partial<Parameters<typeof startBackup>[0]> = {}): Promise<Backup> {
      const b = await startBackup({ module: f.module, arbiter: a, secret: SECRET, primary: p.replicationAddress(), ...(onEvent ? { onEvent: (t: string) => onEvent(`backup: ${t}`) } : {}), ...options });
      cleanups.push(() => b.close());
      return b;
    },
    client(...servers: Array<{ host: string; port: number }>): FtClient {
      const c = new FtClient({ servers: servers.map((s) => `${s.host}:${s.port}`), backoff_ms_max: 100 });
      cleanups.push(() => c.close());
      return c;
    },
  };
  return f;
}

/** Ends a live node's guest (its input closed): the whole log it held and recorded replays to its final state. */
export async function expectLogReplays(module: WebAssembly.Module, b: Backup, frames: Uint8Array[]): Promise<void> {
  expect(b.closeInput()).toBe(true);
  const result = await new Promise<NonNullable<Backup['guestResult']>>((r) => b.once('exited', r));
  const replayed = new GuestCore({ module, mode: 'replay', source: new FrameSource(frames) }).run();
  expect(hex(replayed.stateHash)).toBe(hex(result.stateHash));
  expect(replayed.icount).toBe(result.icount);
}
