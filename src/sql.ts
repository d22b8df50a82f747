/** Quotes an SQL identifier (schema, table, column) for interpolation into a statement. */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}
