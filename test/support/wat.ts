// WAT -> bytes for tests, with the npm build of wabt (no system package needed).
import wabtInit from 'wabt';

type Wabt = Awaited<ReturnType<typeof wabtInit>>;
let wabt: Wabt | undefined;

/** Compiles WAT text to a binary module, with debug names kept. */
export async function wat(text: string, features: Record<string, boolean> = {}): Promise<Uint8Array<ArrayBuffer>> {
  wabt ??= await wabtInit();
  const module = wabt.parseWat('test.wat', text, features);
  try {
    module.resolveNames();
    const { buffer } = module.toBinary({ write_debug_names: true });
    return new Uint8Array(buffer);
  } finally {
    module.destroy();
  }
}
