// The file arbiter: the shared contract, then what is particular to a directory on shared storage.
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { epochFileName, openArbiter, openFileArbiter, type Arbiter } from '../../host/arbiter/index.ts';
import { ARBITER_TEST_TIMEOUT_MS, arbiterSuite, expectCode, expectWon } from './suite.ts';

const root = new URL('../..', import.meta.url).pathname;
const scratch = mkdtempSync(join(tmpdir(), 'ftwasm-arbiter-file-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
let stores = 0;

function freshRoot(): string {
  const root = join(scratch, `store-${++stores}`);
  mkdirSync(root);
  return root;
}

arbiterSuite({
  kind: 'file',
  fresh: async () => {
    const root = freshRoot();
    return {
      spec: `file:${root}`,
      options: { deployment: 'default' },
      overwrite: async (epoch, text) => {
        const path = join(root, 'default', epochFileName(epoch));
        writeFileSync(path, text);
        return path;
      },
    };
  },
});

describe('file arbiter on its own', { timeout: ARBITER_TEST_TIMEOUT_MS }, () => {
  const opened: Arbiter[] = [];
  afterEach(async () => {
    await Promise.all(opened.splice(0).map((arbiter) => arbiter.close()));
  });
  async function open(root: string, options = {}): Promise<Arbiter> {
    const arbiter = await openFileArbiter(root, options);
    opened.push(arbiter);
    return arbiter;
  }

  it('a process that uses the file arbiter never loads the etcd client (about 200 ms of start-up); an etcd arbiter does', async () => {
    const dir = join(scratch, 'no-etcd');
    mkdirSync(dir);
    // The built package, as the CLI runs it: which CommonJS modules are in the require cache after each step.
    const script = `
      import { createRequire } from 'node:module';
      const m = await import(${JSON.stringify(join(root, 'dist/index.js'))});
      const etcdLoaded = () => Object.keys(createRequire(import.meta.url).cache).some((k) => k.includes('/node_modules/etcd3/'));
      const a = await m.openArbiter(${JSON.stringify(`file:${dir}`)});
      await a.claim(1, 'n1');
      await a.close();
      const before = etcdLoaded();
      await m.openArbiter('etcd:http://127.0.0.1:1', { request_timeout_ms: 50, retries_max: 0 }).catch(() => undefined);
      console.log(JSON.stringify({ before, after: etcdLoaded() }));`;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: root, encoding: 'utf8', timeout: 20_000 });
    expect(JSON.parse(out.trim().split('\n').at(-1)!)).toEqual({ before: false, after: true });
  });

  it('each won epoch is one file epoch-<16 digits> holding one line of JSON, and no temp file is left', async () => {
    const root = freshRoot();
    const arbiter = await open(root, { deployment: 'shop' });
    const claims = [expectWon(await arbiter.claim(1, 'a'), 1, 'a'), expectWon(await arbiter.claim(2, 'b'), 2, 'b')];
    const dir = join(root, 'shop');
    expect(readdirSync(dir).sort()).toEqual(['epoch-0000000000000001', 'epoch-0000000000000002']);
    const text = readFileSync(join(dir, 'epoch-0000000000000002'), 'utf8');
    expect(text.endsWith('\n') && text.indexOf('\n') === text.length - 1).toBe(true);
    const stored = JSON.parse(text) as Record<string, unknown>;
    expect(stored).toMatchObject(claims[1]!);
    expect(stored['claimId']).toMatch(/^[0-9a-f]{32}$/);
    expect(arbiter.where).toBe(`file:${dir}`);
  });

  it('a missing arbiter directory is an error naming it, and is never created', async () => {
    const missing = join(scratch, 'not-mounted');
    const error = await expectCode(openArbiter(`file:${missing}`), 'FTW_ARBITER_UNREACHABLE', missing, 'does not exist');
    expect(error.where).toBe(missing);
    expect(readdirSync(scratch)).not.toContain('not-mounted');
  });

  it('an arbiter path that is a file, not a directory, is an error naming it', async () => {
    const path = join(scratch, 'a-file');
    writeFileSync(path, 'x');
    await expectCode(openArbiter(`file:${path}`), 'FTW_ARBITER_UNREACHABLE', path, 'not a directory');
  });

  it('a winner deletes epoch files beyond epochs_kept_max, never the current one', async () => {
    const root = freshRoot();
    const arbiter = await open(root, { epochs_kept_max: 4 });
    for (let epoch = 1; epoch <= 10; epoch++) expectWon(await arbiter.claim(epoch, 'n'), epoch, 'n');
    expect(readdirSync(join(root, 'default')).sort()).toEqual([7, 8, 9, 10].map(epochFileName));
    const one = await open(freshRoot(), { epochs_kept_max: 1 });
    for (let epoch = 1; epoch <= 3; epoch++) expectWon(await one.claim(epoch, 'n'), epoch, 'n');
    expect((await one.current())!.epoch).toBe(3);
  });

  it('by default the newest 64 epoch files are kept', async () => {
    const root = freshRoot();
    const arbiter = await open(root);
    for (let epoch = 1; epoch <= 70; epoch++) expectWon(await arbiter.claim(epoch, 'n'), epoch, 'n');
    const names = readdirSync(join(root, 'default')).sort();
    expect(names).toHaveLength(64);
    expect(names[0]).toBe(epochFileName(7));
  });

  it('a stale temp file of a crashed claimant is removed by the next winner; a fresh one is left', async () => {
    const root = freshRoot();
    const arbiter = await open(root);
    const dir = join(root, 'default');
    const stale = `.claim-${'0'.repeat(15)}1-${'a'.repeat(32)}.tmp`;
    const fresh = `.claim-${'0'.repeat(15)}1-${'b'.repeat(32)}.tmp`;
    writeFileSync(join(dir, stale), '{"epoch":1');
    writeFileSync(join(dir, fresh), '{"epoch":1');
    const old = (Date.now() - 10 * 60_000) / 1000;
    utimesSync(join(dir, stale), old, old);
    expectWon(await arbiter.claim(1, 'n'), 1, 'n');
    expect(readdirSync(dir).sort()).toEqual([fresh, epochFileName(1)].sort());
  });

  it('only the highest epoch file is read: a corrupt older one does not matter', async () => {
    const root = freshRoot();
    const arbiter = await open(root);
    for (let epoch = 1; epoch <= 3; epoch++) expectWon(await arbiter.claim(epoch, 'n'), epoch, 'n');
    writeFileSync(join(root, 'default', epochFileName(1)), 'garbage');
    expect((await arbiter.current())!.epoch).toBe(3);
    expectWon(await arbiter.claim(4, 'n'), 4, 'n');
  });

  it('an epoch file whose epoch field disagrees with its name is corrupt', async () => {
    const root = freshRoot();
    const arbiter = await open(root);
    expectWon(await arbiter.claim(1, 'n'), 1, 'n');
    const path = join(root, 'default', epochFileName(1));
    writeFileSync(path, readFileSync(path, 'utf8').replace('"epoch":1', '"epoch":7'));
    await expectCode(arbiter.current(), 'FTW_ARBITER_CORRUPT', path, 'name says 1');
  });

  it('files that are not epoch or temp files are ignored', async () => {
    const root = freshRoot();
    const arbiter = await open(root);
    const dir = join(root, 'default');
    for (const name of ['README', 'epoch-1', 'epoch-00000000000000099.bak', '.nfs0001']) writeFileSync(join(dir, name), 'x');
    expect(await arbiter.current()).toBeUndefined();
    expectWon(await arbiter.claim(1, 'n'), 1, 'n');
  });

  it('a claim fails with FTW_ARBITER_UNREACHABLE naming the directory when the deployment directory is gone', async () => {
    const root = freshRoot();
    const arbiter = await open(root);
    rmSync(join(root, 'default'), { recursive: true });
    await expectCode(arbiter.claim(1, 'n'), 'FTW_ARBITER_UNREACHABLE', join(root, 'default'));
  });
});
