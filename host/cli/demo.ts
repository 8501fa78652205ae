// `npm start` for now: the fuel meter at work on the compute guests. Later issues make it the failover demo.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { instrument, readInstrumentMeta } from '../instrument/index.ts';

const DEMO_GUESTS = ['sha256', 'nbody', 'sort'];

/** build/guest of this checkout: one level above dist/cli.js, two above host/cli/demo.ts. */
export function guestDir(): string {
  for (const up of ['..', '../..']) {
    const dir = join(fileURLToPath(new URL(up, import.meta.url)), 'build/guest');
    if (existsSync(dir)) return dir;
  }
  throw new Error('build/guest not found: run npm install (it builds the guests)');
}

interface RunFigures {
  result: unknown;
  ms: number;
  icount: bigint;
  refills: number;
}

function runGuest(bytes: BufferSource, slice: bigint | undefined): RunFigures {
  const module = new WebAssembly.Module(bytes);
  let refills = 0;
  let fuel: WebAssembly.Global | undefined;
  const imports: WebAssembly.Imports = {
    env: { abort: (_m: number, _f: number, line: number, col: number) => { throw new Error(`guest abort at ${line}:${col}`); } },
    ftwasm: { fuel_exhausted: () => { refills++; fuel!.value = (fuel!.value as bigint) + slice!; } },
  };
  const instance = new WebAssembly.Instance(module, imports);
  fuel = instance.exports.ftwasm_fuel as WebAssembly.Global | undefined;
  if (fuel && slice !== undefined) fuel.value = slice;
  const given = fuel ? (fuel.value as bigint) : 0n;
  const run = instance.exports.run as () => unknown;
  const started = process.hrtime.bigint();
  const result = run();
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  const icount = fuel ? given + BigInt(refills) * slice! - (fuel.value as bigint) : 0n;
  return { result, ms, icount, refills };
}

export function demoCommand(opts: { guest?: string; slice: string }): void {
  const slice = BigInt(opts.slice);
  const names = opts.guest ? [opts.guest] : DEMO_GUESTS;
  const dir = guestDir();
  const rows: string[][] = [['guest', 'result', 'plain ms', 'metered ms', 'ratio', 'icount', 'refills', 'size +%', 'checks']];
  for (const name of names) {
    const path = join(dir, `${name}.wasm`);
    if (!existsSync(path)) throw new Error(`guest ${name} not built: ${path} is missing (run npm install)`);
    const plain = readFileSync(path);
    const metered = instrument(plain);
    const meta = readInstrumentMeta(new WebAssembly.Module(metered))!;
    const a = runGuest(plain, undefined);
    const b = runGuest(metered, slice);
    if (String(a.result) !== String(b.result)) throw new Error(`${name}: metered result ${String(b.result)} differs from plain ${String(a.result)}`);
    rows.push([
      name, String(a.result), a.ms.toFixed(0), b.ms.toFixed(0), (b.ms / a.ms).toFixed(3), b.icount.toLocaleString('en-US'),
      String(b.refills), ((metered.length / plain.length - 1) * 100).toFixed(1), String(meta.checks),
    ]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const row of rows) process.stdout.write(row.map((c, i) => c.padStart(widths[i]!)).join('  ') + '\n');
  process.stdout.write(`\nicount = instructions the guest executed, counted by ftwasm's injected fuel meter; the host refilled ${slice} fuel at each exhaustion.\n`);
}
