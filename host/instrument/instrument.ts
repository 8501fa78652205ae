// instrument(): bytes -> bytes. Reads the module's sections once to learn its index spaces, then writes
// it out again with the fuel import, the fuel global, state exports and metered code. Everything not
// touched is copied byte for byte, in the original order.
import { ByteReader, ByteWriter } from './bytes.ts';
import { InstrumentError } from './errors.ts';
import { Meter, index, readValType } from './meter.ts';

export interface InstrumentOptions {
  /** Fuel the guest starts with; default 2^63-1 (never runs out in practice). */
  fuel?: bigint;
  /**
   * Give counted leaf loops a second copy without checks, taken when the fuel covers the whole loop
   * (docs/METER.md). Icounts and check points are the same either way; default true.
   */
  versionLoops?: boolean;
}

/** What `instrument` wrote into the module's `ftwasm` custom section, for the host. */
export interface InstrumentMeta {
  format: 1;
  fuelExport: 'ftwasm_fuel';
  /** An exported function returning the fuel as an f64: a host reads it without making a BigInt. */
  fuelF64Export: 'ftwasm_fuel_f64';
  fuelInitial: string;
  fuelGlobal: number;
  exhaustedImport: { module: 'ftwasm'; name: 'fuel_exhausted'; func: number };
  /** Export name of every mutable global (imported or defined, fuel excluded), by global index. */
  globals: Record<string, string>;
  /** Export names of memories and tables, by index. */
  memories: string[];
  tables: string[];
  /** True when the module has a start section (code that runs inside instantiation). */
  start: boolean;
  /** The module's own function imports with their signatures (`i32 i32 -> i64`), for admission checks. */
  imports: { module: string; name: string; type: string }[];
  functions: number;
  segments: number;
  checks: number;
  /** Counted leaf loops that also got a copy without checks (absent in modules from before it existed). */
  versionedLoops?: number;
  /**
   * The module was prepared by prepareUnwind (it exports the asyncify_* controls): its stack can be unwound
   * at a `recv`, so a snapshot of a running guest can be taken and restored (state transfer).
   */
  unwind?: boolean;
}

const VALTYPE_TEXT: Record<number, string> = { 0x7f: 'i32', 0x7e: 'i64', 0x7d: 'f32', 0x7c: 'f64', 0x7b: 'v128', 0x70: 'funcref', 0x6f: 'externref' };

export const FUEL_MAX = (1n << 63n) - 1n;
/** Largest module `instrument` takes: V8 compiles at most 1 GiB, and metering can double a module's size. */
export const MODULE_BYTES_MAX = 512 * 1024 * 1024;
export const META_SECTION = 'ftwasm';
const FUEL_EXPORT = 'ftwasm_fuel';
const FUEL_F64_EXPORT = 'ftwasm_fuel_f64';
/** What prepareUnwind's stack switching exports (Binaryen's Asyncify). */
export const UNWIND_EXPORTS = ['asyncify_start_unwind', 'asyncify_stop_unwind', 'asyncify_start_rewind', 'asyncify_stop_rewind', 'asyncify_get_state'] as const;

// Section ids and their required order (custom sections aside). 13 is the exception-handling tag section.
const SECTION_RANK: Record<number, number> = { 1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 13: 6, 6: 7, 7: 8, 8: 9, 9: 10, 12: 11, 10: 12, 11: 13 };
const SECTION_NAME: Record<number, string> = {
  0: 'custom', 1: 'type', 2: 'import', 3: 'function', 4: 'table', 5: 'memory', 6: 'global', 7: 'export',
  8: 'start', 9: 'element', 10: 'code', 11: 'data', 12: 'datacount', 13: 'tag',
};

interface Section {
  id: number;
  /** Offset of the id byte. */
  start: number;
  contentStart: number;
  contentEnd: number;
  /** For custom sections: the name. */
  name?: string;
}

/** What the first pass learns. */
interface ModuleInfo {
  sections: Section[];
  typeParams: number[];
  /** Every type as text, e.g. `i32 i32 -> i64` (for the import list of the metadata). */
  typeText: string[];
  /** Function imports as written: module, name, type index. */
  funcImports: { module: string; name: string; type: number }[];
  emptyType: number; // index of a [] -> [] type, or -1
  f64Type: number; // index of a [] -> [f64] type, or -1
  importedFuncs: number;
  globalMutable: boolean[]; // imported then defined
  importedGlobals: number;
  memories: number;
  tables: number;
  funcTypes: number[]; // defined functions' type indices
  exportNames: Set<string>;
  exportedGlobals: Map<number, string>;
  exportedMemories: Map<number, string>;
  exportedTables: Map<number, string>;
  codeCount: number;
}

