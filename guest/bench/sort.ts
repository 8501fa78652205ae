// Sorting: ELEMENTS pseudo-random i32 (xorshift) sorted with a hand-written quicksort (median of three,
// insertion sort below a cutoff, recursion on the smaller side). Branchy, memory-bound integer work with
// many calls. `run` checks the order and returns a position-weighted checksum (-1 if not sorted).

const ELEMENTS: i32 = 4_000_000;
const INSERTION_MAX: i32 = 16;

const data = new StaticArray<i32>(ELEMENTS);

function fill(): void {
  let x: u32 = 2463534242;
  for (let i = 0; i < ELEMENTS; i++) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    unchecked((data[i] = <i32>x));
  }
}

@inline function get(i: i32): i32 {
  return unchecked(data[i]);
}
@inline function set(i: i32, v: i32): void {
  unchecked((data[i] = v));
}
@inline function swap(i: i32, j: i32): void {
  const t = get(i);
  set(i, get(j));
  set(j, t);
}

function insertionSort(lo: i32, hi: i32): void {
  for (let i = lo + 1; i <= hi; i++) {
    const v = get(i);
    let j = i - 1;
    while (j >= lo && get(j) > v) {
      set(j + 1, get(j));
      j--;
    }
    set(j + 1, v);
  }
}

function quickSort(lo: i32, hi: i32): void {
  while (hi - lo > INSERTION_MAX) {
    const mid = lo + ((hi - lo) >> 1);
    if (get(mid) < get(lo)) swap(mid, lo);
    if (get(hi) < get(lo)) swap(hi, lo);
    if (get(hi) < get(mid)) swap(hi, mid);
    const pivot = get(mid);
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (get(i) < pivot) i++;
      while (get(j) > pivot) j--;
      if (i <= j) {
        swap(i, j);
        i++;
        j--;
      }
    }
    if (j - lo < hi - i) {
      quickSort(lo, j);
      lo = i;
    } else {
      quickSort(i, hi);
      hi = j;
    }
  }
  insertionSort(lo, hi);
}

export function run(): i32 {
  fill();
  quickSort(0, ELEMENTS - 1);
  let sum: u32 = 0;
  for (let i = 1; i < ELEMENTS; i++) {
    if (get(i - 1) > get(i)) return -1;
    sum = sum * 31 + <u32>get(i) + <u32>i;
  }
  return <i32>sum;
}
