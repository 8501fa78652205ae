// The fuel meter: rewrites one function body so that it charges the fuel global for every basic block it
// enters and checks for exhaustion at function entry and loop headers. All metering decisions live here.
//
// Counting rule (the contract other layers rely on):
// - Every original instruction costs `operatorCost(op)` (1 for all operators today), `end` and `else`
//   included; the injected instructions cost nothing.
// - A *segment* (basic block) starts at the first instruction of the body and after every instruction
//   that can transfer control or leave the function: block-structured `if`, `else`, `end`, `loop`; `br`,
//   `br_if`, `br_table`, `return`, `unreachable`; every call (`call`, `call_indirect`, `return_call*`).
//   `block` does not start one: control can only fall into it.
// - A segment's whole cost is charged when it is entered, before its first instruction runs. Hence
//   icount = sum of the costs of segments entered; it equals the number of instructions executed, except
//   after a trap, where the rest of the trapping segment has been charged as well.
// - Checks (fuel < 0 => call `ftwasm.fuel_exhausted`) sit right after the charge of the first segment of
//   the function and of the first segment of every loop body. Every segment costs at least 1, so two
//   successive checks never see the same icount: an icount names at most one check point.
// - Calls end their segment, so an import sees an icount that includes the call itself and nothing after.
//
// Speed: the remaining fuel lives in a fresh i64 local inside each function (a register once V8 compiles
// it). The global is written from the local before every call and every way out of the function, and the
// local is reloaded from the global after every call and at entry, because callees and the host read and
// refill the global.
import { ByteReader, ByteWriter } from './bytes.ts';
import { InstrumentError } from './errors.ts';

/** The cost of one operator. One replaceable function, as wasmtime keeps it. */
export function operatorCost(_opcode: number): number {
  return 1;
}

// Instruction kinds found by the scan. 1..6 end a segment.
const K_PLAIN = 0;
const K_BRANCH = 1; // if, else, end (inner), br*, unreachable: ends a segment
const K_LOOP = 2; // ends a segment; the next one is a loop header and gets a check
const K_CALL = 3; // call f: sync before, index rewritten, reload after
const K_CALL_INDIRECT = 4; // sync before, reload after
const K_RETURN_CALL = 5; // return_call f: sync before, index rewritten
const K_EXIT = 6; // return, return_call_indirect, any branch that may target the function's label
const K_REF_FUNC = 7; // ref.func f: index rewritten
const K_FINAL_END = 8; // the body's last `end`: sync before

function endsSegment(kind: number): boolean {
  return kind >= K_BRANCH && kind <= K_EXIT;
}

const VALTYPES = new Set([0x7f, 0x7e, 0x7d, 0x7c, 0x7b, 0x70, 0x6f]);

/** Module-wide facts the meter needs. */
export interface MeterContext {
  /** Index of the fuel global. */
  fuelGlobal: number;
  /** Index of the `ftwasm.fuel_exhausted` import. */
  exhaustedFunc: number;
  /** Maps an original function index to its index in the instrumented module. */
  remapFunc(index: number): number;
  /** Sizes of the original index spaces: a reference past them must stay invalid after we add ours. */
  typeCount: number;
  funcCount: number;
  globalCount: number;
}

/** Per-function results, summed by the caller for the metadata. */
export interface MeterStats {
  segments: number;
  checks: number;
}

/** Reused scratch arrays: one instrument() call meters many functions. */
export class Meter {
  private starts = new Int32Array(1024);
  private kinds = new Uint8Array(1024);
  private costs = new Float64Array(1024);
  private readonly fuelGlobalLeb: Uint8Array;
  private readonly exhaustedLeb: Uint8Array;
  readonly stats: MeterStats = { segments: 0, checks: 0 };

  constructor(private readonly ctx: MeterContext) {
    this.fuelGlobalLeb = leb(ctx.fuelGlobal);
    this.exhaustedLeb = leb(ctx.exhaustedFunc);
  }

  private ensure(n: number): void {
    if (n < this.starts.length) return;
    let cap = this.starts.length * 2;
    while (cap <= n) cap *= 2;
    this.starts = new Int32Array(cap);
    this.kinds = new Uint8Array(cap);
    this.costs = new Float64Array(cap);
  }

