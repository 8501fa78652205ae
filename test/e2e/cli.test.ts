// The CLI as outside checks use it: real processes, real files.
import { describe, expect, it, beforeAll } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = new URL('../..', import.meta.url).pathname;
const cli = join(root, 'dist/cli.js');
const guests = join(root, 'build/guest');

function ftwasm(args: string[], input = ''): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [cli, ...args], { input, encoding: 'utf8', timeout: 60_000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

function finalLines(stderr: string): { icount: string; hash: string } {
  const lines = stderr.trimEnd().split('\n');
  const [a, b] = lines.slice(-2);
  expect(a).toMatch(/^icount: \d+$/);
  expect(b).toMatch(/^state-hash: [0-9a-f]{32}$/);
  return { icount: a!.slice(8), hash: b!.slice(12) };
}

let dir = '';
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'ftwasm-cli-'));
  expect(existsSync(cli), 'dist/cli.js is built by npm install / npm test').toBe(true);
});

const KV_INPUT = ['SET a 1', 'SET b hello 60000', 'GET a', 'INCR a', 'ID', 'GET b', 'DEL a', 'GET a', 'COUNT'].join('\n') + '\n';

describe('record and replay every example guest', () => {
  const cases: [string, string][] = [
    ['kv', KV_INPUT],
    ['ticker', 'hello\nworld\n'],
    ['montecarlo', '20000\n'],
  ];
  for (const [name, input] of cases) {
    it(`${name}: replay gives the same outputs, icount and state hash`, () => {
      const log = join(dir, `${name}.log`);
      const rec = ftwasm(['record', join(guests, `${name}.wasm`), '--log', log], input);
      expect(rec.code, rec.stderr).toBe(0);
      expect(rec.stdout.length).toBeGreaterThan(0);
      const rep = ftwasm(['replay', join(guests, `${name}.wasm`), '--log', log]);
      expect(rep.code, rep.stderr).toBe(0);
      expect(rep.stdout).toBe(rec.stdout);
      expect(finalLines(rep.stderr)).toEqual(finalLines(rec.stderr));
      const inspect = ftwasm(['inspect', log, '--limit', '0']);
      expect(inspect.code).toBe(0);
      expect(inspect.stdout).toMatch(/END/);
    });
  }
});

describe('a damaged log', () => {
  it('every single changed byte is caught: exit 3 naming the frame or the seq', () => {
    const log = join(dir, 'small.log');
    expect(ftwasm(['record', join(guests, 'kv.wasm'), '--log', log], 'SET k v\nGET k\n').code).toBe(0);
    const original = readFileSync(log);
    const damaged = join(dir, 'damaged.log');
    let caught = 0;
    // Every byte, but in one process per byte the test would take minutes: flip in-process, replay via CLI
    // for a spread of positions, and check the decoder on all positions in test/log.
    const step = Math.max(1, Math.floor(original.length / 40));
    for (let at = 0; at < original.length; at += step) {
      const bytes = Buffer.from(original);
      bytes[at] ^= 0x5a;
      writeFileSync(damaged, bytes);
      const r = ftwasm(['replay', join(guests, 'kv.wasm'), '--log', damaged, '--quiet']);
      expect(r.code, `byte ${at}: ${r.stderr}`).toBe(3);
      expect(r.stderr, `byte ${at}`).toMatch(/frame|seq|header|magic|module/i);
      caught++;
    }
    expect(caught).toBeGreaterThan(20);
  });

  it('a truncated log replays up to its last whole frame and says so', () => {
    const log = join(dir, 'cut.log');
    expect(ftwasm(['record', join(guests, 'kv.wasm'), '--log', log], KV_INPUT).code).toBe(0);
    const bytes = readFileSync(log);
    const cut = join(dir, 'cut-short.log');
    writeFileSync(cut, bytes.subarray(0, bytes.length - 7));
    const r = ftwasm(['replay', join(guests, 'kv.wasm'), '--log', cut]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/torn frame at byte \d+/);
    expect(r.stderr).toMatch(/log ended at seq \d+/);
  });

  it('record skips a stdin line over MESSAGE_BYTES_MAX, naming it, and the log replays to the same state', () => {
    const log = join(dir, 'long-line.log');
    const r = ftwasm(['record', join(guests, 'kv.wasm'), '--log', log], `SET k v\nSET big ${'x'.repeat(1 << 20)}\nGET k\n`);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/stdin line 2: 1048584 bytes > MESSAGE_BYTES_MAX \(1047552\); skipped/);
    expect(r.stdout).toBe('OK\nVALUE v\n');
    const rep = ftwasm(['replay', join(guests, 'kv.wasm'), '--log', log]);
    expect(rep.code).toBe(0);
    expect(finalLines(rep.stderr)).toEqual(finalLines(r.stderr));
  });

  it('a log of another module is refused with exit 3', () => {
    const log = join(dir, 'other.log');
    expect(ftwasm(['record', join(guests, 'kv.wasm'), '--log', log], 'GET x\n').code).toBe(0);
    const r = ftwasm(['replay', join(guests, 'ticker.wasm'), '--log', log]);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/another module/);
  });
});

