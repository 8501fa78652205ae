// The guest ABI as the host sees it: every import ftwasm intercepts, and the admission check.
// docs/ABI.md is the guest-facing description of the same table.

/** Imports of module `ft` (the ftwasm guest ABI). */
export const FT_IMPORTS = ['clock_now', 'clock_mono', 'random_fill', 'cpu_id', 'recv', 'send', 'log'] as const;

/** AssemblyScript runtime imports, recorded and replayed like the ABI's. */
export const AS_IMPORTS = ['abort', 'trace', 'seed', 'Date.now'] as const;

/** Longest `random_fill` / `send` / `log` a guest may ask for in one call. */
export const IO_BYTES_MAX = 16 * 1024 * 1024;

export type DeterministicImports = Record<string, Record<string, WebAssembly.ImportValue>>;

/**
 * Refuses, before anything runs, a module importing what is neither intercepted by ftwasm nor declared
 * deterministic by the embedder. Returns the list of refused imports (empty when admitted).
 */
export function refusedImports(module: WebAssembly.Module, deterministic: DeterministicImports = {}): string[] {
  const refused: string[] = [];
  for (const imp of WebAssembly.Module.imports(module)) {
    const known =
      (imp.module === 'ft' && (FT_IMPORTS as readonly string[]).includes(imp.name) && imp.kind === 'function') ||
      (imp.module === 'env' && (AS_IMPORTS as readonly string[]).includes(imp.name) && imp.kind === 'function') ||
      (imp.module === 'ftwasm' && imp.name === 'fuel_exhausted') ||
      deterministic[imp.module]?.[imp.name] !== undefined;
    if (!known) refused.push(`${imp.module}.${imp.name} (${imp.kind})`);
  }
  return refused;
}
