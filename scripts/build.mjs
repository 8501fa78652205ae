// Builds the host (TypeScript -> dist/, esbuild) and every guest (AssemblyScript -> build/guest/*.wasm).
// Runs on `npm install` (the `prepare` script), so a fresh checkout is usable at once.
import { build } from 'esbuild';
import { readdirSync, mkdirSync, existsSync, statSync, chmodSync } from 'node:fs';
import { join, basename } from 'node:path';

const root = new URL('..', import.meta.url).pathname;

async function buildHost() {
  await build({
    entryPoints: { index: join(root, 'host/index.ts'), cli: join(root, 'host/cli/main.ts'), worker: join(root, 'host/vm/worker.ts') },
    outdir: join(root, 'dist'),
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    sourcemap: true,
    logLevel: 'warning',
  });
  chmodSync(join(root, 'dist/cli.js'), 0o755);
}

// Extra asc flags per guest group (guest/<group>/). Bench guests are also fed to wasm-metering, whose
// parser predates post-MVP opcodes, so that group may restrict features here.
const GROUP_FLAGS = {
  // Examples are command guests: the top-level code becomes the exported `_start` (no wasm start section),
  // so the host decides when it runs (docs/ABI.md).
  examples: ['--exportStart', '_start'],
  bench: ['--disable', 'sign-extension,nontrapping-f2i,bulk-memory,mutable-globals'],
};

// Every guest/<group>/*.ts file with no leading underscore is one guest.
function guestSources() {
  const out = [];
  for (const group of ['examples', 'bench']) {
    const dir = join(root, 'guest', group);
    if (!existsSync(dir)) continue;
    for (const name of readdirSync(dir)) {
      if (!name.endsWith('.ts') || name.startsWith('_') || name.endsWith('.d.ts')) continue;
      if (!statSync(join(dir, name)).isFile()) continue;
      out.push({ group, name: basename(name, '.ts'), path: join(dir, name) });
    }
  }
  return out;
}

async function buildGuests() {
  const asc = (await import('assemblyscript/asc')).default;
  const outDir = join(root, 'build/guest');
  mkdirSync(outDir, { recursive: true });
  for (const guest of guestSources()) {
    const outFile = join(outDir, `${guest.name}.wasm`);
    const args = [guest.path, '--config', join(root, 'asconfig.json'), '--target', 'release', '--outFile', outFile, ...GROUP_FLAGS[guest.group]];
    const { error, stderr } = await asc.main(args, {});
    if (error) {
      process.stderr.write(stderr.toString());
      throw new Error(`guest build failed: ${guest.group}/${guest.name}.ts: ${error.message}`);
    }
  }
}

await buildHost();
await buildGuests();
