// The instrumenter on the WebAssembly core spec suite: every script is played twice on V8, once on the
// original modules and once on instrumented ones, and the instrumented run must pass exactly the commands
// the original passes, kind by kind. The scripts are converted to JSON + .wasm by wabt's wast2json.
import { afterAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { instrument, InstrumentError } from '../../host/instrument/index.ts';
import { runScript, tally, type CommandResult, type RunOptions, type WastScript } from '../support/wast.ts';

// ../shared/wasm-spec beside the checkout (as CI lays it out), unless told otherwise.
const SPEC_DIR = process.env.FTWASM_SPEC_DIR ?? fileURLToPath(new URL('../../../shared/wasm-spec', import.meta.url));
// The same scripts converted by wast2json 1.0.32 (`npm run spec:bundle`), for machines without wabt:
// `npm install && npm test` must pass on a fresh machine. CI installs wabt and converts afresh.
const BUNDLE = fileURLToPath(new URL('./spec-json.tar.gz', import.meta.url));
const SCRIPT_COUNT = 146;
const KINDS = [
  'module', 'register', 'action', 'assert_return', 'assert_trap', 'assert_exhaustion',
  'assert_invalid', 'assert_malformed', 'assert_unlinkable', 'assert_uninstantiable',
] as const;

// Original commands V8 in Node 20 legitimately fails, as `script:line` -> why. Keep it tiny.
const ORIGINAL_FAILURES_ALLOWED: Record<string, string> = {};

const scripts = existsSync(SPEC_DIR) ? readdirSync(SPEC_DIR).filter((n) => n.endsWith('.wast')).sort() : [];

// ---------------------------------------------------------------------------------------------------
// Converting the scripts once, cached per wabt version.

/** wast2json's version, or undefined when it is not installed. */
function wabtVersion(): string | undefined {
  try {
    return execFileSync('wast2json', ['--version'], { encoding: 'utf8' }).trim();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new Error(`wast2json --version failed: ${String(error)}`);
  }
}

/** Unpacks the bundled conversion (made by wast2json 1.0.32 from the same 146 scripts). */
function unpackBundle(names: readonly string[]): string {
  if (!existsSync(BUNDLE)) throw new Error(`wast2json not found on PATH and no bundled conversion at ${BUNDLE}: apt-get install wabt`);
  const dir = join(tmpdir(), `ftwasm-spec-bundled-${process.pid}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  execFileSync('tar', ['-xzf', BUNDLE, '-C', dir]);
  const listed = JSON.parse(readFileSync(join(dir, 'converted.json'), 'utf8')) as string[];
  if (JSON.stringify(listed) !== JSON.stringify(names)) throw new Error(`bundled conversion lists other scripts than ${SPEC_DIR}: run npm run spec:bundle`);
  console.log('wast2json not found: using the conversion bundled in test/instrument/spec-json.tar.gz (wast2json 1.0.32)');
  return dir;
}

/** Converts every script into one directory (reused while its marker lists the same scripts). */
function convertAll(names: readonly string[]): string {
  const version = wabtVersion();
  if (version === undefined) return unpackBundle(names);
  const dir = join(tmpdir(), `ftwasm-spec-${version}`);
  const marker = join(dir, 'converted.json');
  if (existsSync(marker) && readFileSync(marker, 'utf8') === JSON.stringify(names)) return dir;
  // Convert into a staging directory and rename it, so an interrupted run never leaves a half cache.
  const staging = `${dir}.staging-${process.pid}`;
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging, { recursive: true });
  for (const name of names) convertOne(name, staging);
  writeFileSync(join(staging, 'converted.json'), JSON.stringify(names));
  rmSync(dir, { recursive: true, force: true });
  renameSync(staging, dir);
  return dir;
}

function convertOne(name: string, outDir: string): void {
  const args = [join(SPEC_DIR, name), '-o', join(outDir, jsonName(name))];
  try {
    execFileSync('wast2json', ['--enable-all', ...args], { stdio: 'pipe' });
  } catch {
    // wabt 1.0.32's --enable-all includes typed function references, under which `ref.func` has type
    // (ref $t) rather than funcref: ref_func.wast and table_grow.wast then fail to type-check. Their
    // default feature set (the finished proposals the suite tests) converts them, and it writes
    // byte-identical output for the other 144 scripts.
    try {
      execFileSync('wast2json', args, { stdio: 'pipe' });
    } catch (error) {
      const stderr = (error as { stderr?: Buffer }).stderr?.toString() ?? String(error);
      throw new Error(`wast2json could not convert ${name}: ${stderr}`);
    }
  }
}

const jsonName = (script: string): string => script.replace(/\.wast$/, '.json');

// Converted on first use and remembered, error included: without wast2json every test then fails with
// the same message (a failing beforeAll would only mark them skipped).
let converted: { dir: string } | { error: unknown } | undefined;
function specJsonDir(): string {
  if (converted === undefined) {
    try {
      converted = { dir: convertAll(scripts) };
    } catch (error) {
      converted = { error };
    }
  }
  if ('error' in converted) throw converted.error;
  return converted.dir;
}

// ---------------------------------------------------------------------------------------------------
// The two runs.

const fuelExhausted = (): never => {
  // With 2^63-1 fuel the guest can never run dry during the suite; a call means the meter is wrong.
  throw new Error('ftwasm.fuel_exhausted called with 2^63-1 fuel');
};

// By class, or by code for an InstrumentError from another copy of the module (e.g. a bundled dist/).
const isRefusal = (error: unknown): boolean => {
  if (error instanceof InstrumentError) return true;
  const code: unknown = error instanceof Error ? (error as Error & { code?: unknown }).code : undefined;
  return typeof code === 'string' && code.startsWith('FTW_');
};

const INSTRUMENTED: RunOptions = {
  transform: (bytes) => instrument(bytes),
  imports: { ftwasm: { fuel_exhausted: fuelExhausted } },
  isRefusal,
};

interface Row {
  kind: string;
  total: number;
  originalPass: number;
  instrumentedPass: number;
}

const rows = new Map<string, Row>();
/** How the instrumented run passed the rejection commands: refused by `instrument`, or by V8 after it. */
const rejections = { refusedByInstrument: 0, rejectedByV8: 0, byCode: {} as Record<string, number> };

function record(original: readonly CommandResult[], instrumented: readonly CommandResult[]): void {
  for (const r of instrumented) {
    if (r.outcome !== 'pass' || (r.kind !== 'assert_invalid' && r.kind !== 'assert_malformed')) continue;
    if (r.reason.startsWith('transform refused')) {
      rejections.refusedByInstrument++;
      const code = /FTW_[A-Z_]+/.exec(r.reason)?.[0] ?? 'other';
      rejections.byCode[code] = (rejections.byCode[code] ?? 0) + 1;
    } else rejections.rejectedByV8++;
  }
  const o = tally(original);
  const i = tally(instrumented);
  for (const [kind, c] of o) {
    const row = rows.get(kind) ?? { kind, total: 0, originalPass: 0, instrumentedPass: 0 };
    row.total += c.total - c.textSkipped; // text-format modules are counted on their own row
    row.originalPass += c.pass;
    row.instrumentedPass += i.get(kind)?.pass ?? 0;
    rows.set(kind, row);
  }
  const skipped = [...o.values()].reduce((n, c) => n + c.textSkipped, 0);
  const row = rows.get('text-skipped') ?? { kind: 'text-skipped', total: 0, originalPass: 0, instrumentedPass: 0 };
  row.total += skipped;
  rows.set('text-skipped', row);
}

const where = (script: string, r: CommandResult): string => `${script}:${r.line} ${r.kind}: ${r.reason}`;

/** Commands whose outcome differs between the runs, each with both reasons. */
function differences(script: string, original: readonly CommandResult[], instrumented: readonly CommandResult[]): string[] {
  const out: string[] = [];
  original.forEach((o, n) => {
    const i = instrumented[n];
    if (i === undefined || i.outcome !== o.outcome) {
      out.push(`${script}:${o.line} ${o.kind}: original ${o.outcome} (${o.reason}), instrumented ${i?.outcome} (${i?.reason})`);
    }
  });
  return out;
}

// ---------------------------------------------------------------------------------------------------

describe('instrument on the WebAssembly core spec suite', () => {
  const started = performance.now();

  afterAll(() => {
    if (rows.size === 0) return; // nothing ran: keep the last good counts file
    const elapsedMs = performance.now() - started;
    const table = KINDS.map((k) => rows.get(k) ?? { kind: k, total: 0, originalPass: 0, instrumentedPass: 0 });
    table.push(rows.get('text-skipped') ?? { kind: 'text-skipped', total: 0, originalPass: 0, instrumentedPass: 0 });
    console.log(`spec suite: ${scripts.length} scripts in ${(elapsedMs / 1000).toFixed(1)} s (conversion included)`);
    console.table(table);
    console.log('instrumented rejection commands:', JSON.stringify(rejections));
    const build = new URL('../../build/', import.meta.url);
    mkdirSync(build, { recursive: true });
    writeFileSync(new URL('spec-counts.json', build), `${JSON.stringify({ scripts: scripts.length, elapsedMs: Math.round(elapsedMs), kinds: table, rejections }, null, 2)}\n`);
  });

  it(`finds all ${SCRIPT_COUNT} scripts in ${SPEC_DIR} and converts them (wast2json, or the bundled conversion)`, () => {
    expect(scripts.length, `set FTWASM_SPEC_DIR to the directory of the core .wast scripts`).toBe(SCRIPT_COUNT);
    expect(existsSync(join(specJsonDir(), 'converted.json'))).toBe(true);
  });

  for (const name of scripts) {
    it(`${name}: the original passes everything and the instrumented modules pass the same commands`, () => {
      const dir = specJsonDir();
      const script = JSON.parse(readFileSync(join(dir, jsonName(name)), 'utf8')) as WastScript;
      const original = runScript(script, dir);
      const instrumented = runScript(script, dir, INSTRUMENTED);
      record(original, instrumented);
      const unexpected = original.filter((r) => r.outcome === 'fail' && ORIGINAL_FAILURES_ALLOWED[`${name}:${r.line}`] === undefined);
      expect(unexpected.map((r) => where(name, r)), 'original commands failing on V8').toEqual([]);
      expect(differences(name, original, instrumented), 'commands whose outcome instrumenting changed').toEqual([]);
    });
  }

  it('the instrumented run passes as many commands of each kind as the original', () => {
    for (const kind of KINDS) {
      const row = rows.get(kind);
      expect(row?.total ?? 0, `${kind} commands seen`).toBeGreaterThan(0);
      expect(row?.instrumentedPass, `${kind} instrumented passes`).toBe(row?.originalPass);
    }
  });
});
