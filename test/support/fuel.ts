// Helpers to run an instrumented module and read its instruction count.
export interface Metered {
  instance: WebAssembly.Instance;
  fuel: WebAssembly.Global;
}

/** Instantiates instrumented bytes; `onExhausted` answers `ftwasm.fuel_exhausted`. */
export function instantiateMetered(bytes: Uint8Array<ArrayBuffer>, imports: WebAssembly.Imports = {}, onExhausted: (fuel: WebAssembly.Global) => void = () => {
  throw new Error('fuel exhausted');
}): Metered {
  const holder: { fuel?: WebAssembly.Global } = {};
  const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes), {
    ...imports,
    ftwasm: { fuel_exhausted: () => onExhausted(holder.fuel!) },
  });
  holder.fuel = instance.exports.ftwasm_fuel as WebAssembly.Global;
  return { instance, fuel: holder.fuel };
}

/** Seeds for fast-check: fixed by FTWASM_SEED when given, random otherwise; always printed. */
export function propertySeed(name: string): number {
  const seed = process.env.FTWASM_SEED ? Number(process.env.FTWASM_SEED) : (Math.random() * 2 ** 31) | 0;
  console.log(`[fast-check] ${name}: seed ${seed} (rerun with FTWASM_SEED=${seed})`);
  return seed;
}
