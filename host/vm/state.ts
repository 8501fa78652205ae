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
  h.update(tablesText(state.exports, state.meta));
  return new Uint8Array(h.digest().subarray(0, 16));
}

/** The tables as text: length and, per element, null or the function's index (what the state hash covers). */
export function tablesText(exports: WebAssembly.Exports, meta: InstrumentMeta): string {
  let text = '';
  for (const name of meta.tables) {
    const table = exports[name] as WebAssembly.Table;
    text += `t${name}:${table.length};`;
    for (let i = 0; i < table.length; i++) text += `${refText(table.get(i))},`;
  }
  return text;
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
