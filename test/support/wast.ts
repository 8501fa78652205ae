// A WebAssembly spec-script runner on V8's own WebAssembly API: it plays the JSON command list that
// `wast2json` writes and judges every command pass or fail. A `transform` hook rewrites every binary
// module before it is compiled, so the same script can be played on original and instrumented modules
// and the two outcomes compared command by command.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

// ---------------------------------------------------------------------------------------------------
// The JSON that wast2json writes (only the fields we read).

export interface WastValue {
  type: string;
  /** Decimal bit pattern, `nan:canonical`, `nan:arithmetic`, `null`, an extern number, or v128 lanes. */
  value?: string | string[];
  lane_type?: string;
}

export interface WastAction {
  type: 'invoke' | 'get';
  module?: string;
  field: string;
  args?: WastValue[];
}

export interface WastCommand {
  type: string;
  line: number;
  filename?: string;
  name?: string;
  as?: string;
  action?: WastAction;
  expected?: WastValue[];
  text?: string;
  module_type?: 'binary' | 'text';
}

export interface WastScript {
  source_filename: string;
  commands: WastCommand[];
}

// ---------------------------------------------------------------------------------------------------
// Outcomes.

/** `text-skipped`: a text-format module (`assert_malformed` on .wat); a text-parser test, not ours. */
export type Outcome = 'pass' | 'fail' | 'text-skipped';

export interface CommandResult {
  kind: string;
  line: number;
  outcome: Outcome;
  reason: string;
}

export interface RunOptions {
  /** Applied to every binary module before it is compiled; identity when absent. */
  transform?: (bytes: Uint8Array) => Uint8Array;
  /** Merged into every module's imports (e.g. `ftwasm.fuel_exhausted`). */
  imports?: WebAssembly.Imports;
  /** Whether an error thrown by `transform` is a deliberate refusal of bad bytes rather than a crash. */
  isRefusal?: (error: unknown) => boolean;
}

/** Plays every command of a script (the modules are read from `dir`) and judges each one. */
export function runScript(script: WastScript, dir: string, options: RunOptions = {}): CommandResult[] {
  const run = new ScriptRun(dir, options);
  return script.commands.map((command) => {
    const verdict = run.judge(command);
    return { kind: command.type, line: command.line, ...verdict };
  });
}

/** Counts per command kind. */
export interface KindCount {
  total: number;
  pass: number;
  fail: number;
  textSkipped: number;
}

/** Tallies results by command kind. */
export function tally(results: readonly CommandResult[]): Map<string, KindCount> {
  const counts = new Map<string, KindCount>();
  for (const r of results) {
    const c = counts.get(r.kind) ?? { total: 0, pass: 0, fail: 0, textSkipped: 0 };
    c.total++;
    if (r.outcome === 'pass') c.pass++;
    else if (r.outcome === 'fail') c.fail++;
    else c.textSkipped++;
    counts.set(r.kind, c);
  }
  return counts;
}

type Verdict = { outcome: Outcome; reason: string };
const pass = (reason = 'ok'): Verdict => ({ outcome: 'pass', reason });
const fail = (reason: string): Verdict => ({ outcome: 'fail', reason });

// ---------------------------------------------------------------------------------------------------
// One script's state: the current module, named modules, registered import namespaces.

class ScriptRun {
  private readonly registry = new Map<string, WebAssembly.ModuleImports>();
  private readonly named = new Map<string, WebAssembly.Instance>();
  // undefined after a module command failed, so later commands fail instead of hitting an older module.
  private current: WebAssembly.Instance | undefined;
  private readonly values: ValueCodec = new ValueCodec();

  constructor(
    private readonly dir: string,
    private readonly options: RunOptions,
  ) {
    this.registry.set('spectest', spectest());
  }

  judge(command: WastCommand): Verdict {
    try {
      return this.dispatch(command);
    } catch (error) {
      return fail(`runner error: ${describe(error)}`);
    }
  }