/**
 * Rewrites a Wasm module so that it counts the instructions it executes in an exported i64 fuel global
 * (`ftwasm_fuel`), calls `ftwasm.fuel_exhausted` when the fuel falls below zero, and exports all of its
 * mutable state. Throws InstrumentError for anything malformed or unsupported; never returns a module
 * whose behaviour differs from the original but for the meter.
 */
export function instrument(bytes: Uint8Array, options: InstrumentOptions = {}): Uint8Array<ArrayBuffer> {
  const fuel = options.fuel ?? FUEL_MAX;
  if (typeof fuel !== 'bigint' || fuel < 0n || fuel > FUEL_MAX) {
    throw new InstrumentError('FTW_BAD_OPTION', `fuel must be a bigint in [0, 2^63-1], got ${String(fuel)}`, -1);
  }
  if (bytes.length > MODULE_BYTES_MAX) {
    throw new InstrumentError('FTW_UNSUPPORTED', `module of ${bytes.length} bytes exceeds ftwasm's limit of ${MODULE_BYTES_MAX}`, -1);
  }
  const versionLoops = options.versionLoops ?? true;
  if (typeof versionLoops !== 'boolean') {
    throw new InstrumentError('FTW_BAD_OPTION', `versionLoops must be a boolean, got ${String(versionLoops)}`, -1);
  }
  const info = readModule(bytes);
  return writeModule(bytes, info, fuel, versionLoops);
}

/** Reads the metadata `instrument` left in a module, or undefined for a module it did not instrument. */
export function readInstrumentMeta(module: WebAssembly.Module): InstrumentMeta | undefined {
  const sections = WebAssembly.Module.customSections(module, META_SECTION);
  if (sections.length === 0) return undefined;
  // A section of that name that ftwasm did not write (or that was damaged) is named, not half-trusted.
  const bad = (why: string): never => {
    throw new InstrumentError('FTW_BAD_MODULE', `custom section "${META_SECTION}" is not ftwasm's metadata: ${why}`, -1);
  };
  if (sections.length > 1) bad(`${sections.length} such sections`);
  let meta: unknown;
  try {
    meta = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(sections[0]));
  } catch (error) {
    bad(`not UTF-8 JSON (${(error as Error).message})`);
  }
  const m = meta as Partial<InstrumentMeta> | null;
  if (typeof m !== 'object' || m === null || Array.isArray(m)) return bad('not a JSON object');
  if (m.format !== 1) bad(`format ${JSON.stringify(m.format)}, expected 1`);
  if (m.fuelExport !== FUEL_EXPORT || m.fuelF64Export !== FUEL_F64_EXPORT) bad('unexpected fuel export names');
  if (typeof m.fuelInitial !== 'string' || !/^\d{1,19}$/.test(m.fuelInitial) || BigInt(m.fuelInitial) > FUEL_MAX) bad('fuelInitial is not a fuel amount');
  for (const k of ['fuelGlobal', 'functions', 'segments', 'checks'] as const) if (!Number.isInteger(m[k]) || m[k]! < 0) bad(`${k} is not a count`);
  const x = m.exhaustedImport;
  if (typeof x !== 'object' || x === null || x.module !== 'ftwasm' || x.name !== 'fuel_exhausted' || !Number.isInteger(x.func)) bad('exhaustedImport is malformed');
  if (typeof m.globals !== 'object' || m.globals === null || Object.values(m.globals).some((v) => typeof v !== 'string')) bad('globals is malformed');
  for (const k of ['memories', 'tables'] as const) if (!Array.isArray(m[k]) || m[k]!.some((v) => typeof v !== 'string')) bad(`${k} is malformed`);
  if (typeof m.start !== 'boolean') bad('start is not a boolean');
  if (m.versionedLoops !== undefined && (!Number.isInteger(m.versionedLoops) || m.versionedLoops < 0)) bad('versionedLoops is not a count');
  if (!Array.isArray(m.imports) || m.imports.some((i) => typeof i !== 'object' || i === null || typeof i.module !== 'string' || typeof i.name !== 'string' || typeof i.type !== 'string')) bad('imports is malformed');
  return m as InstrumentMeta;
}