describe('state transfer on the command line', () => {
  it('instrument --unwind writes a module that can be snapshot; a log recorded with it replays on it, not on the plain module (the error names --state-transfer)', async () => {
    const { readInstrumentMeta } = await import('../../host/instrument/index.ts');
    const out = join(dir, 'kv.unwind.wasm');
    const r = ftwasm(['instrument', join(guests, 'kv.wasm'), '-o', out, '--unwind']);
    expect(r.code, r.stderr).toBe(0);
    expect(readInstrumentMeta(new WebAssembly.Module(readFileSync(out)))?.unwind).toBe(true);
    const plain = join(dir, 'kv.plain.wasm');
    expect(ftwasm(['instrument', join(guests, 'kv.wasm'), '-o', plain]).code).toBe(0);
    expect(readInstrumentMeta(new WebAssembly.Module(readFileSync(plain)))?.unwind).toBeUndefined();

    // A log recorded with the prepared module replays on it; the plain module is another one (their icounts
    // differ), and the error says what to pass.
    const log = join(dir, 'unwind.log');
    const rec = ftwasm(['record', out, '--log', log], 'SET a 1\nINCR a\n');
    expect(rec.code, rec.stderr).toBe(0);
    const same = ftwasm(['replay', out, '--log', log]);
    expect(same.code, same.stderr).toBe(0);
    expect(finalLines(same.stderr)).toEqual(finalLines(rec.stderr));
    const refused = ftwasm(['replay', plain, '--log', log]);
    expect(refused.code).toBe(3);
    expect(refused.stderr).toMatch(/another module.*--state-transfer, pass it here too/);
    // record --state-transfer prepares the original as the nodes do; replay --state-transfer reproduces it.
    const prepLog = join(dir, 'prepared.log');
    const prep = ftwasm(['record', join(guests, 'kv.wasm'), '--log', prepLog, '--state-transfer'], 'SET a 1\nINCR a\n');
    expect(prep.code, prep.stderr).toBe(0);
    const prepReplay = ftwasm(['replay', join(guests, 'kv.wasm'), '--log', prepLog, '--state-transfer']);
    expect(prepReplay.code, prepReplay.stderr).toBe(0);
    expect(finalLines(prepReplay.stderr)).toEqual(finalLines(prep.stderr));
    expect(ftwasm(['replay', join(guests, 'kv.wasm'), '--log', prepLog]).stderr).toMatch(/another module.*--state-transfer, pass it here too/);
    // An instrumented module without --unwind cannot run as a --state-transfer node.
    const noUnwind = ftwasm(['replay', plain, '--log', log, '--state-transfer']);
    expect(noUnwind.code).not.toBe(0);
    expect(noUnwind.stderr).toMatch(/instrumented without --unwind/);
  });

  it('a log that starts after a snapshot is not replayed without it, and a snapshot of another seq is refused', async () => {
    const { LogArchive } = await import('../../host/replication/index.ts');
    const { createHash } = await import('node:crypto');
    const { prepareUnwind } = await import('../../host/instrument/index.ts');
    const prepared = await prepareUnwind(readFileSync(join(guests, 'kv.wasm')));
    const log = join(dir, 'after-snapshot.ftwlog');
    const archive = LogArchive.create(log, { moduleHash: new Uint8Array(createHash('sha256').update(prepared).digest()), ftwasmVersion: 'test' });
    archive.startAt(42);
    archive.close();
    const r = ftwasm(['replay', join(guests, 'kv.wasm'), '--log', log, '--state-transfer']);
    expect(r.code).toBe(3);
    expect(r.stderr).toContain(`starts at seq 42: replay it from the snapshot before it (--snapshot ${log}.snapshot)`);
    const { encodeSnapshot } = await import('../../host/vm/index.ts');
    const snap = join(dir, 'seq7.snapshot');
    writeFileSync(snap, Buffer.concat(encodeSnapshot({ icount: 1n, lastSeq: 7, memory: new Uint8Array(65536), globals: {}, stack: new Uint8Array(0), tables: '', lastMono: -1n })));
    const wrong = ftwasm(['replay', join(guests, 'kv.wasm'), '--log', log, '--snapshot', snap]);
    expect(wrong.code).toBe(3);
    expect(wrong.stderr).toMatch(/taken after seq 7, but log .* starts at seq 42/);
    // Log segments start with snapshots: they need --state-transfer (and --log).
    const common = [join(guests, 'kv.wasm'), '--clients', '127.0.0.1:1', '--replication', '127.0.0.1:2', '--arbiter', `file:${dir}/none`, '--secret-file', `${dir}/none`];
    const noTransfer = ftwasm(['primary', ...common, '--log', join(dir, 'seg-a.ftwlog'), '--log-segment-mb', '8']);
    expect(noTransfer.code).not.toBe(0);
    expect(noTransfer.stderr).toMatch(/--log-segment-mb needs --state-transfer/);
    expect(existsSync(join(dir, 'seg-a.ftwlog'))).toBe(false);
    expect(ftwasm(['backup', ...common.filter((a) => a !== '--replication' && a !== '127.0.0.1:2'), '--primary', '127.0.0.1:3', '--state-transfer', '--log-segment-mb', '8']).stderr).toMatch(/--log-segment-mb needs --log FILE/);
    // inspect tells a snapshot file from a log and says what it holds.
    const seen = ftwasm(['inspect', snap]);
    expect(seen.code, seen.stderr).toBe(0);
    expect(seen.stdout).toMatch(/taken at a recv after log seq 7 \(the log goes on from 8\), icount 1\nmemory 65536 bytes \(1 pages\), saved stack 0 bytes, 0 globals/);
  });
});