  private dispatch(c: WastCommand): Verdict {
    if (c.module_type === 'text') return { outcome: 'text-skipped', reason: 'text-format module' };
    switch (c.type) {
      case 'module':
        return this.defineModule(c);
      case 'register':
        return this.register(c);
      case 'action':
        return this.perform(c, (results) => (results.ok ? pass() : fail(`threw ${describe(results.error)}`)));
      case 'assert_return':
        return this.perform(c, (results) => (results.ok ? this.values.compare(c.expected ?? [], results.values) : fail(`threw ${describe(results.error)}`)));
      case 'assert_trap':
        return c.action ? this.perform(c, expectThrown(WebAssembly.RuntimeError, c.text)) : this.instantiateExpecting(c, WebAssembly.RuntimeError);
      case 'assert_exhaustion':
        return this.perform(c, expectThrown(RangeError, c.text));
      case 'assert_invalid':
      case 'assert_malformed':
        return this.expectRejected(c);
      case 'assert_unlinkable':
        return this.instantiateExpecting(c, WebAssembly.LinkError, TypeError);
      case 'assert_uninstantiable':
        return this.instantiateExpecting(c, WebAssembly.RuntimeError);
      default:
        return fail(`unknown command type ${c.type}`);
    }
  }

  private defineModule(c: WastCommand): Verdict {
    this.current = undefined;
    const instance = this.instantiate(this.compile(c));
    this.current = instance;
    if (c.name !== undefined) this.named.set(c.name, instance);
    return pass();
  }

  private register(c: WastCommand): Verdict {
    const instance = c.name !== undefined ? this.named.get(c.name) : this.current;
    if (instance === undefined) return fail(`no module ${c.name ?? '(current)'} to register`);
    this.registry.set(c.as ?? '', instance.exports);
    return pass();
  }

  private perform(c: WastCommand, judge: (r: ActionResult) => Verdict): Verdict {
    const action = c.action;
    if (action === undefined) return fail('command has no action');
    const instance = action.module !== undefined ? this.named.get(action.module) : this.current;
    if (instance === undefined) return fail(`no module ${action.module ?? '(current)'} instantiated`);
    const exported = instance.exports[action.field];
    if (exported === undefined) return fail(`no export ${JSON.stringify(action.field)}`);
    const types = (c.expected ?? []).map((v) => v.type);
    const call = action.type === 'get' ? () => this.values.readGlobal(exported, types) : () => this.values.invoke(exported, action.args ?? [], types);
    try {
      return judge({ ok: true, values: call() });
    } catch (error) {
      return judge({ ok: false, error });
    }
  }

  private expectRejected(c: WastCommand): Verdict {
    const bytes = this.readModule(c);
    let transformed: Uint8Array;
    try {
      transformed = this.transform(bytes);
    } catch (error) {
      const refused = this.options.isRefusal?.(error) ?? false;
      return refused ? pass(`transform refused: ${describe(error)}`) : fail(`transform crashed: ${describe(error)}`);
    }
    try {
      new WebAssembly.Module(asBuffer(transformed));
    } catch (error) {
      return error instanceof WebAssembly.CompileError ? pass(`V8 rejected: ${describe(error)}`) : fail(`compile threw ${describe(error)}`);
    }
    return fail(`V8 accepted a module the script says is ${c.type === 'assert_invalid' ? 'invalid' : 'malformed'} (${c.text ?? ''})`);
  }

  /** Compiles and instantiates expecting one of `expected` at instantiation (compiling must succeed). */
  private instantiateExpecting(c: WastCommand, ...expected: ErrorClass[]): Verdict {
    const module = this.compile(c);
    try {
      this.instantiate(module);
    } catch (error) {
      if (expected.some((e) => error instanceof e)) return pass();
      return fail(`instantiation threw ${describe(error)}, expected ${expected.map((e) => e.name).join(' or ')} (${c.text ?? ''})`);
    }
    return fail(`instantiation succeeded, expected ${expected.map((e) => e.name).join(' or ')} (${c.text ?? ''})`);
  }

  // Errors from these helpers propagate to judge() as failures with their message.
  private compile(c: WastCommand): WebAssembly.Module {
    return new WebAssembly.Module(asBuffer(this.transform(this.readModule(c))));
  }

  private instantiate(module: WebAssembly.Module): WebAssembly.Instance {
    const imports: WebAssembly.Imports = { ...Object.fromEntries(this.registry), ...this.options.imports };
    return new WebAssembly.Instance(module, imports);
  }

  private readModule(c: WastCommand): Uint8Array {
    if (c.filename === undefined) throw new Error(`${c.type} has no filename`);
    return readFileSync(join(this.dir, c.filename));
  }

  private transform(bytes: Uint8Array): Uint8Array {
    return this.options.transform ? this.options.transform(bytes) : bytes;
  }
}

type ActionResult = { ok: true; values: Flat[] } | { ok: false; error: unknown };
type ErrorClass = new (...args: never[]) => Error;