// ---------------------------------------------------------------------------------------------------
// First pass: the index spaces.

function readModule(bytes: Uint8Array): ModuleInfo {
  const r = new ByteReader(bytes);
  if (bytes.length < 8) r.fail('not a Wasm module: shorter than its 8-byte preamble', 0);
  if (bytes[0] !== 0x00 || bytes[1] !== 0x61 || bytes[2] !== 0x73 || bytes[3] !== 0x6d) r.fail('not a Wasm module: bad magic', 0);
  if (bytes[4] !== 0x01 || bytes[5] !== 0x00 || bytes[6] !== 0x00 || bytes[7] !== 0x00) {
    r.fail('unsupported binary version (ftwasm reads core modules, version 1)', 4);
  }
  r.pos = 8;
  const info: ModuleInfo = {
    sections: [], typeParams: [], typeText: [], funcImports: [], emptyType: -1, f64Type: -1, importedFuncs: 0, globalMutable: [], importedGlobals: 0,
    memories: 0, tables: 0, funcTypes: [], exportNames: new Set(), exportedGlobals: new Map(),
    exportedMemories: new Map(), exportedTables: new Map(), codeCount: -1,
  };
  let lastRank = 0;
  while (!r.atEnd()) {
    const start = r.pos;
    const id = r.u8();
    const size = r.u32();
    const contentStart = r.pos;
    if (size > bytes.length - contentStart) r.fail(`section ${SECTION_NAME[id] ?? id} runs past the end of the module`, start);
    const contentEnd = contentStart + size;
    const section: Section = { id, start, contentStart, contentEnd };
    const s = new ByteReader(bytes, contentStart, contentEnd);
    if (id === 0) {
      const [a, b] = s.vecBytes();
      section.name = decodeName(bytes, a, b, s);
      if (section.name === META_SECTION) {
        throw new InstrumentError('FTW_ALREADY_INSTRUMENTED', 'module already carries an ftwasm custom section', start);
      }
    } else {
      const rank = SECTION_RANK[id];
      if (rank === undefined) r.fail(`unknown section id ${id}`, start);
      if (rank <= lastRank) r.fail(`section ${SECTION_NAME[id]} out of order or repeated`, start);
      lastRank = rank;
      readKnownSection(id, s, info);
      if (s.pos !== contentEnd) s.fail(`section ${SECTION_NAME[id]} size does not match its content`);
    }
    info.sections.push(section);
    r.pos = contentEnd;
  }
  if (info.codeCount === -1 && info.funcTypes.length > 0) r.fail('function section without code section', bytes.length);
  if (info.codeCount !== -1 && info.codeCount !== info.funcTypes.length) {
    r.fail(`function and code section counts differ (${info.funcTypes.length} vs ${info.codeCount})`, bytes.length);
  }
  return info;
}

function decodeName(bytes: Uint8Array, start: number, end: number, r: ByteReader): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(start, end));
  } catch {
    return r.fail('name is not valid UTF-8', start);
  }
}

function readKnownSection(id: number, s: ByteReader, info: ModuleInfo): void {
  switch (id) {
    case 1:
      return readTypes(s, info);
    case 2:
      return readImports(s, info);
    case 3: {
      const n = s.u32();
      for (let i = 0; i < n; i++) info.funcTypes.push(s.u32());
      return;
    }
    case 4: {
      const n = s.u32();
      for (let i = 0; i < n; i++) readTableType(s);
      info.tables += n;
      return;
    }
    case 5: {
      const n = s.u32();
      for (let i = 0; i < n; i++) readLimits(s, 'memory');
      info.memories += n;
      return;
    }
    case 6: {
      const n = s.u32();
      for (let i = 0; i < n; i++) {
        readValType(s, 'global type');
        info.globalMutable.push(readMutability(s));
        skipConstExpr(s, UNCHECKED); // checked against the final index spaces in the second pass
      }
      return;
    }
    case 7:
      return readExports(s, info);
    case 10: {
      info.codeCount = s.u32();
      for (let i = 0; i < info.codeCount; i++) s.skip(s.u32());
      return;
    }
    case 13:
      throw new InstrumentError('FTW_UNSUPPORTED', 'exception handling (tag section) is not metered yet', s.pos);
    default:
      s.pos = s.end; // start, element, datacount, data: checked in the second pass or by the engine
  }
}

