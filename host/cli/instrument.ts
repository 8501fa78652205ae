import { readFileSync, writeFileSync } from 'node:fs';
import { instrument } from '../instrument/index.ts';

export function instrumentCommand(input: string, opts: { output: string; fuel?: string }): void {
  const bytes = readFileSync(input);
  const started = process.hrtime.bigint();
  const out = instrument(bytes, opts.fuel === undefined ? {} : { fuel: BigInt(opts.fuel) });
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  writeFileSync(opts.output, out);
  const growth = ((out.length / bytes.length - 1) * 100).toFixed(1);
  process.stdout.write(`${input}: ${bytes.length} -> ${out.length} bytes (+${growth}%) in ${ms.toFixed(1)} ms, wrote ${opts.output}\n`);
}
