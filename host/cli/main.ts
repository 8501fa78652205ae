#!/usr/bin/env node
// The `ftwasm` command. Each subcommand is a thin shell over the embedding API.
import { Command } from 'commander';
import { instrumentCommand } from './instrument.ts';
import { demoCommand } from './demo.ts';

const program = new Command();
program.name('ftwasm').description('Fault tolerance for WebAssembly guests: instruction-counted record/replay and failover.');

program
  .command('instrument')
  .description('inject the fuel meter and state exports into a module')
  .argument('<in.wasm>', 'module to instrument')
  .requiredOption('-o, --output <out.wasm>', 'where to write the instrumented module')
  .option('--fuel <n>', 'initial fuel (default 2^63-1)')
  .action(instrumentCommand);

program
  .command('demo')
  .description('instrument and run an example guest, printing its instruction count and meter figures')
  .option('--guest <name>', 'guest from build/guest (default: every compute guest found)')
  .option('--slice <n>', 'fuel slice: the host refills this much at each exhaustion', '10000000')
  .action(demoCommand);

program.parseAsync(process.argv).catch((error: unknown) => {
  const e = error as { code?: string; message?: string };
  process.stderr.write(`ftwasm: ${e.message ?? String(error)}\n`);
  process.exitCode = e.code === 'FTW_DIVERGENCE' ? 3 : 1;
});