function readTypes(s: ByteReader, info: ModuleInfo): void {
  const n = s.u32();
  for (let i = 0; i < n; i++) {
    const at = s.pos;
    const form = s.u8();
    if (form !== 0x60) {
      if (form === 0x4e || form === 0x4f || form === 0x50 || form === 0x5e || form === 0x5f) {
        throw new InstrumentError('FTW_UNSUPPORTED', `type form 0x${form.toString(16)} needs GC`, at);
      }
      s.fail(`invalid type form 0x${form.toString(16)}`, at);
    }
    const params = s.u32();
    const text: string[] = [];
    for (let j = 0; j < params; j++) text.push(VALTYPE_TEXT[readValType(s, 'parameter type')]!);
    text.push('->');
    const results = s.u32();
    let last = 0;
    for (let j = 0; j < results; j++) text.push(VALTYPE_TEXT[(last = readValType(s, 'result type'))]!);
    info.typeParams.push(params);
    info.typeText.push(text.join(' '));
    if (params === 0 && results === 0 && info.emptyType === -1) info.emptyType = i;
    if (params === 0 && results === 1 && last === 0x7c && info.f64Type === -1) info.f64Type = i;
  }
}

function readImports(s: ByteReader, info: ModuleInfo): void {
  const n = s.u32();
  for (let i = 0; i < n; i++) {
    const [ma, mb] = s.vecBytes();
    const [fa, fb] = s.vecBytes();
    const moduleName = decodeName(s.buf, ma, mb, s);
    const field = decodeName(s.buf, fa, fb, s);
    if (moduleName === 'ftwasm' && field === 'fuel_exhausted') {
      throw new InstrumentError('FTW_ALREADY_INSTRUMENTED', 'module already imports ftwasm.fuel_exhausted', ma);
    }
    const at = s.pos;
    const kind = s.u8();
    switch (kind) {
      case 0:
        info.funcImports.push({ module: moduleName, name: field, type: index(s, info.typeParams.length, 'imported function type') });
        info.importedFuncs++;
        break;
      case 1:
        readTableType(s);
        info.tables++;
        break;
      case 2:
        readLimits(s, 'memory');
        info.memories++;
        break;
      case 3:
        readValType(s, 'global type');
        info.globalMutable.push(readMutability(s));
        info.importedGlobals++;
        break;
      case 4:
        throw new InstrumentError('FTW_UNSUPPORTED', 'exception handling (tag import) is not metered yet', at);
      default:
        s.fail(`invalid import kind ${kind}`, at);
    }
  }
}

function readMutability(s: ByteReader): boolean {
  const at = s.pos;
  const m = s.u8();
  if (m > 1) s.fail(`invalid global mutability ${m}`, at);
  return m === 1;
}

function readTableType(s: ByteReader): void {
  const at = s.pos;
  const t = s.u8();
  if (t !== 0x70 && t !== 0x6f) {
    if (t === 0x40) throw new InstrumentError('FTW_UNSUPPORTED', 'table with initializer needs typed references', at);
    s.pos = at;
    readValType(s, 'table element type');
    s.fail(`invalid table element type 0x${t.toString(16)}`, at);
  }
  readLimits(s, 'table');
}

function readLimits(s: ByteReader, what: 'memory' | 'table'): void {
  const at = s.pos;
  const flags = s.u8();
  if (what === 'memory' && (flags & 0x02) !== 0) {
    throw new InstrumentError('FTW_SHARED_MEMORY', 'shared memory: ftwasm replicates a single-threaded guest (one core, as VMware FT)', at);
  }
  if (flags & 0x04) throw new InstrumentError('FTW_UNSUPPORTED', `64-bit ${what} (memory64) is not supported`, at);
  if (flags > 1 && !(what === 'table' && flags <= 3)) s.fail(`invalid ${what} limits flags 0x${flags.toString(16)}`, at);
  s.u32();
  if (flags & 0x01) s.u32();
}

function readExports(s: ByteReader, info: ModuleInfo): void {
  const n = s.u32();
  for (let i = 0; i < n; i++) {
    const [a, b] = s.vecBytes();
    const name = decodeName(s.buf, a, b, s);
    const at = s.pos;
    const kind = s.u8();
    const index = s.u32();
    if (name === FUEL_EXPORT) throw new InstrumentError('FTW_ALREADY_INSTRUMENTED', `module already exports ${FUEL_EXPORT}`, a);
    info.exportNames.add(name);
    if (kind === 3 && !info.exportedGlobals.has(index)) info.exportedGlobals.set(index, name);
    if (kind === 2 && !info.exportedMemories.has(index)) info.exportedMemories.set(index, name);
    if (kind === 1 && !info.exportedTables.has(index)) info.exportedTables.set(index, name);
    if (kind > 4) s.fail(`invalid export kind ${kind}`, at);
  }
}

