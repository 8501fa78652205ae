// Prometheus metrics of a primary and its backup: scraped over HTTP on 127.0.0.1, the values follow the nodes'
// state as requests go through and the backup takes over.
import { describe, expect, it } from 'vitest';
import http from 'node:http';
import { Registry } from 'prom-client';
import { nodeMetrics, serveMetrics } from '../../host/replication/index.ts';
import { replicationFixture, text, WAIT_MS_MAX } from './support.ts';

const fx = replicationFixture('metrics');

function get(port: number, path: string, method = 'GET'): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method, timeout: 5_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body }));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${path} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

/** Every sample of a Prometheus text page: `name{labels}` -> value. */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

async function scrape(port: number): Promise<Map<string, number>> {
  const r = await get(port, '/metrics');
  expect(r.status).toBe(200);
  expect(r.type).toMatch(/^text\/plain/);
  return samples(r.body);
}

async function until(cond: () => boolean | Promise<boolean>, what: string): Promise<void> {
  const t0 = Date.now();
  while (!(await cond())) {
    if (Date.now() - t0 > WAIT_MS_MAX) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}


describe('metrics', () => {
  it('follow a primary and its backup through requests and a failover', async () => {
    const a = await fx.arbiter();
    const p = await fx.primary({ arbiter: a });
    const b = await fx.backupOf(p, a);
    const pm = await serveMetrics(nodeMetrics(p, { processMetrics: true }));
    const bm = await serveMetrics(nodeMetrics(b));
    fx.cleanup(() => pm.close());
    fx.cleanup(() => bm.close());
    expect(pm.address().host).toBe('127.0.0.1');

    const c = fx.client(p.clientAddress(), b.clientAddress());
    for (let i = 0; i < 10; i++) await c.call(text('INCR m'));
    await until(() => b.state().acked_seq === p.state().last_seq, 'the backup to ack everything');

    const ps = await scrape(pm.address().port);
    const bs = await scrape(bm.address().port);
    expect(ps.get('ftwasm_role{role="primary"}')).toBe(1);
    expect(ps.get('ftwasm_role{role="backup"}')).toBe(0);
    expect(bs.get('ftwasm_role{role="backup"}')).toBe(1);
    expect(bs.get('ftwasm_synced')).toBe(1); // a first backup is synced at HELLO
    expect(ps.get('ftwasm_rejoin{phase="catching_up"}')).toBe(0);
    expect(ps.get('ftwasm_rejoin{phase="snapshot"}')).toBe(0);
    expect(bs.get('ftwasm_restored_seq')).toBe(0); // it follows from seq 1
    expect(ps.get('ftwasm_epoch')).toBe(1);
    expect(ps.get('ftwasm_outputs_released_total')).toBe(10);
    expect(ps.get('ftwasm_log_last_seq')).toBe(p.state().last_seq);
    expect(ps.get('ftwasm_log_acked_seq')).toBe(ps.get('ftwasm_log_last_seq'));
    expect(bs.get('ftwasm_log_acked_seq')).toBe(ps.get('ftwasm_log_last_seq'));
    expect(ps.get('ftwasm_held_outputs')).toBe(0);
    expect(ps.get('ftwasm_peer_connected')).toBe(1);
    expect(ps.get('ftwasm_solo')).toBe(0);
    expect(ps.get('ftwasm_client_sessions')).toBe(1);
    expect(ps.get('ftwasm_client_connections')).toBe(1);
    expect(ps.get('ftwasm_process_cpu_seconds_total')).toBeGreaterThan(0); // processMetrics: true
    expect(bs.has('ftwasm_process_cpu_seconds_total')).toBe(false);

    // A counter only grows, scrape after scrape.
    for (let i = 0; i < 5; i++) await c.call(text('INCR m'));
    expect((await scrape(pm.address().port)).get('ftwasm_outputs_released_total')).toBe(15);

    await p.close();
    await b.live;
    await c.call(text('INCR m'));
    await until(async () => (await scrape(bm.address().port)).get('ftwasm_outputs_released_total')! >= 1, 'the new primary to release');
    const after = await scrape(bm.address().port);
    expect(after.get('ftwasm_role{role="primary"}')).toBe(1);
    expect(after.get('ftwasm_role{role="backup"}')).toBe(0);
    expect(after.get('ftwasm_epoch')).toBe(2);
    expect(after.get('ftwasm_solo')).toBe(1);
    expect(after.get('ftwasm_client_connections')).toBe(1);
  });

  it('serve only GET /metrics, on loopback unless told otherwise, with labels of the caller', async () => {
    const registry = new Registry();
    const node = {
      state: () => ({ role: 'backup' as const, epoch: 3, lag_entries: 0, last_seq: 7, acked_seq: 7, released_seq: 5, held_outputs: 0, outputs_released: 0, solo: false, peer_connected: true, guest_exited: false, sessions_counted: 2 }),
      clientStats: () => undefined,
    };
    nodeMetrics(node, { registry, labels: { node: 'b1' } });
    const server = await serveMetrics(registry);
    fx.cleanup(() => server.close());
    const port = server.address().port;
    const page = samples((await get(port, '/metrics')).body);
    expect(page.get('ftwasm_epoch{node="b1"}')).toBe(3);
    expect(page.get('ftwasm_log_released_seq{node="b1"}')).toBe(5);
    expect((await get(port, '/')).status).toBe(404);
    expect((await get(port, '/metrics', 'POST')).status).toBe(405);
    expect((await get(port, '/metrics', 'HEAD')).status).toBe(200);
    await expect(serveMetrics(registry, { host: '0.0.0.0' })).rejects.toThrow(/FTW_REPL_OPTION: refusing to bind the metrics endpoint on 0.0.0.0/);
  });
});
