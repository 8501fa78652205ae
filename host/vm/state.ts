// State hash of a guest: memory, mutable globals (the fuel excepted: its value depends on how the host
// sliced the run), tables, and the instruction count. Two instances that passed through the same states
// have the same hash; the hash says nothing about which host ran them.
import { createHash } from 'node:crypto';
import type { InstrumentMeta } from '../instrument/index.ts';

export interface GuestState {
  exports: WebAssembly.Exports;
  meta: InstrumentMeta;
}

/** 16 bytes of SHA-256 over the guest's whole state. */
export function stateHash(state: GuestState, icount: bigint): Uint8Array {
  const h = createHash('sha256');
  const word = Buffer.alloc(8);
  word.writeBigUInt64LE(icount);
  h.update(word);
  for (const name of state.meta.memories) {
    const memory = state.exports[name] as WebAssembly.Memory;
    word.writeBigUInt64LE(BigInt(memory.buffer.byteLength));
    h.update(word);
    h.update(new Uint8Array(memory.buffer));
  }
  const indices = Object.keys(state.meta.globals).map(Number).sort((a, b) => a - b);
  for (const index of indices) {
    const global = state.exports[state.meta.globals[index]!] as WebAssembly.Global;
    h.update(`g${index}=${globalText(global)};`);
  }
  for (const name of state.meta.tables) {
    const table = state.exports[name] as WebAssembly.Table;
    h.update(`t${name}:${table.length};`);
    for (let i = 0; i < table.length; i++) h.update(`${refText(table.get(i))},`);
  }
  return new Uint8Array(h.digest().subarray(0, 16));
}

function globalText(global: WebAssembly.Global): string {
  try {
    const v: unknown = global.value;
    if (typeof v === 'number') return Object.is(v, -0) ? '-0' : Number.isNaN(v) ? 'nan' : String(v);
    if (typeof v === 'bigint') return `${v}n`;
    return refText(v);
  } catch {
    return 'v128'; // v128 globals cannot be read from JS; their effect shows in memory
  }
}

function refText(v: unknown): string {
  if (v === null) return 'null';
  // An exported Wasm function's `name` is its function index.
  if (typeof v === 'function') return `f${v.name}`;
  return typeof v;
}

export function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex');
}
