// Loading a guest for the CLI: instrument it unless it already is, and hash the original bytes.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { instrument, prepareUnwind, readInstrumentMeta } from '../instrument/index.ts';

export const FTWASM_VERSION = '0.1.0';

export interface LoadedGuest {
  module: WebAssembly.Module;
  /** SHA-256 of the file as given: a log names the module it was recorded with. */
  moduleHash: Uint8Array;
}

/**
 * `--state-transfer`: the guest prepared for snapshots at a recv (prepareUnwind), then instrumented. Its
 * moduleHash is that of the prepared bytes, so a log recorded this way names a module the plain one is not
 * (their icounts differ). An instrumented file must have been instrumented with --unwind.
 */
export async function loadGuestFor(path: string, stateTransfer: boolean | undefined): Promise<LoadedGuest> {
  if (!stateTransfer) return loadGuest(path);
  const bytes = readFileSync(path);
  try {
    const probe = new WebAssembly.Module(bytes);
    const meta = readInstrumentMeta(probe);
    if (meta) {
      if (meta.unwind !== true) throw new Error('instrumented without --unwind: no snapshot can be taken of it (instrument the original with --unwind, or pass it uninstrumented)');
      return { module: probe, moduleHash: new Uint8Array(createHash('sha256').update(bytes).digest()) };
    }
    const prepared = await prepareUnwind(bytes);
    return { module: new WebAssembly.Module(instrument(prepared)), moduleHash: new Uint8Array(createHash('sha256').update(prepared).digest()) };
  } catch (error) {
    const e = error as Error & { code?: string };
    throw Object.assign(new Error(`guest ${path}: ${e.message}`, { cause: error }), e.code ? { code: e.code } : {});
  }
}

export function loadGuest(path: string): LoadedGuest {
  const bytes = readFileSync(path);
  const moduleHash = new Uint8Array(createHash('sha256').update(bytes).digest());
  try {
    const probe = new WebAssembly.Module(bytes);
    // An already instrumented module is taken as it is; its metadata is checked here, before anything runs.
    if (readInstrumentMeta(probe)) return { module: probe, moduleHash };
    return { module: new WebAssembly.Module(instrument(bytes)), moduleHash };
  } catch (error) {
    const e = error as Error & { code?: string };
    throw Object.assign(new Error(`guest ${path}: ${e.message}`, { cause: error }), e.code ? { code: e.code } : {});
  }
}

/** A message as `recv` delivers it: 4-byte LE session id, then the payload. */
export function sessionMessage(session: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + payload.length);
  new DataView(out.buffer).setUint32(0, session, true);
  out.set(payload, 4);
  return out;
}

/** The closing lines of record and replay; outside checks read them. */
export function printFinal(icount: bigint, stateHash: Uint8Array): void {
  process.stderr.write(`icount: ${icount}\nstate-hash: ${Buffer.from(stateHash).toString('hex')}\n`);
}