/** Original index-space sizes; references past them are malformed (we add entries right after). */
interface Limits {
  funcs: number;
  globals: number;
}

/** Skips a constant expression up to and including its `end`. */
function skipConstExpr(s: ByteReader, limits: Limits): void {
  rewriteConstExpr(s, null, identity, limits);
}

const identity = (i: number): number => i;
const UNCHECKED: Limits = { funcs: Infinity, globals: Infinity };

/**
 * Copies a constant expression to `out` (when given), renumbering `ref.func`. Constant expressions hold
 * only constants, ref.null/ref.func, global.get and (extended-const) arithmetic, all without blocks.
 */
function rewriteConstExpr(s: ByteReader, out: ByteWriter | null, remap: (i: number) => number, limits: Limits): void {
  for (;;) {
    const at = s.pos;
    const op = s.u8();
    switch (op) {
      case 0x0b:
        out?.bytes(s.buf, at, s.pos);
        return;
      case 0xd2: {
        const f = index(s, limits.funcs, 'function');
        if (out) {
          out.byte(op);
          out.u32(remap(f));
        }
        continue;
      }
      case 0x41:
        s.skipSigned(32);
        break;
      case 0x42:
        s.skipSigned(64);
        break;
      case 0x43:
        s.skip(4);
        break;
      case 0x44:
        s.skip(8);
        break;
      case 0x23:
        index(s, limits.globals, 'global');
        break;
      case 0xd0:
        s.u8();
        break;
      case 0xfd: {
        const sub = s.u32();
        if (sub !== 12) s.fail(`operator 0xfd ${sub} is not constant`, at);
        s.skip(16);
        break;
      }
      default:
        // extended-const arithmetic has no immediates; anything else the engine will reject
        if (!(op >= 0x45 && op <= 0xc4)) s.fail(`operator 0x${op.toString(16)} is not constant`, at);
    }
    out?.bytes(s.buf, at, s.pos);
  }
}

// ---------------------------------------------------------------------------------------------------
// Second pass: writing.

interface Plan {
  limits: Limits;
  fuel: bigint;
  fuelGlobal: number;
  exhaustedFunc: number;
  emptyType: number; // type index for the import, existing or appended
  f64Type: number; // type index of the fuel getter, existing or appended
  /** Types to append to the type section, in order: `[] -> []` and/or `[] -> [f64]`. */
  addedTypes: ('empty' | 'f64')[];
  /** Index of the added function returning the fuel as f64. */
  getterFunc: number;
  newExports: { name: string; kind: number; index: number }[];
  meta: InstrumentMeta;
  versionLoops: boolean;
}

function plan(info: ModuleInfo, fuel: bigint): Plan {
  const fuelGlobal = info.globalMutable.length;
  const exhaustedFunc = info.importedFuncs;
  const addedTypes: Plan['addedTypes'] = [];
  if (info.emptyType === -1) addedTypes.push('empty');
  if (info.f64Type === -1) addedTypes.push('f64');
  const emptyType = info.emptyType !== -1 ? info.emptyType : info.typeParams.length + addedTypes.indexOf('empty');
  const f64Type = info.f64Type !== -1 ? info.f64Type : info.typeParams.length + addedTypes.indexOf('f64');
  const getterFunc = info.importedFuncs + 1 + info.funcTypes.length;
  const newExports: Plan['newExports'] = [
    { name: FUEL_EXPORT, kind: 3, index: fuelGlobal },
    { name: FUEL_F64_EXPORT, kind: 0, index: getterFunc },
  ];
  const globals: Record<string, string> = {};
  info.globalMutable.forEach((mutable, index) => {
    if (!mutable) return;
    const existing = info.exportedGlobals.get(index);
    const name = existing ?? `ftwasm_global_${index}`;
    if (!existing) newExports.push({ name, kind: 3, index });
    globals[index] = name;
  });
  const memories = stateExports(info.memories, info.exportedMemories, 'ftwasm_memory', 2, newExports);
  const tables = stateExports(info.tables, info.exportedTables, 'ftwasm_table', 1, newExports);
  for (const e of newExports) {
    if (info.exportNames.has(e.name)) {
      throw new InstrumentError('FTW_UNSUPPORTED', `export name ${e.name} is reserved by ftwasm`, -1);
    }
  }
  const meta: InstrumentMeta = {
    format: 1, fuelExport: FUEL_EXPORT, fuelF64Export: FUEL_F64_EXPORT, fuelInitial: fuel.toString(), fuelGlobal,
    exhaustedImport: { module: 'ftwasm', name: 'fuel_exhausted', func: exhaustedFunc },
    globals, memories, tables,
    start: info.sections.some((section) => section.id === 8),
    imports: info.funcImports.map((f) => ({ module: f.module, name: f.name, type: info.typeText[f.type]! })),
    functions: info.importedFuncs + info.funcTypes.length, segments: 0, checks: 0, versionedLoops: 0,
    ...(UNWIND_EXPORTS.every((name) => info.exportNames.has(name)) ? { unwind: true } : {}),
  };
  const limits = { funcs: info.importedFuncs + info.funcTypes.length, globals: info.globalMutable.length };
  return { limits, fuel, fuelGlobal, exhaustedFunc, emptyType, f64Type, addedTypes, getterFunc, newExports, meta, versionLoops: true };
}

