// A bytecode interpreter: a register machine whose dispatch loop is a `switch` over opcodes, running a
// Collatz program (sum of the stopping times of 1..LIMIT). Many tiny basic blocks and an indirect branch
// per virtual instruction: the worst shape for a per-block meter. `run` returns the sum.

const LIMIT: i64 = 150_000;

// Opcodes. An instruction is four i32: op, a, b, c.
const HALT = 0;
const LOADI = 1; // r[a] = b
const MOV = 2; // r[a] = r[b]
const ADD = 3; // r[a] = r[b] + r[c]
const ADDI = 4; // r[a] = r[b] + c
const MULI = 5; // r[a] = r[b] * c
const SHRI = 6; // r[a] = r[b] >> c
const ANDI = 7; // r[a] = r[b] & c
const JMP = 8; // pc = a
const JZ = 9; // if r[a] == 0: pc = b
const JEQ = 10; // if r[a] == r[b]: pc = c
const JGT = 11; // if r[a] > r[b]: pc = c

const REGISTERS = 8;
const regs = new StaticArray<i64>(REGISTERS);

// r0 = n, r1 = x, r2 = steps, r3 = total, r4 = limit, r5 = one, r6 = scratch.
const program: StaticArray<i32> = [
  /* 0 */ LOADI, 0, 1, 0,
  /* 1 */ LOADI, 3, 0, 0,
  /* 2 */ LOADI, 5, 1, 0,
  /* 3 */ JGT, 0, 4, 17, // loop_n: if n > limit goto done
  /* 4 */ MOV, 1, 0, 0, // x = n
  /* 5 */ LOADI, 2, 0, 0, // steps = 0
  /* 6 */ JEQ, 1, 5, 14, // loop_x: if x == 1 goto next_n
  /* 7 */ ANDI, 6, 1, 1,
  /* 8 */ JZ, 6, 11, 0, // if (x & 1) == 0 goto even
  /* 9 */ MULI, 1, 1, 3,
  /* 10 */ ADDI, 1, 1, 1, // x = 3x + 1, falls into even: (3x+1) is even
  /* 11 */ SHRI, 1, 1, 1, // even: x >>= 1
  /* 12 */ ADDI, 2, 2, 1,
  /* 13 */ JMP, 6, 0, 0,
  /* 14 */ ADD, 3, 3, 2, // next_n: total += steps
  /* 15 */ ADDI, 0, 0, 1,
  /* 16 */ JMP, 3, 0, 0,
  /* 17 */ HALT, 3, 0, 0, // done: result in r3
];

function execute(): i64 {
  let pc = 0;
  while (true) {
    const at = pc << 2;
    const op = unchecked(program[at]);
    const a = unchecked(program[at + 1]);
    const b = unchecked(program[at + 2]);
    const c = unchecked(program[at + 3]);
    pc++;
    switch (op) {
      case HALT:
        return unchecked(regs[a]);
      case LOADI:
        unchecked((regs[a] = <i64>b));
        break;
      case MOV:
        unchecked((regs[a] = unchecked(regs[b])));
        break;
      case ADD:
        unchecked((regs[a] = unchecked(regs[b]) + unchecked(regs[c])));
        break;
      case ADDI:
        unchecked((regs[a] = unchecked(regs[b]) + <i64>c));
        break;
      case MULI:
        unchecked((regs[a] = unchecked(regs[b]) * <i64>c));
        break;
      case SHRI:
        unchecked((regs[a] = unchecked(regs[b]) >> <i64>c));
        break;
      case ANDI:
        unchecked((regs[a] = unchecked(regs[b]) & <i64>c));
        break;
      case JMP:
        pc = a;
        break;
      case JZ:
        if (unchecked(regs[a]) == 0) pc = b;
        break;
      case JEQ:
        if (unchecked(regs[a]) == unchecked(regs[b])) pc = c;
        break;
      case JGT:
        if (unchecked(regs[a]) > unchecked(regs[b])) pc = c;
        break;
      default:
        unreachable();
    }
  }
}

export function run(): f64 {
  for (let i = 0; i < REGISTERS; i++) unchecked((regs[i] = 0));
  unchecked((regs[4] = LIMIT));
  return <f64>execute();
}
