/**
 * Log sequence numbers as bigint. PostgreSQL prints them as two 32-bit hex
 * halves, `X/Y` (see "pg_lsn Type" in the PostgreSQL docs); on the wire they
 * are unsigned 64-bit integers.
 */
export type Lsn = bigint;

export const ZERO_LSN: Lsn = 0n;

const LSN_TEXT = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/;

/** Parses `X/Y`; throws a RangeError naming the bad text. */
export function parseLsn(text: string): Lsn {
  const m = LSN_TEXT.exec(text.trim());
  if (!m)
    throw new RangeError(
      `invalid LSN ${JSON.stringify(text)}: expected X/Y in hex, e.g. 0/16B3748`,
    );
  return (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`);
}

/** Like parseLsn, but null for null/undefined (SQL NULL). */
export function parseLsnOrNull(text: string | null | undefined): Lsn | null {
  return text == null ? null : parseLsn(text);
}

export function isLsn(text: string): boolean {
  return LSN_TEXT.test(text.trim());
}

export function formatLsn(lsn: Lsn): string {
  if (lsn < 0n || lsn > 0xffff_ffff_ffff_ffffn) throw new RangeError(`LSN out of range: ${lsn}`);
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffff_ffffn).toString(16).toUpperCase()}`;
}

export function maxLsn(a: Lsn, b: Lsn): Lsn {
  return a > b ? a : b;
}

export function minLsn(values: Iterable<Lsn>): Lsn | null {
  let min: Lsn | null = null;
  for (const v of values) if (min === null || v < min) min = v;
  return min;
}

/** Bytes from `from` to `to`; negative when `to` is behind. */
export function lsnDiff(to: Lsn, from: Lsn): bigint {
  return to - from;
}