function stateExports(count: number, exported: Map<number, string>, base: string, kind: number, out: Plan['newExports']): string[] {
  const names: string[] = [];
  for (let i = 0; i < count; i++) {
    const existing = exported.get(i);
    const name = existing ?? (i === 0 ? base : `${base}_${i}`);
    if (!existing) out.push({ name, kind, index: i });
    names.push(name);
  }
  return names;
}

function writeModule(bytes: Uint8Array, info: ModuleInfo, fuel: bigint, versionLoops: boolean): Uint8Array<ArrayBuffer> {
  const p = plan(info, fuel);
  p.versionLoops = versionLoops;
  const remap = (f: number): number => (f < p.exhaustedFunc ? f : f + 1);
  const out = new ByteWriter(Math.ceil(bytes.length * 1.5) + 256);
  out.bytes(bytes, 0, 8);
  const body = new ByteWriter(4096);
  const present = new Set(info.sections.map((s) => s.id));
  // Sections we must add when the module has none; each goes before the first section ranked after it.
  const pending = [1, 2, 3, 6, 7, 10].filter((id) => !present.has(id));
  const flushPending = (beforeRank: number): void => {
    while (pending.length > 0 && SECTION_RANK[pending[0]!]! < beforeRank) {
      const id = pending.shift()!;
      body.reset();
      writeSynthetic(id, p, body);
      emitSection(out, id, body);
    }
  };
  for (const section of info.sections) {
    if (section.id !== 0) flushPending(SECTION_RANK[section.id]!);
    const s = new ByteReader(bytes, section.contentStart, section.contentEnd);
    body.reset();
    if (section.id === 10) body.reserve(Math.ceil((section.contentEnd - section.contentStart) * 1.8));
    if (!rewriteSection(section, s, info, p, remap, body)) {
      out.bytes(bytes, section.start, section.contentEnd);
      continue;
    }
    emitSection(out, section.id, body);
  }
  flushPending(Infinity);
  body.reset();
  body.name(META_SECTION);
  body.bytes(new TextEncoder().encode(JSON.stringify(p.meta)));
  emitSection(out, 0, body);
  return out.toBytes();
}

function emitSection(out: ByteWriter, id: number, body: ByteWriter): void {
  out.byte(id);
  out.sized(body);
}

function writeSynthetic(id: number, p: Plan, body: ByteWriter): void {
  if (id === 1) {
    body.u32(p.addedTypes.length);
    writeAddedTypes(p, body);
    return;
  }
  if (id === 7) {
    body.u32(p.newExports.length);
    for (const e of p.newExports) writeExport(e, body);
    return;
  }
  body.u32(1);
  if (id === 2) writeExhaustedImport(p, body);
  else if (id === 3) body.u32(p.f64Type);
  else if (id === 6) writeFuelGlobal(p, body);
  else if (id === 10) writeFuelGetter(p, body);
}

function writeAddedTypes(p: Plan, body: ByteWriter): void {
  for (const t of p.addedTypes) {
    body.byte(0x60);
    body.byte(0);
    if (t === 'empty') body.byte(0);
    else {
      body.byte(1);
      body.byte(0x7c);
    }
  }
}

