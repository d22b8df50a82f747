/** Quotes an SQL identifier (schema, table, column) for interpolation into a statement. */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** Quotes a string as an SQL literal (standard_conforming_strings, the default since 9.1). */
export function quoteLiteral(value: string): string {
  return `'${value.replace(/'/g, "''")}'`;
}
