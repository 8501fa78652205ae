// UTF-8 helpers. AssemblyScript strings are UTF-16 and its decoder does not reject malformed input, so a
// guest that must not mangle bytes checks `utf8Valid` first and answers malformed input with an error.

/** The UTF-8 bytes of `text` (lone surrogates become WTF-8, as AssemblyScript's encoder does). */
export function utf8Encode(text: string): Uint8Array {
  return Uint8Array.wrap(String.UTF8.encode(text));
}

// `end` < 0 stands for "to the end of bytes"; checks the range and returns the resolved end.
function rangeEnd(bytes: Uint8Array, start: i32, end: i32): i32 {
  const stop = end < 0 ? bytes.length : end;
  assert(start >= 0 && start <= stop && stop <= bytes.length, "utf8: range outside the bytes");
  return stop;
}

/** Decodes bytes[start, end) (end < 0 = to the end); malformed input gives unspecified text (utf8Valid). */
export function utf8Decode(bytes: Uint8Array, start: i32 = 0, end: i32 = -1): string {
  const stop = rangeEnd(bytes, start, end);
  return String.UTF8.decodeUnsafe(bytes.dataStart + <usize>start, <usize>(stop - start));
}

/** True when bytes[start, end) is well-formed UTF-8 (RFC 3629: no overlongs, surrogates or > U+10FFFF). */
export function utf8Valid(bytes: Uint8Array, start: i32 = 0, end: i32 = -1): bool {
  const stop = rangeEnd(bytes, start, end);
  let i = start;
  while (i < stop) {
    const b0 = <u32>unchecked(bytes[i]);
    if (b0 < 0x80) {
      i++;
      continue;
    }
    let extra: i32;
    let lo: u32 = 0x80; // bounds for the second byte, which carry the overlong/surrogate/range rules
    let hi: u32 = 0xbf;
    if (b0 >= 0xc2 && b0 <= 0xdf) {
      extra = 1;
    } else if (b0 >= 0xe0 && b0 <= 0xef) {
      extra = 2;
      if (b0 == 0xe0) lo = 0xa0;
      if (b0 == 0xed) hi = 0x9f;
    } else if (b0 >= 0xf0 && b0 <= 0xf4) {
      extra = 3;
      if (b0 == 0xf0) lo = 0x90;
      if (b0 == 0xf4) hi = 0x8f;
    } else {
      return false;
    }
    if (stop - i <= extra) return false;
    const b1 = <u32>unchecked(bytes[i + 1]);
    if (b1 < lo || b1 > hi) return false;
    for (let k = 2; k <= extra; k++) {
      if ((<u32>unchecked(bytes[i + k]) & 0xc0) != 0x80) return false;
    }
    i += extra + 1;
  }
  return true;
}