  /**
   * Meters one body (the bytes after its size: locals then code) read from `r` up to `r.end`, writing
   * the new body (without its size) to `out`. `paramCount` is the number of parameters of its type.
   */
  meterBody(r: ByteReader, paramCount: number, out: ByteWriter): void {
    const fuelLocal = this.copyLocals(r, paramCount, out);
    const codeStart = r.pos;
    const count = this.scan(r, fuelLocal);
    this.emit(r.buf, codeStart, count, leb(fuelLocal), out);
  }

  /** Copies the local declarations and appends one i64 local for the fuel; returns its index. */
  private copyLocals(r: ByteReader, paramCount: number, out: ByteWriter): number {
    const declCount = r.u32();
    const declsStart = r.pos;
    let total = paramCount;
    for (let i = 0; i < declCount; i++) {
      const n = r.u32();
      const at = r.pos;
      const type = r.u8();
      if (!VALTYPES.has(type)) unsupportedOrMalformed(r, type, at, 'local type');
      total += n;
      if (total > 0xffffffff) r.fail('too many locals', at);
    }
    out.u32(declCount + 1);
    out.bytes(r.buf, declsStart, r.pos);
    out.byte(1);
    out.byte(0x7e);
    return total;
  }

  /** Pass 1: finds every instruction's start and kind and every segment's cost. Returns the count. */
  private scan(r: ByteReader, localCount: number): number {
    const { typeCount, funcCount, globalCount } = this.ctx;
    const bodyBytes = r.end - r.pos;
    this.ensure(bodyBytes + 1);
    const { starts, kinds, costs } = this;
    let n = 0;
    let segment = 0;
    let cost = 0;
    let depth = 0;
    for (;;) {
      if (r.pos >= r.end) r.fail('function body ends without its final end');
      starts[n] = r.pos;
      const op = r.buf[r.pos++]!;
      let kind = K_PLAIN;
      switch (op) {
        case 0x02: // block
          readBlockType(r, typeCount);
          depth++;
          break;
        case 0x03: // loop
          readBlockType(r, typeCount);
          depth++;
          kind = K_LOOP;
          break;
        case 0x04: // if
          readBlockType(r, typeCount);
          depth++;
          kind = K_BRANCH;
          break;
        case 0x0b: // end
          if (depth === 0) kind = K_FINAL_END;
          else {
            depth--;
            kind = K_BRANCH;
          }
          break;
        case 0x00: // unreachable
        case 0x05: // else
          kind = K_BRANCH;
          break;
        case 0x0c: // br
        case 0x0d: // br_if
          kind = r.u32() === depth ? K_EXIT : K_BRANCH;
          break;
        case 0x0e: {
          // br_table: labels*, default
          const labels = r.u32();
          kind = K_BRANCH;
          for (let i = 0; i <= labels; i++) if (r.u32() === depth) kind = K_EXIT;
          break;
        }
        case 0x0f: // return
          kind = K_EXIT;
          break;
        case 0x10: // call
          index(r, funcCount, 'function');
          kind = K_CALL;
          break;
        case 0x11: // call_indirect type table
          index(r, typeCount, 'type');
          r.u32();
          kind = K_CALL_INDIRECT;
          break;
        case 0x12: // return_call
          index(r, funcCount, 'function');
          kind = K_RETURN_CALL;
          break;
        case 0x13: // return_call_indirect
          index(r, typeCount, 'type');
          r.u32();
          kind = K_EXIT;
          break;
        case 0xd2: // ref.func
          index(r, funcCount, 'function');
          kind = K_REF_FUNC;
          break;
        case 0x20: // local.get/set/tee
        case 0x21:
        case 0x22:
          index(r, localCount, 'local');
          break;
        case 0x23: // global.get/set
        case 0x24:
          index(r, globalCount, 'global');
          break;
        default:
          skipOtherImmediates(r, op);
      }
      kinds[n] = kind;
      n++;
      cost += operatorCost(op);
      if (endsSegment(kind)) {
        costs[segment++] = cost;
        cost = 0;
      } else if (kind === K_FINAL_END) {
        costs[segment++] = cost;
        break;
      }
    }
    starts[n] = r.pos;
    if (r.pos !== r.end) r.fail('bytes after the final end of a function body');
    return n;
  }