/** The body of `ftwasm_fuel_f64`: unmetered, it costs no fuel. */
function writeFuelGetter(p: Plan, body: ByteWriter): void {
  const fn = new ByteWriter(16);
  fn.byte(0); // no locals
  fn.byte(0x23); // global.get fuel
  fn.u32(p.fuelGlobal);
  fn.byte(0xb9); // f64.convert_i64_s
  fn.byte(0x0b);
  body.sized(fn);
}

function writeExhaustedImport(p: Plan, body: ByteWriter): void {
  body.name('ftwasm');
  body.name('fuel_exhausted');
  body.byte(0);
  body.u32(p.emptyType);
}

function writeFuelGlobal(p: Plan, body: ByteWriter): void {
  body.byte(0x7e);
  body.byte(1);
  body.byte(0x42);
  body.s64(p.fuel);
  body.byte(0x0b);
}

function writeExport(e: { name: string; kind: number; index: number }, body: ByteWriter): void {
  body.name(e.name);
  body.byte(e.kind);
  body.u32(e.index);
}

/** Writes the new content of `section` into `body`; false means "copy it unchanged". */
function rewriteSection(section: Section, s: ByteReader, info: ModuleInfo, p: Plan, remap: (f: number) => number, body: ByteWriter): boolean {
  switch (section.id) {
    case 0:
      return section.name === 'name' && rewriteNameSection(s, p, remap, body);
    case 1: {
      if (p.addedTypes.length === 0) return false;
      body.u32(s.u32() + p.addedTypes.length);
      body.bytes(s.buf, s.pos, s.end);
      writeAddedTypes(p, body);
      return true;
    }
    case 3:
      body.u32(s.u32() + 1);
      body.bytes(s.buf, s.pos, s.end);
      body.u32(p.f64Type);
      return true;
    case 2:
      body.u32(s.u32() + 1);
      body.bytes(s.buf, s.pos, s.end);
      writeExhaustedImport(p, body);
      return true;
    case 6: {
      const n = s.u32();
      body.u32(n + 1);
      for (let i = 0; i < n; i++) {
        body.bytes(s.buf, s.pos, s.pos + 2); // valtype, mutability (checked in the first pass)
        s.pos += 2;
        rewriteConstExpr(s, body, remap, p.limits);
      }
      writeFuelGlobal(p, body);
      return true;
    }
    case 7: {
      const n = s.u32();
      body.u32(n + p.newExports.length);
      for (let i = 0; i < n; i++) {
        const [a, b] = s.vecBytes();
        const kind = s.u8();
        const i = kind === 0 ? index(s, p.limits.funcs, 'exported function') : kind === 3 ? index(s, p.limits.globals, 'exported global') : s.u32();
        body.u32(b - a);
        body.bytes(s.buf, a, b);
        body.byte(kind);
        body.u32(kind === 0 ? remap(i) : i);
      }
      for (const e of p.newExports) writeExport(e, body);
      return true;
    }
    case 8:
      body.u32(remap(index(s, p.limits.funcs, 'start function')));
      if (!s.atEnd()) s.fail('start section size does not match its content');
      return true;
    case 9:
      rewriteElements(s, body, remap, p.limits);
      return true;
    case 11:
      checkData(s, p.limits);
      return false;
    case 10:
      rewriteCode(s, info, p, remap, body);
      return true;
    default:
      return false;
  }
}

/** Data segments are copied as they are, but their offsets may not name the fuel global. */
function checkData(s: ByteReader, limits: Limits): void {
  const n = s.u32();
  for (let i = 0; i < n; i++) {
    const at = s.pos;
    const flags = s.u32();
    if (flags > 2) s.fail(`invalid data segment flags ${flags}`, at);
    if (flags === 2) s.u32();
    if (flags !== 1) skipConstExpr(s, limits);
    s.vecBytes();
  }
  if (!s.atEnd()) s.fail('data section size does not match its content');
}