function expectThrown(expected: ErrorClass, text: string | undefined): (r: ActionResult) => Verdict {
  return (r) => {
    if (r.ok) return fail(`returned normally, expected ${expected.name} (${text ?? ''})`);
    if (r.error instanceof expected) return pass();
    return fail(`threw ${describe(r.error)}, expected ${expected.name} (${text ?? ''})`);
  };
}

/** The `spectest` module every script may import, fresh per script. */
function spectest(): WebAssembly.ModuleImports {
  const print = (): void => {};
  return {
    print,
    print_i32: print,
    print_i64: print,
    print_f32: print,
    print_f64: print,
    print_i32_f32: print,
    print_f64_f64: print,
    global_i32: new WebAssembly.Global({ value: 'i32', mutable: false }, 666),
    global_i64: new WebAssembly.Global({ value: 'i64', mutable: false }, 666n),
    global_f32: new WebAssembly.Global({ value: 'f32', mutable: false }, 666.6),
    global_f64: new WebAssembly.Global({ value: 'f64', mutable: false }, 666.6),
    table: new WebAssembly.Table({ element: 'anyfunc', initial: 10, maximum: 20 }),
    memory: new WebAssembly.Memory({ initial: 1, maximum: 2 }),
  };
}

function describe(error: unknown): string {
  if (error instanceof Error) return `${error.constructor.name}: ${error.message}`;
  return String(error);
}

// The DOM typings want an ArrayBuffer-backed view; Buffers from readFileSync and transform outputs are.
function asBuffer(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  return bytes as Uint8Array<ArrayBuffer>;
}

// ---------------------------------------------------------------------------------------------------
// Values across the JS boundary. f32/f64 NaN payloads do not survive a trip through a JS number (x86
// quiets signalling NaNs when widening f32) and v128 cannot cross at all, so any call whose signature
// has f32, f64 or v128 goes through an adapter module that imports the target and exposes it with
// f32 as i32 bits, f64 as i64 bits and v128 as two i64 halves. Every number then stays a bit pattern.

/** One value as it crosses the boundary: a number (i32, or f32 bits), a bigint (i64, f64 bits, a v128
 * half) or a reference; `unknown` because the engine hands back whatever the export returned. */
type Flat = unknown;

class ValueCodec {
  // `ref.extern N` in a script: a distinct host object per N, the same object every time N recurs.
  private readonly externs = new Map<string, object>();

  invoke(exported: unknown, args: readonly WastValue[], resultTypes: readonly string[]): Flat[] {
    if (typeof exported !== 'function') throw new Error('export is not a function');
    const paramTypes = args.map((a) => a.type);
    const target = exported as Callable;
    const fn = needsAdapter(paramTypes, resultTypes) ? adaptFunction(target, paramTypes, resultTypes) : target;
    const flatArgs = args.flatMap((a) => this.encode(a));
    const returned: unknown = fn(...flatArgs);
    const width = flatWidth(resultTypes);
    if (width === 0) return [];
    if (width === 1) return [returned];
    return Array.from(returned as Iterable<unknown>);
  }

  readGlobal(exported: unknown, types: readonly string[]): Flat[] {
    if (!(exported instanceof WebAssembly.Global)) throw new Error('export is not a global');
    const type = types[0];
    if (types.length !== 1 || type === undefined) throw new Error('get expects exactly one result');
    if (!needsAdapter([], [type])) return [exported.value];
    const getter = adaptGlobal(exported, type);
    const returned: unknown = getter();
    return flatWidth([type]) === 1 ? [returned] : Array.from(returned as Iterable<unknown>);
  }

  /** Compares results with a script's expectations; the reason names the first mismatch. */
  compare(expected: readonly WastValue[], got: readonly Flat[]): Verdict {
    if (flatWidth(expected.map((e) => e.type)) !== got.length) return fail(`expected ${expected.length} results, got ${got.length} flat values`);
    let at = 0;
    for (const [i, e] of expected.entries()) {
      const width = flatWidth([e.type]);
      const mismatch = this.mismatch(e, got.slice(at, at + width));
      if (mismatch !== undefined) return fail(`result ${i}: ${mismatch}`);
      at += width;
    }
    return pass();
  }

