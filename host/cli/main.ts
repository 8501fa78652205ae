#!/usr/bin/env node
// The `ftwasm` command. Each subcommand is a thin shell over the embedding API.
import { Command } from 'commander';
import { instrumentCommand } from './instrument.ts';
import { demoCommand } from './demo.ts';
import { failoverDemoCommand } from './failover-demo.ts';
import { recordCommand } from './record.ts';
import { replayCommand } from './replay.ts';
import { inspectCommand } from './inspect.ts';
import { backupCommand, loadCommand, primaryCommand } from './replicate.ts';

const program = new Command();
program.name('ftwasm').description('Fault tolerance for WebAssembly guests: instruction-counted record/replay and failover.');

program
  .command('instrument')
  .description('inject the fuel meter and state exports into a module')
  .argument('<in.wasm>', 'module to instrument')
  .requiredOption('-o, --output <out.wasm>', 'where to write the instrumented module')
  .option('--fuel <n>', 'initial fuel (default 2^63-1)')
  .option('--unwind', "also let the guest's stack be unwound at a recv, so snapshots of it can be taken (state transfer, docs/SNAPSHOT.md)")
  .action(instrumentCommand);

program
  .command('failover-demo')
  .description('npm start: primary + backup of the kv guest on loopback, a client load, kill -9 of the primary midway')
  .option('--sessions <n>', 'client sessions', '4')
  .option('--requests <n>', 'requests per session', '500')
  .action(failoverDemoCommand);

program
  .command('demo')
  .description('instrument and run an example guest, printing its instruction count and meter figures')
  .option('--guest <name>', 'guest from build/guest (default: every compute guest found)')
  .option('--slice <n>', 'fuel slice: the host refills this much at each exhaustion', '10000000')
  .action(demoCommand);

program
  .command('record')
  .description('run a guest, answering its imports from the world and recording them; stdin lines are messages of session 1')
  .argument('<guest.wasm>', 'guest module (instrumented on the fly unless it already is)')
  .requiredOption('--log <file>', 'log file to write')
  .option('--force', 'replace an existing log file')
  .option('--slice <n>', 'instructions between host check-ins (interrupt latency)')
  .option('--checkpoint <n>', 'write a state-hash checkpoint every n instructions')
  .option('--tick-ms <ms>', 'raise a timer interrupt (event 1) every ms milliseconds')
  .option('--state-transfer', 'run the guest prepared for snapshots, as `primary --state-transfer` does (replay the log with --state-transfer)')
  .action(recordCommand);

program
  .command('replay')
  .description('replay a guest from its log, checking every import, output and checkpoint; exit 3 on divergence')
  .argument('<guest.wasm>', 'the module the log was recorded with')
  .requiredOption('--log <file>', 'log file to replay')
  .option('--quiet', 'do not print the replayed outputs')
  .option('--state-transfer', 'the log was recorded by nodes run with --state-transfer (the module prepared for snapshots)')
  .option('--snapshot <file>', 'replay a log that starts after a snapshot (a backup restored by state transfer writes FILE.snapshot beside its --log)')
  .action(replayCommand);

program
  .command('inspect')
  .description('print a log file (entries, counts and bytes by kind) or a snapshot file (FILE.snapshot)')
  .argument('<file>', 'log file or snapshot file')
  .option('--limit <n>', 'entries to list (0: all)', '50')
  .action(inspectCommand);

