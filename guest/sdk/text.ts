// Small text helpers the examples share: hex, and strict decimal integers read straight from bytes.

import { utf8Decode } from "./utf8";

const HEX_DIGITS = memory.data<u8>([
  0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66,
]);

/** Lowercase hex of bytes, two characters per byte. */
export function hexEncode(bytes: Uint8Array): string {
  const out = new Uint8Array(bytes.length << 1);
  for (let i = 0; i < bytes.length; i++) {
    const b = <usize>unchecked(bytes[i]);
    unchecked((out[i << 1] = load<u8>(HEX_DIGITS + (b >> 4))));
    unchecked((out[(i << 1) + 1] = load<u8>(HEX_DIGITS + (b & 15))));
  }
  return utf8Decode(out);
}

/** Result of parseDecimal: `ok` is false for anything but an optional '-' and 1..19 digits in range. */
export class ParsedInt {
  ok: bool = false;
  value: i64 = 0;
}

/**
 * Parses bytes[start, end) as a signed decimal i64: optional '-', then ASCII digits, nothing else (no '+',
 * spaces or empty digits). Out-of-range values are rejected, not wrapped.
 */
export function parseDecimal(bytes: Uint8Array, start: i32, end: i32): ParsedInt {
  assert(start >= 0 && start <= end && end <= bytes.length, "parseDecimal: range outside the bytes");
  const out = new ParsedInt();
  let i = start;
  const negative = i < end && unchecked(bytes[i]) == 0x2d;
  if (negative) i++;
  if (i == end) return out;
  // Accumulate as a negative number so that i64.MIN_VALUE parses too.
  let acc: i64 = 0;
  for (; i < end; i++) {
    const d = <i32>unchecked(bytes[i]) - 0x30;
    if (d < 0 || d > 9) return out;
    if (acc < (i64.MIN_VALUE + d) / 10) return out;
    acc = acc * 10 - d;
  }
  if (!negative) {
    if (acc == i64.MIN_VALUE) return out;
    acc = -acc;
  }
  out.ok = true;
  out.value = acc;
  return out;
}