  private encode(v: WastValue): Flat[] {
    switch (v.type) {
      case 'i32':
      case 'f32':
        return [Number(BigInt.asIntN(32, BigInt(scalar(v))))];
      case 'i64':
      case 'f64':
        return [BigInt.asIntN(64, BigInt(scalar(v)))];
      case 'v128':
        return v128Halves(v128Bytes(v));
      case 'externref':
        return [scalar(v) === 'null' ? null : this.extern(scalar(v))];
      case 'funcref':
        if (scalar(v) === 'null') return [null];
        throw new Error(`cannot pass a non-null funcref argument (${scalar(v)})`);
      default:
        throw new Error(`unknown value type ${v.type}`);
    }
  }

  /** undefined when `got` matches `e`, otherwise what differs. */
  private mismatch(e: WastValue, got: readonly Flat[]): string | undefined {
    const [g] = got;
    switch (e.type) {
      case 'i32':
      case 'f32':
        return bitsMismatch(e.type, scalar(e), typeof g === 'number' ? BigInt(g) : undefined, 32);
      case 'i64':
      case 'f64':
        return bitsMismatch(e.type, scalar(e), typeof g === 'bigint' ? g : undefined, 64);
      case 'v128':
        return v128Mismatch(e, got);
      case 'externref': {
        const want = scalar(e) === 'null' ? null : this.extern(scalar(e));
        return g === want ? undefined : `expected externref ${scalar(e)}, got ${String(g)}`;
      }
      case 'funcref':
        if (scalar(e) === 'null') return g === null ? undefined : 'expected null funcref, got a function';
        return typeof g === 'function' ? undefined : `expected a function, got ${String(g)}`;
      default:
        return `unknown value type ${e.type}`;
    }
  }

  private extern(n: string): object {
    let host = this.externs.get(n);
    if (host === undefined) {
      host = { externref: n };
      this.externs.set(n, host);
    }
    return host;
  }
}

function scalar(v: WastValue): string {
  if (typeof v.value !== 'string') throw new Error(`${v.type} value missing`);
  return v.value;
}

function needsAdapter(params: readonly string[], results: readonly string[]): boolean {
  return [...params, ...results].some((t) => t === 'f32' || t === 'f64' || t === 'v128');
}

function flatWidth(types: readonly string[]): number {
  return types.reduce((n, t) => n + (t === 'v128' ? 2 : 1), 0);
}

// ---------------------------------------------------------------------------------------------------
// Comparing bit patterns, NaN classes included.

const NAN_PATTERNS = {
  32: { exponent: 0x7f800000n, quiet: 0x00400000n, sign: 0x80000000n },
  64: { exponent: 0x7ff0000000000000n, quiet: 0x0008000000000000n, sign: 0x8000000000000000n },
} as const;

function bitsMismatch(type: string, expected: string, got: bigint | undefined, width: 32 | 64): string | undefined {
  if (got === undefined) return `expected ${type}, got a non-${width === 32 ? 'number' : 'bigint'}`;
  const bits = BigInt.asUintN(width, got);
  if (!floatBitsMatch(expected, bits, width)) return `expected ${type} ${expected}, got 0x${bits.toString(16)}`;
  return undefined;
}

/** Whether `bits` matches a lane or scalar expectation: a bit pattern or a NaN class. */
function floatBitsMatch(expected: string, bits: bigint, width: 32 | 64): boolean {
  const p = NAN_PATTERNS[width];
  const magnitude = bits & ~p.sign;
  // canonical: quiet bit only in the payload; arithmetic: any payload with the quiet bit set.
  if (expected === 'nan:canonical') return magnitude === (p.exponent | p.quiet);
  if (expected === 'nan:arithmetic') return (magnitude & (p.exponent | p.quiet)) === (p.exponent | p.quiet);
  return bits === BigInt.asUintN(width, BigInt(expected));
}

const LANE_BITS: Record<string, 8 | 16 | 32 | 64> = { i8: 8, i16: 16, i32: 32, i64: 64, f32: 32, f64: 64 };

function laneBits(v: WastValue): 8 | 16 | 32 | 64 {
  const bits = LANE_BITS[v.lane_type ?? ''];
  if (bits === undefined) throw new Error(`unknown v128 lane type ${String(v.lane_type)}`);
  return bits;
}

function lanes(v: WastValue): string[] {
  if (!Array.isArray(v.value) || v.value.length !== 128 / laneBits(v)) throw new Error('v128 lanes missing');
  return v.value;
}

function v128Bytes(v: WastValue): Uint8Array {
  const bits = laneBits(v);
  const bytes = new Uint8Array(16);
  lanes(v).forEach((lane, i) => writeLane(bytes, i, bits, BigInt.asUintN(bits, BigInt(lane))));
  return bytes;
}

