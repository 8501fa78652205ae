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
//   icount = sum of the costs of segments entered; at every call, exit and check point it equals the
//   number of instructions executed (a prepaid loop header, below, is charged earlier on the way to it,
//   with no call in between, so nothing can see the difference). After a trap the global holds the fuel
//   as of the last call or exit.
// - Checks (fuel < 0 => call `ftwasm.fuel_exhausted`) sit right after the charge of the first segment of
//   the function and of the first segment of every loop body. Every segment costs at least 1, so two
//   successive checks never see the same icount: an icount names at most one check point.
// - Calls end their segment, so an import sees an icount that includes the call itself and nothing after.
//
// Speed: the remaining fuel lives in a fresh i64 local inside each function (a register once V8 compiles
// it). The global is written from the local before every call and every way out of the function, and the
// local is reloaded from the global after every call and at entry, because callees and the host read and
// refill the global.
import { ByteReader, ByteWriter, readCheckedU32 } from './bytes.ts';
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
  /** Parameter count of every type, by index. */
  typeParams: readonly number[];
  funcCount: number;
  globalCount: number;
  /** Give counted leaf loops a copy without checks (LoopVersion). */
  versionLoops: boolean;
}

/** Per-function results, summed by the caller for the metadata. */
export interface MeterStats {
  segments: number;
  checks: number;
  /** Counted leaf loops that also got a copy without checks. */
  versioned: number;
}

// Flags of instructions in the scan.
const F_WRAP_OPEN = 1; // a loop whose exhaustion path is moved out of it
const F_WRAP_CLOSE = 2; // the `end` of such a loop
const F_RELABEL = 4; // a branch whose label indices grow by the wrapper blocks it crosses
const F_EDGE = 8; // a br_if back to a wrapped loop: if the header is prepaid, the taken edge pays it
const F_VERSION = 16; // a wrapped loop that also gets a copy without checks (see LoopVersion)

/**
 * A counted leaf loop, run in a copy without checks when the fuel cannot run out inside it.
 *
 * The loop must have the shape AssemblyScript and Binaryen give a `for (; t < K; t += c)` loop:
 *
 *   loop $L
 *     local.get t  i32.const K  i32.lt_s|i32.lt_u  if
 *       ...                                  (no call, no loop; nothing else writes t)
 *       local.get t  i32.const c  i32.add  local.set t  br $L     (the only branch to $L; c >= 1)
 *     ...
 *
 * with K + c - 1 not past the compare's maximum, so t only grows while the loop goes on. Then the header
 * runs at most max(0, K - t0) + 1 times (t0: t on entry), and no instruction runs twice in one pass: one
 * pass costs at most `cost`, the sum of the loop's segment costs. When the fuel on entry is at least
 * (K - t0 + 2) * cost (and at least cost), no header check could see negative fuel, so the copy without
 * checks runs and charges exactly the same; otherwise the checked loop runs. Icounts do not change.
 */
interface LoopVersion {
  /** Index of the loop's `end` instruction. */
  end: number;
  /** The induction local, the bound and whether the compare is unsigned. */
  local: number;
  bound: number;
  unsigned: boolean;
  /** The loop's segments: from its header segment to the one its `end` closes. */
  firstSegment: number;
  lastSegment: number;
  /** t's value on entry when the two instructions before the loop are `i32.const t0  local.set t`. */
  start: number | undefined;
}

/** Blocks injected around a loop: $X (exit with the loop's results), $R (re-entry), $S (slow path). */
const WRAP_LABELS = 3;

/**
 * Reused scratch arrays: one instrument() call meters many functions.
 *
 * A check inside a loop must not hold a call: V8 then stops unrolling the loop and keeps fewer values in
 * registers (a 2x slowdown on a matrix multiply). So a loop without parameters is wrapped:
 *
 *   block $X (result T)          ;; the loop's results
 *     loop $R                     ;; re-entry after the host refilled
 *       block $S                  ;; slow path
 *         loop $L (result T)      ;; the original loop
 *           charge; fuel < 0 ? br_if $S      <- the loop header check: a branch, no call
 *           ...original body...
 *         end
 *         br $X
 *       end
 *       sync; call fuel_exhausted; reload; refund the header's charge
 *       br $R                     ;; enter $L again: charge and check again
 *     end
 *     unreachable
 *   end
 *
 * Entering $L again charges and checks its header again: so fuel_exhausted is called until the fuel is no
 * longer negative (or it throws), at the same icount each time. Checks outside loops keep that rule with
 * an inline `loop`. Branches inside $L to labels outside it are renumbered past the three new labels.
 */
