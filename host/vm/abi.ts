// The guest ABI as the host sees it: every import ftwasm intercepts, and the admission check.
// docs/ABI.md is the guest-facing description of the same table.

/** Imports of module `ft` (the ftwasm guest ABI) and their exact signatures. */
export const FT_SIGNATURES: Readonly<Record<string, string>> = {
  clock_now: '-> i64',
  clock_mono: '-> i64',
  random_fill: 'i32 i32 ->',
  cpu_id: '-> i32',
  recv: 'i32 i32 i32 -> i32',
  send: 'i32 i32 i32 ->',
  log: 'i32 i32 ->',
};
export const FT_IMPORTS = Object.keys(FT_SIGNATURES);

/** AssemblyScript runtime imports, recorded and replayed like the ABI's. */
export const AS_SIGNATURES: Readonly<Record<string, string>> = {
  abort: 'i32 i32 i32 i32 ->',
  trace: 'i32 i32 f64 f64 f64 f64 f64 ->',
  seed: '-> f64',
  'Date.now': '-> f64',
};
export const AS_IMPORTS = Object.keys(AS_SIGNATURES);

/** Largest `recv` buffer and `log` text a guest may pass in one call (larger traps). */
export const IO_BYTES_MAX = 16 * 1024 * 1024;
/** Longest `random_fill` in one call (docs/ABI.md); larger traps. */
export const RANDOM_FILL_BYTES_MAX = 65_536;
/**
 * Default largest message payload (docs/ABI.md `MESSAGE_BYTES_MAX`): a `send` longer than the host's limit
 * traps, and a client request longer is refused before it reaches the guest. 1 MiB less 1 KiB, so that a
 * request with its session id and its RECV entry fits one log frame (1 MiB) and the input ring.
 */
export const MESSAGE_BYTES_MAX = (1 << 20) - 1024;

export type DeterministicImports = Record<string, Record<string, WebAssembly.ImportValue>>;

/**
 * Refuses, before anything runs, a module importing what is neither intercepted by ftwasm nor declared
 * deterministic by the embedder. Returns the list of refused imports (empty when admitted).
 */
export function refusedImports(module: WebAssembly.Module, deterministic: DeterministicImports = {}, signatures: readonly { module: string; name: string; type: string }[] = []): string[] {
  const refused: string[] = [];
  const typeOf = new Map(signatures.map((s) => [`${s.module}\u0000${s.name}`, s.type]));
  for (const imp of WebAssembly.Module.imports(module)) {
    if (imp.module === 'ftwasm' && imp.name === 'fuel_exhausted') continue;
    if (deterministic[imp.module]?.[imp.name] !== undefined) continue;
    const abi = imp.module === 'ft' ? FT_SIGNATURES[imp.name] : imp.module === 'env' ? AS_SIGNATURES[imp.name] : undefined;
    if (abi === undefined || imp.kind !== 'function') {
      refused.push(`${imp.module}.${imp.name} (${imp.kind})`);
      continue;
    }
    const actual = typeOf.get(`${imp.module}\u0000${imp.name}`);
    if (actual !== undefined && normal(actual) !== normal(abi)) refused.push(`${imp.module}.${imp.name} with type (${actual}), the ABI's is (${abi})`);
  }
  return refused;
}

const normal = (t: string): string => t.replace(/\s+/g, ' ').trim();