function writeLane(bytes: Uint8Array, lane: number, bits: number, value: bigint): void {
  for (let b = 0; b < bits / 8; b++) bytes[lane * (bits / 8) + b] = Number((value >> BigInt(8 * b)) & 0xffn);
}

function readLane(bytes: Uint8Array, lane: number, bits: number): bigint {
  let value = 0n;
  for (let b = bits / 8 - 1; b >= 0; b--) value = (value << 8n) | BigInt(bytes[lane * (bits / 8) + b] ?? 0);
  return value;
}

function v128Halves(bytes: Uint8Array): bigint[] {
  return [0, 1].map((half) => BigInt.asIntN(64, readLane(bytes, half, 64)));
}

function v128Mismatch(e: WastValue, got: readonly Flat[]): string | undefined {
  const [lo, hi] = got;
  if (typeof lo !== 'bigint' || typeof hi !== 'bigint') return 'expected v128 as two i64 halves';
  const bytes = new Uint8Array(16);
  writeLane(bytes, 0, 64, BigInt.asUintN(64, lo));
  writeLane(bytes, 1, 64, BigInt.asUintN(64, hi));
  const bits = laneBits(e);
  const isFloat = e.lane_type === 'f32' || e.lane_type === 'f64';
  for (const [i, want] of lanes(e).entries()) {
    const lane = readLane(bytes, i, bits);
    const ok = isFloat ? floatBitsMatch(want, lane, bits as 32 | 64) : lane === BigInt.asUintN(bits, BigInt(want));
    if (!ok) return `v128 ${e.lane_type} lane ${i}: expected ${want}, got 0x${lane.toString(16)}`;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------------
// Adapter modules, hand-encoded. One compiled module per signature; one instance per target.

type Callable = (...args: unknown[]) => unknown;

const VALTYPE: Record<string, number> = { i32: 0x7f, i64: 0x7e, f32: 0x7d, f64: 0x7c, v128: 0x7b, funcref: 0x70, externref: 0x6f };
// What each type is replaced by at the boundary.
const FLAT: Record<string, string[]> = { f32: ['i32'], f64: ['i64'], v128: ['i64', 'i64'] };
const flatTypes = (types: readonly string[]): string[] => types.flatMap((t) => FLAT[t] ?? [t]);

const OP = {
  localGet: 0x20,
  localSet: 0x21,
  globalGet: 0x23,
  call: 0x10,
  end: 0x0b,
  simd: 0xfd,
  v128Const: 0x0c,
  i64x2ExtractLane: 0x1d,
  i64x2ReplaceLane: 0x1e,
  i32ReinterpretF32: 0xbc,
  i64ReinterpretF64: 0xbd,
  f32ReinterpretI32: 0xbe,
  f64ReinterpretI64: 0xbf,
} as const;

const adapterModules = new Map<string, WebAssembly.Module>();
const adapterInstances = new WeakMap<object, Map<string, Callable>>();

function adaptFunction(target: Callable, params: readonly string[], results: readonly string[]): Callable {
  const key = `${params.join(',')}->${results.join(',')}`;
  return cachedAdapter(target, key, () => functionAdapter(params, results), { t: { f: target } });
}

/** Globals' mutability is not visible from JS, so try the import as immutable first, then mutable. */
function adaptGlobal(target: WebAssembly.Global, type: string): Callable {
  for (const mutable of [false, true]) {
    try {
      return cachedAdapter(target, `global ${type} ${mutable}`, () => globalAdapter(type, mutable), { t: { g: target } });
    } catch (error) {
      if (!(error instanceof WebAssembly.LinkError)) throw error;
    }
  }
  throw new Error(`cannot import global of type ${type}`);
}

function cachedAdapter(target: object, key: string, encode: () => Uint8Array, imports: WebAssembly.Imports): Callable {
  const perTarget = adapterInstances.get(target) ?? new Map<string, Callable>();
  adapterInstances.set(target, perTarget);
  const cached = perTarget.get(key);
  if (cached !== undefined) return cached;
  let module = adapterModules.get(key);
  if (module === undefined) {
    module = new WebAssembly.Module(asBuffer(encode()));
    adapterModules.set(key, module);
  }
  const adapter = new WebAssembly.Instance(module, imports).exports.f as Callable;
  perTarget.set(key, adapter);
  return adapter;
}

/** (module (import "t" "f" (func params results)) (func (export "f") flat(params) -> flat(results) ...)) */
function functionAdapter(params: readonly string[], results: readonly string[]): Uint8Array {
  const flatParams = flatTypes(params);
  const body: number[] = [];
  let local = 0;
  for (const t of params) local = unflattenParam(body, t, local);
  body.push(OP.call, 0);
  // Results come off the stack last first, so park them in locals and push them back converted.
  const resultLocals = results.map((_, i) => flatParams.length + i);
  for (const l of [...resultLocals].reverse()) body.push(OP.localSet, ...u32(l));
  results.forEach((t, i) => flattenValue(body, t, () => [OP.localGet, ...u32(resultLocals[i] ?? 0)]));
  return encodeModule({
    types: [funcType(params, results), funcType(flatParams, flatTypes(results))],
    imports: [importEntry('f', [0x00, 0])],
    funcType: 1,
    exportIndex: 1,
    code: [...vec(results.map((t) => [1, valType(t)])), ...body, OP.end],
  });
}

/** (module (import "t" "g" (global type)) (func (export "f") -> flat(type) (global.get 0) ...)) */
function globalAdapter(type: string, mutable: boolean): Uint8Array {
  const body: number[] = [];
  flattenValue(body, type, () => [OP.globalGet, 0]);
  return encodeModule({
    types: [funcType([], flatTypes([type]))],
    imports: [importEntry('g', [0x03, valType(type), mutable ? 1 : 0])],
    funcType: 0,
    exportIndex: 0,
    code: [...vec([]), ...body, OP.end],
  });
}

/** Pushes the original-typed parameter rebuilt from its flat locals; returns the next flat local. */
function unflattenParam(body: number[], type: string, local: number): number {
  if (type === 'v128') {
    body.push(OP.simd, OP.v128Const, ...new Array<number>(16).fill(0));
    body.push(OP.localGet, ...u32(local), OP.simd, OP.i64x2ReplaceLane, 0);
    body.push(OP.localGet, ...u32(local + 1), OP.simd, OP.i64x2ReplaceLane, 1);
    return local + 2;
  }
  body.push(OP.localGet, ...u32(local));
  if (type === 'f32') body.push(OP.f32ReinterpretI32);
  if (type === 'f64') body.push(OP.f64ReinterpretI64);
  return local + 1;
}

/** Pushes a value (produced by `load`) in its flat form. */
function flattenValue(body: number[], type: string, load: () => number[]): void {
  if (type === 'v128') {
    body.push(...load(), OP.simd, OP.i64x2ExtractLane, 0);
    body.push(...load(), OP.simd, OP.i64x2ExtractLane, 1);
    return;
  }
  body.push(...load());
  if (type === 'f32') body.push(OP.i32ReinterpretF32);
  if (type === 'f64') body.push(OP.i64ReinterpretF64);
}

// ---------------------------------------------------------------------------------------------------
// The byte encoder: just enough of the binary format for a one-import, one-function module.

interface AdapterShape {
  types: number[][];
  imports: number[][];
  funcType: number;
  exportIndex: number;
  /** The function body: locals vector, instructions, end. */
  code: number[];
}

function encodeModule(m: AdapterShape): Uint8Array {
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, vec(m.types)),
    ...section(2, vec(m.imports)),
    ...section(3, vec([u32(m.funcType)])),
    ...section(7, vec([[...name('f'), 0x00, ...u32(m.exportIndex)]])),
    ...section(10, vec([[...u32(m.code.length), ...m.code]])),
  ]);
}

function funcType(params: readonly string[], results: readonly string[]): number[] {
  return [0x60, ...vec(params.map((t) => [valType(t)])), ...vec(results.map((t) => [valType(t)]))];
}

function importEntry(field: string, description: number[]): number[] {
  return [...name('t'), ...name(field), ...description];
}

function valType(t: string): number {
  const code = VALTYPE[t];
  if (code === undefined) throw new Error(`no value type ${t}`);
  return code;
}

function section(id: number, content: number[]): number[] {
  return [id, ...u32(content.length), ...content];
}

function vec(items: readonly number[][]): number[] {
  return [...u32(items.length), ...items.flat()];
}

function name(s: string): number[] {
  return vec([...new TextEncoder().encode(s)].map((b) => [b]));
}

function u32(n: number): number[] {
  const out: number[] = [];
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
  return out;
}