program
  .command('primary')
  .description('run a guest as the primary: win an epoch, serve clients, ship the log to a backup (docs/REPLICATION.md)')
  .argument('<guest.wasm>', 'guest module')
  .requiredOption('--clients <host:port>', 'client-facing address')
  .requiredOption('--replication <host:port>', 'address the backup connects to')
  .requiredOption('--arbiter <spec>', 'file:DIR or etcd:URL[,URL...]')
  .requiredOption('--secret-file <file>', 'shared secret of the log channel (at least 16 bytes)')
  .option('--deployment <name>', 'deployment name in the arbiter', 'default')
  .option('--heartbeat-ms <ms>', 'heartbeat interval (default 50)')
  .option('--timeout-ms <ms>', 'heartbeat timeout (default 300)')
  .option('--backup-wait-ms <ms>', 'time for a backup to connect before going on alone (default 10000)')
  .option('--advertise <host:port>', 'client address to tell the backup and clients (not_primary hints, the nodes list) (default: the --clients address unless it is a wildcard)')
  .option('--replay-lag-ms-max <ms>', "how far the backup's replay may trail before the guest is throttled and input held (default 100)")
  .option('--log <file>', 'also write the whole log to this new file, for `ftwasm replay`; on SIGTERM a live node closes its guest\'s input and prints its final state')
  .option('--metrics <host:port>', 'serve Prometheus metrics at http://HOST:PORT/metrics (loopback only)')
  .option('--state-transfer', 'prepare the guest for snapshots (it must be the same on primary and backup): a backup joining a node that is alone gets a snapshot and the log after it instead of the whole log')
  .option('--log-segment-mb <n>', 'with --log and --state-transfer: start a new log segment (FILE.1, FILE.2, ..., each after a snapshot in FILE.k.snapshot) once the current one passes n MiB')
  .option('--log-segments <k>', 'segments kept on disk, the oldest removed (default 3)')
  .action(primaryCommand);

program
  .command('backup')
  .description('follow a primary, replaying its log; take over when it goes silent (docs/REPLICATION.md)')
  .argument('<guest.wasm>', 'guest module (the same as the primary\'s)')
  .requiredOption('--primary <host:port>', "the primary's replication address")
  .requiredOption('--clients <host:port>', 'client-facing address (serves once live)')
  .option('--advertise <host:port>', 'client address to tell the primary, which names it to its clients (default: the --clients address unless it is a wildcard)')
  .requiredOption('--arbiter <spec>', 'file:DIR or etcd:URL[,URL...]')
  .requiredOption('--secret-file <file>', 'shared secret of the log channel')
  .option('--deployment <name>', 'deployment name in the arbiter', 'default')
  .option('--heartbeat-ms <ms>', 'heartbeat interval (default 50)')
  .option('--timeout-ms <ms>', 'heartbeat timeout (default 300)')
  .option('--connect-timeout-ms <ms>', 'time to reach the primary at start (default 10000)')
  .option('--log <file>', 'also write the whole log (received, then recorded once live) to this new file, for `ftwasm replay`')
  .option('--metrics <host:port>', 'serve Prometheus metrics at http://HOST:PORT/metrics (loopback only)')
  .option('--state-transfer', 'prepare the guest for snapshots (it must be the same on primary and backup): a backup joining a node that is alone gets a snapshot and the log after it instead of the whole log')
  .option('--log-segment-mb <n>', 'with --log and --state-transfer: start a new log segment (FILE.1, FILE.2, ..., each after a snapshot in FILE.k.snapshot) once the current one passes n MiB')
  .option('--log-segments <k>', 'segments kept on disk, the oldest removed (default 3)')
  .option('--replication <host:port>', 'once live, take a new backup here (it catches up from seq 1, then protects this node); keeps the whole log in memory meanwhile')
  .action(backupCommand);

program
  .command('load')
  .description('kv client load across failovers; prints a JSON verdict {sent,responses,lost,duplicated,out_of_order} last')
  .requiredOption('--servers <a,b>', 'host:port of every node')
  .requiredOption('--sessions <n>', 'concurrent sessions')
  .requiredOption('--requests <m>', 'requests per session')
  .option('--interval-ms <ms>', 'pause between requests of a session', '0')
  .option('--timeout-ms <ms>', 'give up waiting for responses after this long', '60000')
  .option('--no-discover', 'keep to --servers (by default the sessions also try the nodes the primary names: a backup that joined later)')
  .action(loadCommand);

program.parseAsync(process.argv).catch((error: unknown) => {
  const e = error as { code?: string; message?: string };
  process.stderr.write(`ftwasm: ${e.message ?? String(error)}\n`);
  // 3: the log and the guest disagree (divergence, corrupt log, wrong module); 1: anything else.
  process.exitCode = e.code === 'FTW_DIVERGENCE' || e.code?.startsWith('FTW_LOG') ? 3 : 1;
});