  /** Pass 2: writes the instructions with charges, checks and syncs around them. */
  private emit(buf: Uint8Array, _codeStart: number, count: number, fuelLocal: Uint8Array, out: ByteWriter): void {
    const { starts, kinds, costs } = this;
    let segment = 0;
    let previous = -1;
    for (let i = 0; i < count; i++) {
      if (previous === -1 || endsSegment(previous)) {
        this.emitCharge(previous, costs[segment++]!, fuelLocal, out);
      }
      const kind = kinds[i]!;
      const start = starts[i]!;
      if (kind === K_CALL || kind === K_CALL_INDIRECT || kind === K_RETURN_CALL || kind === K_EXIT || kind === K_FINAL_END) {
        this.emitSync(fuelLocal, out);
      }
      if (kind === K_CALL || kind === K_RETURN_CALL || kind === K_REF_FUNC) {
        const r = new ByteReader(buf, start + 1, starts[i + 1]!);
        out.byte(buf[start]!);
        out.u32(this.ctx.remapFunc(r.u32()));
      } else {
        out.bytes(buf, start, starts[i + 1]!);
      }
      previous = kind;
    }
    this.stats.segments += segment;
  }

  /** The charge at a segment start; `previous` is the kind that ended the last segment (-1 at entry). */
  private emitCharge(previous: number, cost: number, fuelLocal: Uint8Array, out: ByteWriter): void {
    const fromGlobal = previous === -1 || previous === K_CALL || previous === K_CALL_INDIRECT;
    const check = previous === -1 || previous === K_LOOP;
    if (fromGlobal) {
      out.byte(0x23); // global.get fuel
      out.bytes(this.fuelGlobalLeb);
    } else {
      out.byte(0x20); // local.get fuel
      out.bytes(fuelLocal);
    }
    out.byte(0x42); // i64.const cost
    out.sInt(cost);
    out.byte(0x7d); // i64.sub
    if (!check) {
      out.byte(0x21); // local.set fuel
      out.bytes(fuelLocal);
      return;
    }
    this.stats.checks++;
    out.byte(0x22); // local.tee fuel
    out.bytes(fuelLocal);
    out.byte(0x42); // i64.const 0
    out.byte(0x00);
    out.byte(0x53); // i64.lt_s
    out.byte(0x04); // if (empty)
    out.byte(0x40);
    this.emitSync(fuelLocal, out);
    out.byte(0x10); // call ftwasm.fuel_exhausted
    out.bytes(this.exhaustedLeb);
    out.byte(0x23); // global.get fuel: the host may have refilled it
    out.bytes(this.fuelGlobalLeb);
    out.byte(0x21); // local.set fuel
    out.bytes(fuelLocal);
    out.byte(0x0b); // end
  }

  private emitSync(fuelLocal: Uint8Array, out: ByteWriter): void {
    out.byte(0x20); // local.get fuel
    out.bytes(fuelLocal);
    out.byte(0x24); // global.set fuel
    out.bytes(this.fuelGlobalLeb);
  }
}

function leb(value: number): Uint8Array {
  const w = new ByteWriter(8);
  w.u32(value);
  return w.toBytes();
}

function unsupportedOrMalformed(r: ByteReader, type: number, at: number, what: string): never {
  // 0x63/0x64 (typed references) and 0x65..0x6e (GC heap types) are valid elsewhere but not in Node 20.
  if (type >= 0x63 && type <= 0x6e) {
    throw new InstrumentError('FTW_UNSUPPORTED', `${what} 0x${type.toString(16)} needs GC/typed references`, at, r.functionIndex);
  }
  r.fail(`invalid ${what} 0x${type.toString(16)}`, at);
}

export function readValType(r: ByteReader, what: string): number {
  const at = r.pos;
  const type = r.u8();
  if (!VALTYPES.has(type)) unsupportedOrMalformed(r, type, at, what);
  return type;
}

/** Reads an index that must lie inside an original index space of `count` entries. */
export function index(r: ByteReader, count: number, what: string): number {
  const at = r.pos;
  const i = r.u32();
  if (i >= count) r.fail(`${what} index ${i} out of range (the module has ${count})`, at);
  return i;
}

