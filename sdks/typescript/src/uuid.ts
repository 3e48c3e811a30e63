/**
 * Time-ordered UUIDv7 ids (RFC 9562), written here so the package needs no dependency.
 *
 * Layout: 48 bits of Unix milliseconds, the version (7), a 12-bit counter (RFC 9562 §6.2,
 * method 1), the variant (0b10) and 62 random bits. The counter starts at a random value below
 * 2^11 each millisecond and counts up within it, so ids from one process are strictly increasing
 * even when many are made in the same millisecond or the clock steps back.
 */

const HEX: string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

interface RandomSource {
  getRandomValues<T extends ArrayBufferView | null>(array: T): T;
}

function randomBytes(out: Uint8Array): void {
  const crypto = (globalThis as { crypto?: RandomSource }).crypto;
  if (crypto?.getRandomValues) {
    crypto.getRandomValues(out);
    return;
  }
  // Node 18 without --experimental-global-webcrypto: ids stay unique through the clock and the
  // counter; they are identifiers, not secrets, so a non-cryptographic source is acceptable.
  for (let i = 0; i < out.length; i++) out[i] = Math.floor(Math.random() * 256);
}

let lastMs = -1;
let counter = 0;

/** A new UUIDv7 string, e.g. `0193a9c2-7d4e-7a31-9c1f-3e5b8f0a2d64`. */
export function uuidv7(now: number = Date.now()): string {
  const bytes = new Uint8Array(16);
  randomBytes(bytes);
  let ms = Math.max(Math.floor(now), lastMs);
  if (ms > lastMs) {
    counter = ((bytes[6]! & 0x07) << 8) | bytes[7]!; // a random start with room to count up
  } else {
    counter += 1;
    if (counter > 0xfff) {
      ms += 1; // the counter ran out within this millisecond: borrow the next one
      counter = 0;
    }
  }
  lastMs = ms;
  // 48-bit milliseconds, big-endian; 2^48 ms reaches the year 10889, beyond bitwise range
  let rest = ms;
  for (let i = 5; i >= 0; i--) {
    bytes[i] = rest % 256;
    rest = Math.floor(rest / 256);
  }
  bytes[6] = 0x70 | (counter >> 8);
  bytes[7] = counter & 0xff;
  bytes[8] = 0x80 | (bytes[8]! & 0x3f);
  let out = "";
  for (let i = 0; i < 16; i++) {
    out += HEX[bytes[i]!];
    if (i === 3 || i === 5 || i === 7 || i === 9) out += "-";
  }
  return out;
}

/** The Unix milliseconds a UUIDv7 carries (undefined for anything else). */
export function uuidv7Time(id: string): number | undefined {
  const match = /^([0-9a-f]{8})-([0-9a-f]{4})-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i.exec(id);
  return match ? parseInt(match[1]! + match[2]!, 16) : undefined;
}
