// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), table-driven, slicing-by-8. Pure JS on purpose:
// the npm options are native (@node-rs/crc32, sse4_crc32) or byte-at-a-time (@aws-crypto/crc32c), and a
// native build is one more thing to break on a fresh machine. Slicing-by-8 reads 8 bytes per step.

const POLY = 0x82f63b78;
const TABLE = new Uint32Array(8 * 256);

for (let n = 0; n < 256; n++) {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
  TABLE[n] = c >>> 0;
}
for (let n = 0; n < 256; n++) {
  let c = TABLE[n]!;
  for (let t = 1; t < 8; t++) {
    c = TABLE[c & 0xff]! ^ (c >>> 8);
    TABLE[t * 256 + n] = c >>> 0;
  }
}

/**
 * Extends a finished CRC-32C `crc` (0 for none yet) over bytes[start, end): crc32cUpdate(crc32c(a), b)
 * equals crc32c(a followed by b).
 */
export function crc32cUpdate(crc: number, bytes: Uint8Array, start = 0, end = bytes.length): number {
  const t = TABLE;
  let c = ~crc;
  let i = start;
  const end8 = end - 8;
  for (; i <= end8; i += 8) {
    const a = c ^ (bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24));
    c =
      t[1792 + (a & 0xff)]! ^
      t[1536 + ((a >>> 8) & 0xff)]! ^
      t[1280 + ((a >>> 16) & 0xff)]! ^
      t[1024 + (a >>> 24)]! ^
      t[768 + bytes[i + 4]!]! ^
      t[512 + bytes[i + 5]!]! ^
      t[256 + bytes[i + 6]!]! ^
      t[bytes[i + 7]!]!;
  }
  for (; i < end; i++) c = t[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

/** CRC-32C of bytes[start, end), as an unsigned 32-bit number. */
export function crc32c(bytes: Uint8Array, start = 0, end = bytes.length): number {
  return crc32cUpdate(0, bytes, start, end);
}

/** The 32-bit digest kept for SEND and LOG outputs: CRC-32C of the bytes. */
export function digest32(bytes: Uint8Array): number {
  return crc32c(bytes, 0, bytes.length);
}