function readBlockType(r: ByteReader, typeCount: number): void {
  const b = r.buf[r.pos];
  if (b === 0x40 || (b !== undefined && VALTYPES.has(b))) {
    r.pos++;
    return;
  }
  const at = r.pos;
  const i = r.s33();
  if (i < 0) unsupportedOrMalformed(r, (i + 0x80) & 0xff, at, 'block type');
  if (i >= typeCount) r.fail(`block type index ${i} out of range (the module has ${typeCount})`, at);
}

function readMemarg(r: ByteReader): void {
  const align = r.u32();
  if (align & 0x40) r.u32(); // memory index (multi-memory)
  r.u32(); // offset
}

const EXCEPTION_OPS = new Set([0x06, 0x07, 0x08, 0x09, 0x0a, 0x18, 0x19, 0x1f]);

/** Skips the immediates of every operator that the scan does not treat specially. */
function skipOtherImmediates(r: ByteReader, op: number): void {
  if (op >= 0x45 && op <= 0xc4) return; // numeric, sign extension: no immediates
  if (op >= 0x28 && op <= 0x3e) return readMemarg(r);
  switch (op) {
    case 0x01: // nop
    case 0x1a: // drop
    case 0x1b: // select
    case 0xd1: // ref.is_null
      return;
    case 0x1c: {
      // select t*
      const n = r.u32();
      for (let i = 0; i < n; i++) readValType(r, 'select type');
      return;
    }
    case 0x25: // table.get/set, memory.size/grow

    case 0x26:
    case 0x3f:
    case 0x40:
      r.u32();
      return;
    case 0x41:
      return r.skipSigned(32);
    case 0x42:
      return r.skipSigned(64);
    case 0x43:
      return r.skip(4);
    case 0x44:
      return r.skip(8);
    case 0xd0: {
      // ref.null heaptype
      const at = r.pos;
      const t = r.u8();
      if (t !== 0x70 && t !== 0x6f) unsupportedOrMalformed(r, t, at, 'heap type');
      return;
    }
    case 0xfc:
      return skipPrefixFC(r);
    case 0xfd:
      return skipPrefixFD(r);
    case 0xfe:
      throw new InstrumentError('FTW_ATOMICS', 'atomic operators need shared memory and threads; ftwasm replicates one core', r.pos - 1, r.functionIndex);
  }
  if (EXCEPTION_OPS.has(op)) {
    throw new InstrumentError('FTW_UNSUPPORTED', `exception handling operator 0x${op.toString(16)} is not metered yet`, r.pos - 1, r.functionIndex);
  }
  if (op === 0x14 || op === 0x15 || (op >= 0xd3 && op <= 0xd6) || op === 0xfb) {
    throw new InstrumentError('FTW_UNSUPPORTED', `operator 0x${op.toString(16)} needs GC/typed references`, r.pos - 1, r.functionIndex);
  }
  r.fail(`unknown operator 0x${op.toString(16)}`, r.pos - 1);
}

function skipPrefixFC(r: ByteReader): void {
  const at = r.pos - 1;
  const sub = r.u32();
  if (sub <= 7) return; // saturating truncation
  switch (sub) {
    case 8: // memory.init data mem
    case 10: // memory.copy mem mem
    case 12: // table.init elem table
    case 14: // table.copy table table
      r.u32();
      r.u32();
      return;
    case 9: // data.drop
    case 11: // memory.fill
    case 13: // elem.drop
    case 15: // table.grow
    case 16: // table.size
    case 17: // table.fill
      r.u32();
      return;
  }
  r.fail(`unknown operator 0xfc ${sub}`, at);
}

function skipPrefixFD(r: ByteReader): void {
  const at = r.pos - 1;
  const sub = r.u32();
  if (sub <= 11 || sub === 92 || sub === 93) return readMemarg(r); // loads, stores, load_zero
  if (sub === 12 || sub === 13) return r.skip(16); // v128.const, i8x16.shuffle
  if (sub >= 21 && sub <= 34) return r.skip(1); // extract/replace lane
  if (sub >= 84 && sub <= 91) {
    readMemarg(r); // load/store lane
    r.skip(1);
    return;
  }
  if (sub <= 0x113) return; // every other SIMD operator (relaxed SIMD included) has no immediates
  r.fail(`unknown operator 0xfd ${sub}`, at);
}
