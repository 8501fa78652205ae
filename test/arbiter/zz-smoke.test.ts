import { it, expect } from 'vitest';
import { openArbiter } from '../../host/arbiter/index.ts';
it('smoke', async () => {
  const a = await openArbiter('etcd:http://127.0.0.1:23799', { deployment: 'smk' + Date.now() });
  console.log(await a.current());
  console.log(await a.claim(1, 'n1'));
  console.log(await a.claim(1, 'n2'));
  await expect(a.claim(3, 'n2')).rejects.toThrow(/GAP/);
  const r = await Promise.all(Array.from({length: 20}, (_, i) => a.claim(2, 'r' + i)));
  console.log(r.filter(x => x.won));
  const l = await (a as any).holdLease((await a.current())!, 2);
  console.log(l.leaseId, await (a as any).leaseHolder());
  await l.release();
  console.log(await (a as any).leaseHolder());
  await a.close();
  const t0 = Date.now();
  await expect(openArbiter('etcd:http://127.0.0.1:1', { request_timeout_ms: 500, retries_max: 2 })).rejects.toThrow(/UNREACHABLE/);
  console.log('unreach ms', Date.now() - t0);
});
