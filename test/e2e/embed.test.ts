// The README's "replicated guest inside a Node service" block, run exactly as written: the embedding API
// it shows must exist and behave as its comments say.
import { describe, expect, it } from 'vitest';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnCli } from '../../host/cli/procs.ts';

const root = new URL('../..', import.meta.url).pathname;

describe('README embedding example', () => {
  it('runs as written: answers through the primary, then through the backup after the primary closes', { timeout: 60_000 }, async () => {
    const readme = readFileSync(join(root, 'README.md'), 'utf8');
    const block = /<!-- embed-example:begin -->\s*```js\n([\s\S]*?)```\s*<!-- embed-example:end -->/.exec(readme);
    expect(block, 'README.md has the embed-example block').not.toBeNull();
    // In the repository root, so `import ... from 'ftwasm'` resolves to this package (self-reference).
    const script = join(root, `.embed-example-${process.pid}.mjs`);
    writeFileSync(script, block![1]!);
    try {
      const child = spawnCli(script, []);
      const code = await Promise.race([child.exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 45_000))]);
      if (code === 'timeout') child.process.kill('SIGKILL');
      expect(code, child.stderr()).toBe(0);
      expect(child.stdout().trim().split('\n')).toEqual(['OK', 'VALUE hello', 'backup live in epoch 2', 'VALUE hello']);
    } finally {
      rmSync(script, { force: true });
    }
  });
});
