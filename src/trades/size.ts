/**
 * What a change costs once it leaves the router: the in-flight bound and the
 * row limit count this estimate (DESIGN rule 9), not the replication message.
 * A trade carries its pool's symbol, copied into every serialized form (the
 * sink's JSON parameter, the Kafka envelope), so 5,000 trades of a pool whose
 * coin is 60 KiB become 300 MB of JSON although their messages total 1 MB.
 */

/** Per change: JSON keys, the LSN as text, the exact volume (up to 157 digits), the envelope's source block. */
export const CHANGE_OVERHEAD_BYTES = 512;

/** Default of SLOTLINE_MAX_ROW_BYTES: under Kafka's default message limit (1 MB) with room for the envelope. */
export const DEFAULT_MAX_ROW_BYTES = 512 * 1024;

const PLAIN_JSON = /^[\x20-\x21\x23-\x5b\x5d-\x7e]*$/;

/** UTF-8 bytes of `s` as a JSON string literal (quotes and escapes included). */
export function jsonStringBytes(s: string | null): number {
  if (s === null) return 4;
  // Printable ASCII without quote or backslash serializes as itself: the common case, no copy.
  if (PLAIN_JSON.test(s)) return s.length + 2;
  return Buffer.byteLength(JSON.stringify(s), 'utf8');
}

/** A change of `messageBytes` decoded bytes that also carries a symbol of `symbolBytes`. */
export function changeBytes(messageBytes: number, symbolBytes = 0): number {
  return messageBytes + symbolBytes + CHANGE_OVERHEAD_BYTES;
}
