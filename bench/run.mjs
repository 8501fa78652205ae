// Runs every benchmark script in bench/, one child process each so no script inherits another's JIT state,
// passing on this process's node flags (npm run bench adds --expose-gc). The other .mjs files here are
// modules the benchmarks share (common, kv-workloads) and the client load process (kv-load).
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

const dir = new URL('.', import.meta.url).pathname;
const scripts = ['instrument.mjs', 'log.mjs', 'replay.mjs', 'replication.mjs', 'replication-cores.mjs', 'catchup.mjs', 'snapshot.mjs'];
const args = process.argv.slice(2);
const failed = [];
for (const script of scripts) {
  console.log(`\n== bench/${script}`);
  const r = spawnSync(process.execPath, [...process.execArgv, join(dir, script), ...args], { stdio: 'inherit' });
  if (r.status !== 0) failed.push(`${script} (${r.signal ?? `exit ${r.status}`})`);
}
if (failed.length > 0) {
  console.error(`\nfailed: ${failed.join(', ')}`);
  process.exit(1);
}
