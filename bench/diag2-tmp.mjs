// perf: node --perf-basic-prof
import { startPrimary, openFileArbiter, instrument } from 'ftwasm';
import { spawn } from 'node:child_process';
import { readFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
const dir = mkdtempSync('/tmp/diag/a');
const SECRET = new TextEncoder().encode('bench replication secret, 32 bytes');
writeFileSync(dir + '.secret', SECRET);
const module = new WebAssembly.Module(instrument(readFileSync('/work/main/build/guest/kv.wasm')));
const arbiter = await openFileArbiter(dir, { deployment: 'bench' });
const SOLO = process.env.SOLO === '1';
const p = await startPrimary({ module, arbiter, secret: SECRET, heartbeat_timeout_ms: 2000, replay_lag_ms_max: 100000, ...(SOLO ? { backup_wait_ms: 0 } : {}) });
const r = p.replicationAddress();
const pin = (c, args) => process.env.PIN ? ['taskset', ['-c', c, ...args]] : [args[0], args.slice(1)];
const b = SOLO ? { kill() {} } : spawn(...pin('1', [process.execPath, ...(process.env.BPROF ? ['--cpu-prof', '--cpu-prof-dir=/tmp/bp'] : []), '/work/main/dist/cli.js', 'backup', '/work/main/build/guest/kv.wasm', '--primary', `${r.host}:${r.port}`, '--clients', '127.0.0.1:0', '--arbiter', `file:${dir}`, '--deployment', 'bench', '--secret-file', dir + '.secret', '--timeout-ms', '2000']), { stdio: 'inherit' });
while (!(SOLO ? p.state().role === 'primary' && p.state().solo : p.state().peer_connected)) await new Promise((r) => setTimeout(r, 10));
const a = p.clientAddress();
const NICE = process.env.NICE;
if (NICE) {
  const { readdirSync } = await import('node:fs'); const osm = await import('node:os');
  for (const pid of [process.pid, b.pid].filter(Boolean)) for (const tid of readdirSync(`/proc/${pid}/task`)) if (+tid !== pid) { try { osm.setPriority(+tid, +NICE); } catch (e) { console.log('nice', e.message); } }
}
const T = { hold: [], ack: [], flushDelay: [], outBatch: [], frameGap: [] };
let measuring = false;
const gate = p.gate;
const heldAt = [];
const os = gate.onSend.bind(gate);
let lastOut = 0;
gate.onSend = (s, bytes, seq) => { const t = performance.now(); heldAt.push(t); return os(s, bytes, seq); };
const orel = gate.release.bind(gate);
gate.release = (w) => { const before = gate.outputs_released; const res = orel(w); const n = gate.outputs_released - before; const t = performance.now(); const took = heldAt.splice(0, n); if (measuring) for (const x of took) T.hold.push(t - x); return res; };
const sends = [];
if (!SOLO) {
  const peer = p.peer;
  const sp = peer.sendParts.bind(peer);
  peer.sendParts = (type, parts) => { if (type === 6) sends.push([performance.now(), p.gate.last_seq]); return sp(type, parts); };
  const oa = p.onAck.bind(p);
  p.onAck = (seq) => { const t = performance.now(); while (sends.length && sends[0][1] <= seq) { const x = sends.shift(); if (measuring) T.ack.push(t - x[0]); } return oa(seq); };
}
const of = p.onFrame.bind(p);
let lastFrame = 0;
p.onFrame = (...args) => { const t = performance.now(); if (measuring && lastFrame) T.frameGap.push(t - lastFrame); lastFrame = t; return of(...args); };
const load = spawn(...pin(process.env.LOADCPU ?? '1', [process.execPath, '/work/main/bench/kv-load.mjs', '--server', `${a.host}:${a.port}`, '--workload', process.argv[2] ?? 'get90', '--sessions', process.env.SESS ?? '8', '--window', process.env.WIN ?? '32', '--warm-ms', '300', '--ms', '1500', '--latency', '10']), { stdio: ['ignore', 'pipe', 'inherit'] });
let out = '';
let elu0; let started = false;
load.stdout.on('data', (d) => { out += d; if (!started && out.includes('window-start')) { started = true; measuring = true; elu0 = performance.eventLoopUtilization(); } if (measuring && out.includes('window-end') && elu0) { console.log('primary main ELU', performance.eventLoopUtilization(elu0).utilization.toFixed(3)); elu0 = undefined; measuring = false; } });
await new Promise((r) => load.once('exit', r));
const q = (a, f) => { a.sort((x, y) => x - y); return a.length ? a[Math.min(a.length - 1, Math.floor(a.length * f))].toFixed(3) : '-'; };
for (const [k, v] of Object.entries(T)) console.log(k, 'n', v.length, 'p10', q(v, 0.1), 'p50', q(v, 0.5), 'p90', q(v, 0.9), 'p99', q(v, 0.99));
{ const r = JSON.parse(out.trim().split('\n').at(-1)); console.log('rps', Math.round(r.requests_per_s)); }
b.kill('SIGTERM');
await p.close();
process.exit(0);
