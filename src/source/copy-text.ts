/**
 * Parser of one row of `COPY ... TO STDOUT` in text format (PostgreSQL docs,
 * COPY, "Text Format": https://www.postgresql.org/docs/current/sql-copy.html).
 * Used for the initial snapshot; fields come back as the same text the
 * replication stream sends, so one mapping serves both.
 */

const TAB = 0x09;
const NEWLINE = 0x0a;
const BACKSLASH = 0x5c;
const UPPER_N = 0x4e;

/**
 * Splits one row (ending in '\n'; the newline is optional) into its fields.
 * `\N` alone is NULL. An empty line gives `['']`. The strings are copies, so
 * the chunk may be reused afterwards.
 */
export function parseCopyTextRow(chunk: Buffer): (string | null)[] {
  let end = chunk.length;
  if (end > 0 && chunk[end - 1] === NEWLINE) end--;
  const fields: (string | null)[] = [];
  // Position of the next backslash in the row, found once and reused across
  // fields, so fields without escapes take the fast path without rescanning.
  let backslash = chunk.indexOf(BACKSLASH);
  let start = 0;
  while (true) {
    let stop = chunk.indexOf(TAB, start);
    if (stop < 0 || stop > end) stop = end;
    if (backslash >= 0 && backslash < start) backslash = chunk.indexOf(BACKSLASH, start);
    if (backslash < 0 || backslash >= stop) {
      fields.push(chunk.toString('utf8', start, stop));
    } else if (stop - start === 2 && chunk[start + 1] === UPPER_N) {
      fields.push(null);
    } else {
      fields.push(unescapeField(chunk, start, stop));
    }
    if (stop >= end) return fields;
    start = stop + 1;
  }
}

/**
 * Decodes backslash escapes to bytes, then the bytes as UTF-8 (escapes such
 * as \xE2\x82\xAC spell one multi-byte character). Unescaped tabs and
 * newlines cannot occur inside a field: COPY always escapes them.
 */
function unescapeField(chunk: Buffer, start: number, stop: number): string {
  const out = Buffer.allocUnsafe(stop - start); // decoding never lengthens
  let n = 0;
  let i = start;
  while (i < stop) {
    const c = chunk[i++]!;
    if (c !== BACKSLASH || i >= stop) {
      out[n++] = c; // a lone trailing backslash is kept as is
      continue;
    }
    const e = chunk[i++]!;
    switch (e) {
      case 0x62 /* b */:
        out[n++] = 0x08;
        break;
      case 0x66 /* f */:
        out[n++] = 0x0c;
        break;
      case 0x6e /* n */:
        out[n++] = 0x0a;
        break;
      case 0x72 /* r */:
        out[n++] = 0x0d;
        break;
      case 0x74 /* t */:
        out[n++] = 0x09;
        break;
      case 0x76 /* v */:
        out[n++] = 0x0b;
        break;
      case 0x78 /* x */: {
        // \xHH: one or two hex digits; without any, 'x' stands for itself.
        let v = hexValue(i < stop ? chunk[i]! : -1);
        if (v < 0) {
          out[n++] = e;
          break;
        }
        i++;
        const d = hexValue(i < stop ? chunk[i]! : -1);
        if (d >= 0) {
          v = v * 16 + d;
          i++;
        }
        out[n++] = v;
        break;
      }
      default:
        if (e >= 0x30 && e <= 0x37) {
          // \digits: one to three octal digits; like the server, keep the low byte.
          let v = e - 0x30;
          for (let k = 0; k < 2 && i < stop && chunk[i]! >= 0x30 && chunk[i]! <= 0x37; k++) {
            v = v * 8 + (chunk[i++]! - 0x30);
          }
          out[n++] = v & 0xff;
        } else {
          // \\ and any other escaped character stand for that character.
          out[n++] = e;
        }
    }
  }
  return out.toString('utf8', 0, n);
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  return -1;
}