function rewriteElements(s: ByteReader, body: ByteWriter, remap: (f: number) => number, limits: Limits): void {
  const n = s.u32();
  body.u32(n);
  for (let i = 0; i < n; i++) {
    const at = s.pos;
    const flags = s.u32();
    if (flags > 7) s.fail(`invalid element segment flags ${flags}`, at);
    body.u32(flags);
    const active = (flags & 1) === 0;
    const explicitTable = (flags & 2) !== 0;
    const usesExprs = (flags & 4) !== 0;
    if (active && explicitTable) body.u32(s.u32());
    if (active) rewriteConstExpr(s, body, remap, limits);
    if (!active || explicitTable) {
      const k = s.u8(); // elemkind (0x00) or reftype
      body.byte(k);
    }
    const count = s.u32();
    body.u32(count);
    for (let j = 0; j < count; j++) {
      if (usesExprs) rewriteConstExpr(s, body, remap, limits);
      else body.u32(remap(index(s, limits.funcs, 'element function')));
    }
  }
  if (!s.atEnd()) s.fail('element section size does not match its content');
}

function rewriteCode(s: ByteReader, info: ModuleInfo, p: Plan, remap: (f: number) => number, body: ByteWriter): void {
  const meter = new Meter({
    fuelGlobal: p.fuelGlobal, exhaustedFunc: p.exhaustedFunc, remapFunc: remap,
    typeCount: info.typeParams.length, typeParams: info.typeParams, funcCount: p.limits.funcs, globalCount: p.limits.globals,
    versionLoops: p.versionLoops,
  });
  const fnBody = new ByteWriter(4096);
  const n = s.u32();
  body.u32(n + 1);
  for (let i = 0; i < n; i++) {
    const size = s.u32();
    const end = s.pos + size;
    const r = new ByteReader(s.buf, s.pos, end);
    r.functionIndex = info.importedFuncs + i;
    const typeIndex = info.funcTypes[i]!;
    const params = info.typeParams[typeIndex];
    if (params === undefined) r.fail(`function type index ${typeIndex} out of range`);
    fnBody.reset();
    meter.meterBody(r, params, fnBody);
    body.sized(fnBody);
    s.pos = end;
  }
  writeFuelGetter(p, body);
  p.meta.segments = meter.stats.segments;
  p.meta.checks = meter.stats.checks;
  p.meta.versionedLoops = meter.stats.versioned;
}

/**
 * Renumbers function indices in the name section (function, local and label names). A malformed name
 * section is dropped: engines ignore it anyway, and its indices could not be trusted.
 */
function rewriteNameSection(s: ByteReader, p: Plan, remap: (f: number) => number, body: ByteWriter): boolean {
  s.vecBytes(); // the section's own name, "name"
  const start = s.pos;
  body.name('name');
  const sub = new ByteWriter(1024);
  try {
    while (!s.atEnd()) {
      const id = s.u8();
      const size = s.u32();
      const end = s.pos + size;
      if (end > s.end) s.fail('name subsection runs past its section');
      const r = new ByteReader(s.buf, s.pos, end);
      sub.reset();
      if (id === 1) rewriteNameMap(r, sub, remap, p.exhaustedFunc);
      else if (id === 2 || id === 3) rewriteIndirectNameMap(r, sub, remap);
      else sub.bytes(s.buf, s.pos, end);
      if (!r.atEnd() && (id === 1 || id === 2 || id === 3)) r.fail('name subsection size does not match');
      body.byte(id);
      body.sized(sub);
      s.pos = end;
    }
  } catch (error) {
    if (!(error instanceof InstrumentError)) throw error;
    body.reset();
    body.name('ftwasm.dropped-name'); // keep the section count stable; tools ignore unknown custom sections
    body.bytes(s.buf, start, s.end);
  }
  return true;
}

function rewriteNameMap(r: ByteReader, out: ByteWriter, remap: (f: number) => number, inserted: number): void {
  const n = r.u32();
  out.u32(n + 1);
  let added = false;
  const addOurs = (): void => {
    out.u32(inserted);
    out.name('ftwasm.fuel_exhausted');
    added = true;
  };
  for (let i = 0; i < n; i++) {
    const index = r.u32();
    const [a, b] = r.vecBytes();
    if (!added && index >= inserted) addOurs();
    out.u32(remap(index));
    out.u32(b - a);
    out.bytes(r.buf, a, b);
  }
  if (!added) addOurs();
}

function rewriteIndirectNameMap(r: ByteReader, out: ByteWriter, remap: (f: number) => number): void {
  const n = r.u32();
  out.u32(n);
  for (let i = 0; i < n; i++) {
    out.u32(remap(r.u32()));
    const start = r.pos;
    const inner = r.u32();
    for (let j = 0; j < inner; j++) {
      r.u32();
      r.vecBytes();
    }
    out.bytes(r.buf, start, r.pos);
  }
}
