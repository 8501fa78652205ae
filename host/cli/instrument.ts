import { readFileSync, writeFileSync } from 'node:fs';
import { instrument, prepareUnwind } from '../instrument/index.ts';

export async function instrumentCommand(input: string, opts: { output: string; fuel?: string; unwind?: boolean }): Promise<void> {
  const bytes = readFileSync(input);
  const started = process.hrtime.bigint();
  // --unwind: snapshots at a recv (state transfer, docs/SNAPSHOT.md) become possible; Binaryen's Asyncify first.
  const source = opts.unwind ? await prepareUnwind(bytes) : bytes;
  const out = instrument(source, opts.fuel === undefined ? {} : { fuel: BigInt(opts.fuel) });
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  writeFileSync(opts.output, out);
  const growth = ((out.length / bytes.length - 1) * 100).toFixed(1);
  process.stdout.write(`${input}: ${bytes.length} -> ${out.length} bytes (+${growth}%) in ${ms.toFixed(1)} ms, wrote ${opts.output}\n`);
}
