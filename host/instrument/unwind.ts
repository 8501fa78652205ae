// Stack unwinding for state transfer: a running guest's state is its memory and globals plus the Wasm call
// stack under its current `recv`, which the engine keeps out of reach. Binaryen's Asyncify pass (the
// `binaryen` package; not written by hand) rewrites every function that can reach `ft.recv` so that, on
// request, it saves its locals and its place into linear memory and returns (unwind), and later re-enters
// and restores them (rewind). The host uses it at a `recv` only (host/vm/core.ts, docs/SNAPSHOT.md).
//
// Run it before instrument(): the meter then counts the added code like any other, so every node running
// the same prepared module counts the same instructions. Binaryen's output depends only on its input and
// version (pinned in package-lock.json): the primary and every backup must run the same prepared bytes.
import { InstrumentError } from './errors.ts';
import { instrument, MODULE_BYTES_MAX, META_SECTION, UNWIND_EXPORTS } from './instrument.ts';

/** The only import a guest's stack is unwound at. */
export const UNWIND_IMPORT = 'ft.recv';

/**
 * Adds Asyncify's unwind/rewind to a plain (not yet instrumented) module, for `ft.recv` only. Functions that
 * cannot reach recv are left as they are. Throws InstrumentError FTW_UNWIND when Binaryen refuses the module.
 */
export async function prepareUnwind(bytes: Uint8Array): Promise<Uint8Array> {
  if (bytes.length > MODULE_BYTES_MAX) throw new InstrumentError('FTW_BAD_OPTION', `module of ${bytes.length} bytes exceeds ${MODULE_BYTES_MAX}`, -1);
  let module: WebAssembly.Module;
  try {
    module = new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>);
  } catch (error) {
    throw new InstrumentError('FTW_BAD_MODULE', `not a valid module: ${(error as Error).message}`, -1);
  }
  if (WebAssembly.Module.customSections(module, META_SECTION).length > 0) {
    throw new InstrumentError('FTW_ALREADY_INSTRUMENTED', 'prepareUnwind takes the module before instrument(), and this one carries the meter already', -1);
  }
  const names = new Set(WebAssembly.Module.exports(module).map((e) => e.name));
  if (UNWIND_EXPORTS.some((name) => names.has(name))) {
    throw new InstrumentError('FTW_UNWIND', 'module already exports asyncify_* functions (prepared twice?)', -1);
  }
  if (!WebAssembly.Module.imports(module).some((i) => i.kind === 'function' && `${i.module}.${i.name}` === UNWIND_IMPORT)) {
    throw new InstrumentError('FTW_UNWIND', `module does not import ${UNWIND_IMPORT}: there is nowhere to take a snapshot`, -1);
  }
  // The meter must take the module anyway: what it refuses (exceptions, shared memory, ...) is refused here
  // first, with its named error, before Binaryen sees a feature it was not told to allow.
  instrument(bytes);
  const { default: binaryen } = await import('binaryen');
  const F = binaryen.Features;
  // What V8 in Node 20 runs, and no more: Binaryen must not write newer encodings.
  const features = F.MVP | F.MutableGlobals | F.SignExt | F.NontrappingFPToInt | F.BulkMemory | F.BulkMemoryOpt | F.SIMD128 | F.ReferenceTypes | F.Multivalue;
  let m: ReturnType<typeof binaryen.readBinary> | undefined;
  try {
    m = binaryen.readBinary(bytes);
    m.setFeatures(features);
    binaryen.setPassArgument('asyncify-imports', UNWIND_IMPORT);
    m.runPasses(['asyncify']);
    if (!m.validate()) throw new Error('the rewritten module does not validate');
    return m.emitBinary();
  } catch (error) {
    throw new InstrumentError('FTW_UNWIND', `Binaryen's asyncify failed: ${(error as Error).message}`, -1);
  } finally {
    binaryen.setPassArgument('asyncify-imports', null);
    m?.dispose();
  }
}
