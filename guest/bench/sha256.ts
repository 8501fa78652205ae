// SHA-256 over a long message: a 1 MiB block of xorshift bytes, hashed STREAM_REPEATS times in a row as one
// message. Pure integer work in tight loops; imports nothing but env.abort. `run` returns a checksum of
// the digest; `digest_word(i)` exposes the digest so a host can check it against a reference.

const BLOCK_BYTES: i32 = 1 << 20;
const STREAM_REPEATS: i32 = 64;

const block = new StaticArray<u8>(BLOCK_BYTES);
const state = new StaticArray<u32>(8);
const w = new StaticArray<u32>(64);
const tail = new StaticArray<u8>(128);

const K: StaticArray<u32> = [
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

function fillBlock(): void {
  let x: u32 = 0x9e3779b9;
  const base = changetype<usize>(block);
  for (let i = 0; i < BLOCK_BYTES; i += 4) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    store<u32>(base + <usize>i, x);
  }
}

function resetState(): void {
  unchecked((state[0] = 0x6a09e667));
  unchecked((state[1] = 0xbb67ae85));
  unchecked((state[2] = 0x3c6ef372));
  unchecked((state[3] = 0xa54ff53a));
  unchecked((state[4] = 0x510e527f));
  unchecked((state[5] = 0x9b05688c));
  unchecked((state[6] = 0x1f83d9ab));
  unchecked((state[7] = 0x5be0cd19));
}

// One 64-byte chunk at `ptr`.
function compress(ptr: usize): void {
  for (let t = 0; t < 16; t++) {
    unchecked((w[t] = bswap<u32>(load<u32>(ptr + (<usize>t << 2)))));
  }
  for (let t = 16; t < 64; t++) {
    const w15 = unchecked(w[t - 15]);
    const w2 = unchecked(w[t - 2]);
    const s0 = rotr<u32>(w15, 7) ^ rotr<u32>(w15, 18) ^ (w15 >> 3);
    const s1 = rotr<u32>(w2, 17) ^ rotr<u32>(w2, 19) ^ (w2 >> 10);
    unchecked((w[t] = unchecked(w[t - 16]) + s0 + unchecked(w[t - 7]) + s1));
  }
  let a = unchecked(state[0]);
  let b = unchecked(state[1]);
  let c = unchecked(state[2]);
  let d = unchecked(state[3]);
  let e = unchecked(state[4]);
  let f = unchecked(state[5]);
  let g = unchecked(state[6]);
  let h = unchecked(state[7]);
  for (let t = 0; t < 64; t++) {
    const S1 = rotr<u32>(e, 6) ^ rotr<u32>(e, 11) ^ rotr<u32>(e, 25);
    const ch = (e & f) ^ (~e & g);
    const t1 = h + S1 + ch + unchecked(K[t]) + unchecked(w[t]);
    const S0 = rotr<u32>(a, 2) ^ rotr<u32>(a, 13) ^ rotr<u32>(a, 22);
    const maj = (a & b) ^ (a & c) ^ (b & c);
    const t2 = S0 + maj;
    h = g;
    g = f;
    f = e;
    e = d + t1;
    d = c;
    c = b;
    b = a;
    a = t1 + t2;
  }
  unchecked((state[0] += a));
  unchecked((state[1] += b));
  unchecked((state[2] += c));
  unchecked((state[3] += d));
  unchecked((state[4] += e));
  unchecked((state[5] += f));
  unchecked((state[6] += g));
  unchecked((state[7] += h));
}

// The message is a whole number of 64-byte chunks, so padding is one extra chunk.
function finish(messageBytes: u64): void {
  const ptr = changetype<usize>(tail);
  for (let i = 0; i < 64; i++) store<u8>(ptr + <usize>i, 0);
  store<u8>(ptr, 0x80);
  store<u64>(ptr + 56, bswap<u64>(messageBytes << 3));
  compress(ptr);
}

export function run(): i32 {
  fillBlock();
  resetState();
  const base = changetype<usize>(block);
  for (let r = 0; r < STREAM_REPEATS; r++) {
    for (let off = 0; off < BLOCK_BYTES; off += 64) compress(base + <usize>off);
  }
  finish(<u64>BLOCK_BYTES * <u64>STREAM_REPEATS);
  let sum: u32 = 0;
  for (let i = 0; i < 8; i++) sum = rotr<u32>(sum, 5) ^ unchecked(state[i]);
  return <i32>sum;
}

export function digest_word(i: i32): u32 {
  return state[i];
}