export class Meter {
  private starts!: Int32Array;
  private kinds!: Uint8Array;
  private flags!: Uint8Array;
  private aux!: Int32Array; // per instruction: offset into `labels`, or the header segment of a wrapped loop's end
  private costs!: Float64Array;
  private labels = new Int32Array(1024);
  private frameWrapped!: Uint8Array;
  private frameHeaderSegment!: Int32Array;
  private framePrepayable!: Uint8Array;
  // Per segment: a wrapped loop's header (1); its header is prepaid on every edge into it (1); the header
  // segment a segment's closing `br` prepays, or -1.
  private segHeader!: Uint8Array;
  private segPrepaid!: Uint8Array;
  private segPrepays!: Int32Array;
  private segMerged!: Uint8Array; // a prepaid header whose fall-in charge rides on the segment before it
  private edgeHeader!: Int32Array; // per F_EDGE instruction: the header segment of its target loop
  private wrappedBelow!: Int32Array; // wrappedBelow[k]: wrapped loops among frame levels 0..k-1
  // Per frame, for counted leaf loops (LoopVersion): the instruction that opened it; a loop's induction local
  // (-1: not a candidate), bound, compare and increment; whether a branch other than the counted back edge
  // targets it; counted back edges seen; writes of its local before its body; for an `if`, whether its
  // `else` was seen.
  private frameOpen!: Int32Array;
  private frameInduction!: Int32Array;
  private frameBound!: Float64Array;
  private frameUnsigned!: Uint8Array;
  private frameStep!: Float64Array;
  private frameOtherBranch!: Uint8Array;
  private frameBackEdges!: Int32Array;
  private frameWrites!: Float64Array;
  private frameElse!: Uint8Array;
  private readonly versions = new Map<number, LoopVersion>();
  private readonly localWrites = new Map<number, number>();
  private readonly fuelGlobalLeb: Uint8Array;
  private readonly exhaustedLeb: Uint8Array;
  readonly stats: MeterStats = { segments: 0, checks: 0, versioned: 0 };

  constructor(private readonly ctx: MeterContext) {
    this.fuelGlobalLeb = leb(ctx.fuelGlobal);
    this.exhaustedLeb = leb(ctx.exhaustedFunc);
    this.allocate(1024);
  }

  /** (Re)allocates the per-instruction, per-segment and per-frame scratch arrays for `cap` of each. */
  private allocate(cap: number): void {
    this.starts = new Int32Array(cap);
    this.kinds = new Uint8Array(cap);
    this.flags = new Uint8Array(cap);
    this.aux = new Int32Array(cap);
    this.costs = new Float64Array(cap);
    this.frameWrapped = new Uint8Array(cap);
    this.frameHeaderSegment = new Int32Array(cap);
    this.framePrepayable = new Uint8Array(cap);
    this.segHeader = new Uint8Array(cap);
    this.segPrepaid = new Uint8Array(cap);
    this.segPrepays = new Int32Array(cap);
    this.segMerged = new Uint8Array(cap);
    this.edgeHeader = new Int32Array(cap);
    this.wrappedBelow = new Int32Array(cap + 1);
    this.frameOpen = new Int32Array(cap);
    this.frameInduction = new Int32Array(cap);
    this.frameBound = new Float64Array(cap);
    this.frameUnsigned = new Uint8Array(cap);
    this.frameStep = new Float64Array(cap);
    this.frameOtherBranch = new Uint8Array(cap);
    this.frameBackEdges = new Int32Array(cap);
    this.frameWrites = new Float64Array(cap);
    this.frameElse = new Uint8Array(cap);
  }

  private ensure(n: number): void {
    if (n < this.starts.length) return;
    let cap = this.starts.length * 2;
    while (cap <= n) cap *= 2;
    this.allocate(cap);
  }

