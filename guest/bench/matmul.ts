// Dense matrix multiply, C = A x B, of SIZE x SIZE f64 matrices filled from a fixed PRNG, in i-k-j order
// (the inner loop streams rows). A long, regular inner loop: the best case for a per-block meter.
// `run` returns the sum of C weighted by position.

const SIZE: i32 = 384;
const REPEATS: i32 = 4;

const a = new StaticArray<f64>(SIZE * SIZE);
const b = new StaticArray<f64>(SIZE * SIZE);
const c = new StaticArray<f64>(SIZE * SIZE);

function fill(): void {
  let x: u32 = 88675123;
  for (let i = 0; i < SIZE * SIZE; i++) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    unchecked((a[i] = <f64>(x & 0xffff) / 65536.0 - 0.5));
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    unchecked((b[i] = <f64>(x & 0xffff) / 65536.0 - 0.5));
  }
}

function multiply(): void {
  for (let i = 0; i < SIZE * SIZE; i++) unchecked((c[i] = 0));
  for (let i = 0; i < SIZE; i++) {
    const row = i * SIZE;
    for (let k = 0; k < SIZE; k++) {
      const aik = unchecked(a[row + k]);
      const brow = k * SIZE;
      for (let j = 0; j < SIZE; j++) {
        unchecked((c[row + j] += aik * unchecked(b[brow + j])));
      }
    }
  }
}

export function run(): f64 {
  fill();
  let sum: f64 = 0;
  for (let r = 0; r < REPEATS; r++) {
    multiply();
    for (let i = 0; i < SIZE * SIZE; i++) sum += unchecked(c[i]) * <f64>((i % 7) + r);
  }
  return sum;
}