  private pushLabel(at: number, value: number): void {
    if (at >= this.labels.length) {
      const next = new Int32Array(this.labels.length * 2);
      next.set(this.labels);
      this.labels = next;
    }
    this.labels[at] = value;
  }

  /**
   * Meters one body (the bytes after its size: locals then code) read from `r` up to `r.end`, writing
   * the new body (without its size) to `out`. `paramCount` is the number of parameters of its type.
   */
  meterBody(r: ByteReader, paramCount: number, out: ByteWriter): void {
    const fuelLocal = this.copyLocals(r, paramCount, out);
    const count = this.scan(r, fuelLocal);
    this.emit(r.buf, count, leb(fuelLocal), out);
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

  /** Records a branch's labels, renumbered past the wrapper blocks it leaves; returns true if any changed. */
  private relabel(i: number, label: number, depth: number, at: number): number {
    const crossed = this.wrappedBelow[depth]! - this.wrappedBelow[Math.max(0, depth - label)]!;
    this.pushLabel(at, label + WRAP_LABELS * crossed);
    if (crossed !== 0) this.flags[i]! |= F_RELABEL;
    return at + 1;
  }

  /** Pass 1: finds every instruction's start, kind and flags, and every segment's cost. Returns the count. */
  private scan(r: ByteReader, localCount: number): number {
    const { typeCount, funcCount, globalCount, typeParams } = this.ctx;
    this.ensure(r.end - r.pos + 1);
    const { starts, kinds, flags, aux, costs, frameWrapped, frameHeaderSegment, wrappedBelow, framePrepayable, segHeader, segPrepaid, segPrepays, segMerged, edgeHeader } = this;
    const { frameOpen, frameInduction, frameBound, frameUnsigned, frameStep, frameOtherBranch, frameBackEdges, frameWrites, frameElse, versions, localWrites } = this;
    versions.clear();
    localWrites.clear();
    let lastImpure = -1; // the last call or loop: a loop with none after its own start is a leaf
    let n = 0;
    let segment = 0;
    let cost = 0;
    let depth = 0;
    let labelAt = 0;
    wrappedBelow[0] = 0;
    segHeader[0] = 0;
    segPrepaid[0] = 0;
    segPrepays[0] = -1;
    segMerged[0] = 0;
    // A branch to a wrapped loop's label: an unconditional `br` from a plainly charged segment can prepay the
    // header with that segment's charge; a `br_if` pays it on its taken edge (F_EDGE); anything else
    // (br_table, a `br` from a segment with a check) means the header charges itself.
    const branchToLoop = (label: number, op: number): void => {
      const level = depth - 1 - label;
      if (level < 0 || !frameWrapped[level]) return;
      if (frameInduction[level]! >= 0) {
        const step = op === 0x0c ? this.countedBackEdge(r.buf, n, level, depth) : 0;
        if (step > 0 && frameBackEdges[level] === 0) {
          frameBackEdges[level] = 1;
          frameStep[level] = step;
        } else frameOtherBranch[level] = 1;
      }
      if (op === 0x0c && segment !== 0 && !segHeader[segment]) segPrepays[segment] = frameHeaderSegment[level]!;
      else if (op === 0x0d) {
        flags[n]! |= F_EDGE;
        edgeHeader[n] = frameHeaderSegment[level]!;
      } else framePrepayable[level] = 0;
    };
    const open = (wrapped: boolean): void => {
      frameOpen[depth] = n;
      frameInduction[depth] = -1;
      frameElse[depth] = 0;
      frameWrapped[depth] = wrapped ? 1 : 0;
      framePrepayable[depth] = wrapped ? 1 : 0;
      frameHeaderSegment[depth] = segment + 1; // the segment the loop's header starts (after this one ends)
      wrappedBelow[depth + 1] = wrappedBelow[depth]! + (wrapped ? 1 : 0);
      depth++;
    };
    for (;;) {
      if (r.pos >= r.end) r.fail('function body ends without its final end');
      starts[n] = r.pos;
      flags[n] = 0;
      const op = r.buf[r.pos++]!;
      let kind = K_PLAIN;
      switch (op) {
        case 0x02: // block
          readBlockType(r, typeCount);
          open(false);
          break;
        case 0x03: {
          // loop: wrapped unless it takes parameters
          const type = readBlockType(r, typeCount);
          const wrapped = type < 0 || typeParams[type] === 0;
          if (wrapped) flags[n] = F_WRAP_OPEN;
          const level = depth;
          open(wrapped);
          if (wrapped) this.countedHeader(r, level);
          lastImpure = n;
          kind = K_LOOP;
          break;
        }
        case 0x04: // if
          readBlockType(r, typeCount);
          open(false);
          kind = K_BRANCH;
          break;
        case 0x0b: // end
          if (depth === 0) kind = K_FINAL_END;
          else {
            depth--;
            kind = K_BRANCH;
            if (frameWrapped[depth]) {
              if (this.ctx.versionLoops && frameInduction[depth]! >= 0 && lastImpure === frameOpen[depth] && this.counted(depth)) {
                flags[frameOpen[depth]!]! |= F_VERSION;
                versions.set(frameOpen[depth]!, {
                  end: n, local: frameInduction[depth]!, bound: frameBound[depth]!, unsigned: frameUnsigned[depth] === 1,
                  firstSegment: frameHeaderSegment[depth]!, lastSegment: segment, start: this.constantStart(r.buf, frameOpen[depth]!, frameInduction[depth]!),
                });
              }
              flags[n] = F_WRAP_CLOSE;
              aux[n] = frameHeaderSegment[depth]!;
              const header = frameHeaderSegment[depth]!;
              segPrepaid[header] = framePrepayable[depth]!;
              // The segment that falls into the loop pays the header with its own charge, unless it holds a
              // check itself (function entry, another loop's header): then the fall-in edge charges alone,
              // so two successive checks still never see the same icount.
              const fallIn = header - 1;
              segMerged[header] = framePrepayable[depth] && fallIn > 0 && !segHeader[fallIn] ? 1 : 0;
              if (segMerged[header]) costs[fallIn]! += costs[header]!;
            }
          }
          break;
        case 0x05: // else
          if (depth > 0) frameElse[depth - 1] = 1;
          kind = K_BRANCH;
          break;
        case 0x00: // unreachable
          kind = K_BRANCH;
          break;
        case 0x0c: // br
        case 0x0d: {
          // br_if
          const at = r.pos;
          const label = r.u32();
          if (label > depth) r.fail(`branch depth ${label} out of range (${depth} enclosing blocks)`, at);
          kind = label === depth ? K_EXIT : K_BRANCH;
          aux[n] = labelAt;
          labelAt = this.relabel(n, label, depth, labelAt);
          branchToLoop(label, op);
          break;
        }
        case 0x0e: {
          // br_table: labels*, default
          const count = r.u32();
          if (count > r.end - r.pos) r.fail(`br_table with ${count} labels runs past the body`);
          kind = K_BRANCH;
          aux[n] = labelAt;
          this.pushLabel(labelAt++, count);
          for (let i = 0; i <= count; i++) {
            const at = r.pos;
            const label = r.u32();
            if (label > depth) r.fail(`branch depth ${label} out of range (${depth} enclosing blocks)`, at);
            if (label === depth) kind = K_EXIT;
            labelAt = this.relabel(n, label, depth, labelAt);
            branchToLoop(label, 0x0e);
          }
          break;
        }
        case 0x0f: // return
          kind = K_EXIT;
          break;
        case 0x10: // call
          index(r, funcCount, 'function');
          kind = K_CALL;
          lastImpure = n;
          break;
        case 0x11: // call_indirect type table
          index(r, typeCount, 'type');
          r.u32();
          kind = K_CALL_INDIRECT;
          lastImpure = n;
          break;
        case 0x12: // return_call
          index(r, funcCount, 'function');
          kind = K_RETURN_CALL;
          lastImpure = n;
          break;
        case 0x13: // return_call_indirect
          index(r, typeCount, 'type');
          r.u32();
          kind = K_EXIT;
          lastImpure = n;
          break;
        case 0xd2: // ref.func
          index(r, funcCount, 'function');
          kind = K_REF_FUNC;
          break;
        case 0x20: // local.get/set/tee
          index(r, localCount, 'local');
          break;
        case 0x21:
        case 0x22: {
          const local = index(r, localCount, 'local');
          if (localWrites.size > 0) {
            const writes = localWrites.get(local);
            if (writes !== undefined) localWrites.set(local, writes + 1);
          }
          break;
        }
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
        segHeader[segment] = kind === K_LOOP && flags[n - 1]! & F_WRAP_OPEN ? 1 : 0;
        segPrepaid[segment] = 0;
        segPrepays[segment] = -1;
        segMerged[segment] = 0;
      } else if (kind === K_FINAL_END) {
        costs[segment++] = cost;
        break;
      }
    }
    starts[n] = r.pos;
    if (r.pos !== r.end) r.fail('bytes after the final end of a function body');
    // A prepaid header is charged on the edges into it: its back-edge sources add its cost to their own.
    for (let s = 0; s < segment; s++) {
      const header = segPrepays[s]!;
      if (header >= 0 && segPrepaid[header]) costs[s]! += costs[header]!;
    }
    return n;
  }

  /**
   * At a wrapped loop's opening (frame `level`, `r` just past its block type): if its header is
   * `local.get t  i32.const K  i32.lt_s|lt_u  if (empty)`, notes t, K and the compare (LoopVersion).
   * Only peeks: the scan reads and checks these bytes itself next.
   */
  private countedHeader(r: ByteReader, level: number): void {
    const at = r.pos;
    try {
      if (r.buf[r.pos] !== 0x20) return;
      r.pos++;
      const local = r.u32();
      if (r.buf[r.pos] !== 0x41) return;
      r.pos++;
      const bound = r.s33();
      if (bound < -0x80000000 || bound > 0x7fffffff) return;
      const compare = r.buf[r.pos];
      if ((compare !== 0x48 && compare !== 0x49) || r.buf[r.pos + 1] !== 0x04 || r.buf[r.pos + 2] !== 0x40) return;
      this.frameInduction[level] = local;
      this.frameUnsigned[level] = compare === 0x49 ? 1 : 0;
      this.frameBound[level] = compare === 0x49 ? bound >>> 0 : bound;
      this.frameOtherBranch[level] = 0;
      this.frameBackEdges[level] = 0;
      const writes = this.localWrites.get(local) ?? 0;
      this.localWrites.set(local, writes);
      this.frameWrites[level] = writes;
    } catch (error) {
      if (!(error instanceof InstrumentError)) throw error;
      // malformed: the scan reports it where it reads these bytes
    } finally {
      r.pos = at;
    }
  }

  /**
   * A `br` (instruction n, at `depth`) to the counted loop at `level`: its step c when the four instructions
   * before it are `local.get t  i32.const c  i32.add  local.set t` with c >= 1, and it sits in the true arm
   * of the loop's header `if`; otherwise 0.
   */
  private countedBackEdge(buf: Uint8Array, n: number, level: number, depth: number): number {
    const { starts, frameOpen, frameElse } = this;
    const open = frameOpen[level]!;
    const headerIf = open + 4;
    if (depth <= level + 1 || frameOpen[level + 1] !== headerIf || frameElse[level + 1] || n - 4 <= headerIf) return 0;
    const local = this.frameInduction[level]!;
    const get = starts[n - 4]!;
    const constant = starts[n - 3]!;
    const set = starts[n - 1]!;
    if (buf[get] !== 0x20 || readCheckedU32(buf, get + 1) !== local) return 0;
    if (buf[constant] !== 0x41 || buf[starts[n - 2]!] !== 0x6a) return 0;
    if (buf[set] !== 0x21 || readCheckedU32(buf, set + 1) !== local) return 0;
    const step = readS32(buf, constant + 1);
    return step >= 1 ? step : 0;
  }

  /** t0 when the instructions before the loop at instruction `loop` are `i32.const t0  local.set t`. */
  private constantStart(buf: Uint8Array, loop: number, local: number): number | undefined {
    if (loop < 2) return undefined;
    const constant = this.starts[loop - 2]!;
    const set = this.starts[loop - 1]!;
    if (buf[constant] !== 0x41 || buf[set] !== 0x21 || readCheckedU32(buf, set + 1) !== local) return undefined;
    return readS32(buf, constant + 1);
  }

  /** At the end of the counted leaf loop at `level`: whether it kept the shape LoopVersion describes. */
  private counted(level: number): boolean {
    if (this.frameOtherBranch[level] || this.frameBackEdges[level] !== 1) return false;
    const local = this.frameInduction[level]!;
    if (this.localWrites.get(local)! - this.frameWrites[level]! !== 1) return false;
    // t + c must not wrap while t < K
    const max = this.frameUnsigned[level] ? 0xffffffff : 0x7fffffff;
    return this.frameBound[level]! + this.frameStep[level]! - 1 <= max;
  }

  /**
   * Pass 2: writes the instructions with charges, checks and syncs around them. Runs of instructions that
   * need nothing are copied in one piece.
   */
  private emit(buf: Uint8Array, count: number, fuelLocal: Uint8Array, out: ByteWriter): void {
    this.stats.segments += this.emitRange(buf, 0, count, -1, 0, 0, false, fuelLocal, out);
  }

  /**
   * Writes instructions [from, to). `previous`/`previousFlags` are the kind and flags of the instruction
   * before `from` (-1 at the body's start), `segment` the index of the next segment to charge; returns the
   * index after the last segment charged. `fast`: the copy of a counted leaf loop's body (LoopVersion),
   * through its `end`: charges without checks, no slow path.
   */
  private emitRange(buf: Uint8Array, from: number, to: number, previous: number, previousFlags: number, segment: number, fast: boolean, fuelLocal: Uint8Array, out: ByteWriter): number {
    const { starts, kinds, flags, aux, costs } = this;
    let run = starts[from]!;
    for (let i = from; i < to; i++) {
      const kind = kinds[i]!;
      const flag = flags[i]!;
      const start = starts[i]!;
      const end = starts[i + 1]!;
      const charge = previous === -1 || endsSegment(previous);
      const sync = kind === K_CALL || kind === K_CALL_INDIRECT || kind === K_RETURN_CALL || kind === K_EXIT || kind === K_FINAL_END;
      if (charge || sync || flag & F_WRAP_OPEN) {
        out.bytes(buf, run, start);
        run = start;
        if (charge) this.emitCharge(previous, previousFlags, segment++, fast, fuelLocal, out);
        if (sync) this.emitSync(fuelLocal, out);
        if (flag & F_WRAP_OPEN && this.segPrepaid[segment] && !this.segMerged[segment]) {
          // the header's charge on the edge falling into the loop (once per entry, not per iteration)
          out.byte(0x20);
          out.bytes(fuelLocal);
          out.byte(0x42);
          out.sInt(costs[segment]!);
          out.byte(0x7d);
          out.byte(0x21);
          out.bytes(fuelLocal);
        }
        if (flag & F_WRAP_OPEN) {
          out.byte(0x02); // block $X with the loop's block type (it has no parameters)
          out.bytes(buf, start + 1, end);
          if (flag & F_VERSION) this.emitFastCopy(buf, i, segment, fuelLocal, out);
          out.byte(0x03); // loop $R
          out.byte(0x40);
          out.byte(0x02); // block $S
          out.byte(0x40);
        }
      }
      if (kind === K_CALL || kind === K_RETURN_CALL || kind === K_REF_FUNC) {
        out.bytes(buf, run, start);
        out.byte(buf[start]!);
        out.u32(this.ctx.remapFunc(readCheckedU32(buf, start + 1)));
        run = end;
      } else if (flag & F_EDGE && this.segPrepaid[this.edgeHeader[i]!]) {
        out.bytes(buf, run, start);
        const label = flag & F_RELABEL ? this.labels[aux[i]!]! : readCheckedU32(buf, start + 1);
        this.emitEdgeCharge(label, costs[this.edgeHeader[i]!]!, fuelLocal, out);
        run = end;
      } else if (flag & F_RELABEL) {
        out.bytes(buf, run, start);
        this.emitRelabelled(buf[start]!, aux[i]!, out);
        run = end;
      }
      if (flag & F_WRAP_CLOSE && !fast) {
        out.bytes(buf, run, end);
        this.emitLoopTail(this.segPrepaid[aux[i]!] ? 0 : costs[aux[i]!]!, fuelLocal, out);
        run = end;
      }
      previous = kind;
      previousFlags = flag;
    }
    out.bytes(buf, run, starts[to]!);
    return segment;
  }

  /**
   * Inside block $X of the counted leaf loop opened by instruction `loop`, before its checked form: when the
   * fuel covers every pass the loop can make, runs a copy of it without checks and leaves $X with its results.
   *
   *   block $E
   *     fuel < (K - t + 2) * cost  or  fuel < cost  ?  br_if $E      (not enough: the checked loop below)
   *     block $D                   (so that branches out of the copy cross three labels, as in the checked one)
   *       loop $L' ... the body, charged, no checks ... end
   *       br $X
   *     end
   *   end
   */
  private emitFastCopy(buf: Uint8Array, loop: number, segment: number, fuelLocal: Uint8Array, out: ByteWriter): void {
    const v = this.versions.get(loop)!;
    let cost = 0;
    for (let s = v.firstSegment; s <= v.lastSegment; s++) cost += this.costs[s]!;
    this.stats.versioned++;
    out.byte(0x02); // block $E
    out.byte(0x40);
    if (v.start !== undefined) {
      // t0 known: fuel < (max(K - t0, 0) + 2) * cost, one constant
      const t0 = v.unsigned ? v.start >>> 0 : v.start;
      out.byte(0x20); // local.get fuel
      out.bytes(fuelLocal);
      out.byte(0x42); // i64.const
      out.s64(BigInt(Math.max(v.bound - t0, 0) + 2) * BigInt(cost));
      out.byte(0x53); // i64.lt_s
    } else {
      out.byte(0x20); // local.get fuel
      out.bytes(fuelLocal);
      out.byte(0x42); // i64.const K
      out.sInt(v.bound);
      out.byte(0x20); // local.get t, widened as the compare reads it
      out.u32(v.local);
      out.byte(v.unsigned ? 0xad : 0xac); // i64.extend_i32_u / _s
      out.byte(0x7d); // i64.sub
      out.byte(0x42); // i64.const 2
      out.byte(0x02);
      out.byte(0x7c); // i64.add
      out.byte(0x42); // i64.const cost
      out.sInt(cost);
      out.byte(0x7e); // i64.mul
      out.byte(0x53); // i64.lt_s
      out.byte(0x20); // local.get fuel
      out.bytes(fuelLocal);
      out.byte(0x42); // i64.const cost
      out.sInt(cost);
      out.byte(0x53); // i64.lt_s
      out.byte(0x72); // i32.or
    }
    out.byte(0x0d); // br_if $E
    out.byte(0x00);
    out.byte(0x02); // block $D
    out.byte(0x40);
    out.bytes(buf, this.starts[loop]!, this.starts[loop + 1]!); // loop $L' with the loop's block type
    this.emitRange(buf, loop + 1, v.end + 1, K_LOOP, this.flags[loop]!, segment, true, fuelLocal, out);
    out.byte(0x0c); // br $X
    out.byte(0x02);
    out.byte(0x0b); // end $D
    out.byte(0x0b); // end $E
  }

  private emitRelabelled(op: number, at: number, out: ByteWriter): void {
    const { labels } = this;
    out.byte(op);
    if (op !== 0x0e) return out.u32(labels[at]!);
    const count = labels[at]!;
    out.u32(count);
    for (let i = 0; i <= count; i++) out.u32(labels[at + 1 + i]!);
  }

  /** `br_if $L` to a prepaid loop header: `if charge; br $L end`, so only the taken edge pays the header. */
  private emitEdgeCharge(label: number, headerCost: number, fuelLocal: Uint8Array, out: ByteWriter): void {
    out.byte(0x04); // if (the br_if's condition)
    out.byte(0x40);
    out.byte(0x20); // local.get fuel
    out.bytes(fuelLocal);
    out.byte(0x42); // i64.const header cost
    out.sInt(headerCost);
    out.byte(0x7d); // i64.sub
    out.byte(0x21); // local.set fuel
    out.bytes(fuelLocal);
    out.byte(0x0c); // br $L, one label further out from inside the `if`
    out.u32(label + 1);
    out.byte(0x0b); // end if
  }

  /** After a wrapped loop's `end`: leave with its results, or run the slow path and enter it again. */
  private emitLoopTail(headerCost: number, fuelLocal: Uint8Array, out: ByteWriter): void {
    out.byte(0x0c); // br $X
    out.byte(0x02);
    out.byte(0x0b); // end $S
    this.emitSync(fuelLocal, out);
    out.byte(0x10); // call ftwasm.fuel_exhausted
    out.bytes(this.exhaustedLeb);
    out.byte(0x23); // global.get fuel: the host may have refilled it
    out.bytes(this.fuelGlobalLeb);
    if (headerCost !== 0) {
      out.byte(0x42); // + the header's charge, which entering the loop again takes anew
      out.sInt(headerCost);
      out.byte(0x7c); // i64.add
    }
    out.byte(0x21); // local.set fuel
    out.bytes(fuelLocal);
    out.byte(0x0c); // br $R
    out.byte(0x00);
    out.byte(0x0b); // end $R
    out.byte(0x00); // unreachable: $X's results come only from `br $X`
    out.byte(0x0b); // end $X
  }

  /** The charge at a segment start; `previous` is the kind that ended the last segment (-1 at entry). */
  private emitCharge(previous: number, previousFlags: number, segment: number, fast: boolean, fuelLocal: Uint8Array, out: ByteWriter): void {
    const cost = this.costs[segment]!;
    const fromGlobal = previous === -1 || previous === K_CALL || previous === K_CALL_INDIRECT;
    const check = (previous === -1 || previous === K_LOOP) && !fast;
    if (fast && previous === K_LOOP && this.segPrepaid[segment]) return; // prepaid header, no check: nothing
    if (check && previousFlags & F_WRAP_OPEN && this.segPrepaid[segment]) {
      // prepaid header: every edge into it already charged it; only the check remains
      this.stats.checks++;
      out.byte(0x20); // local.get fuel
      out.bytes(fuelLocal);
      out.byte(0x42); // i64.const 0
      out.byte(0x00);
      out.byte(0x53); // i64.lt_s
      out.byte(0x0d); // br_if $S
      out.byte(0x01);
      return;
    }
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
    if (previousFlags & F_WRAP_OPEN) {
      out.byte(0x0d); // br_if $S
      out.byte(0x01);
      return;
    }
    // Inline: call until the fuel is not negative (a loop with parameters, or the function entry).
    out.byte(0x04); // if
    out.byte(0x40);
    out.byte(0x03); // loop
    out.byte(0x40);
    this.emitSync(fuelLocal, out);
    out.byte(0x10); // call ftwasm.fuel_exhausted
    out.bytes(this.exhaustedLeb);
    out.byte(0x23); // global.get fuel
    out.bytes(this.fuelGlobalLeb);
    out.byte(0x22); // local.tee fuel
    out.bytes(fuelLocal);
    out.byte(0x42); // i64.const 0
    out.byte(0x00);
    out.byte(0x53); // i64.lt_s
    out.byte(0x0d); // br_if 0 (again)
    out.byte(0x00);
    out.byte(0x0b); // end loop
    out.byte(0x0b); // end if
  }

  private emitSync(fuelLocal: Uint8Array, out: ByteWriter): void {
    out.byte(0x20); // local.get fuel
    out.bytes(fuelLocal);
    out.byte(0x24); // global.set fuel
    out.bytes(this.fuelGlobalLeb);
  }
}

/** A signed LEB128 i32 the scan has already checked (read as the block types' s33, which covers it). */
function readS32(buf: Uint8Array, pos: number): number {
  return new ByteReader(buf, pos).s33();
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

/** Reads a block type; returns its type index, or -1 for the empty type and single value types. */
function readBlockType(r: ByteReader, typeCount: number): number {
  const b = r.buf[r.pos];
  if (b === 0x40 || (b !== undefined && VALTYPES.has(b))) {
    r.pos++;
    return -1;
  }
  const at = r.pos;
  const i = r.s33();
  if (i < 0) unsupportedOrMalformed(r, (i + 0x80) & 0xff, at, 'block type');
  if (i >= typeCount) r.fail(`block type index ${i} out of range (the module has ${typeCount})`, at);
  return i;
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
