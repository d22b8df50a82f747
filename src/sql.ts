/** Quotes an SQL identifier (schema, table, column) for interpolation into a statement. */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/**
 * Settings that make a database server end one of our sessions soon after its
 * peer went silent (the process killed with its node, a network partition),
 * instead of after the kernel's TCP defaults (over two hours), during which a
 * dead leader's session would keep its advisory lock or its slot. `timeoutMs` is
 * SLOTLINE_DEAD_PEER_TIMEOUT_MS: keepalive probes start after half of it, three
 * unanswered ones a sixth apart end the session, and tcp_user_timeout ends it
 * when data it sent stays unacknowledged that long. Every one is user-settable
 * (no privilege needed); over a Unix socket the server ignores them. See
 * https://www.postgresql.org/docs/current/runtime-config-connection.html
 */
export function deadPeerSettings(timeoutMs: number): string[] {
  const seconds = (ms: number) => Math.max(1, Math.floor(ms / 1000));
  return [
    `SET tcp_keepalives_idle = ${seconds(timeoutMs / 2)}`,
    `SET tcp_keepalives_interval = ${seconds(timeoutMs / 6)}`,
    'SET tcp_keepalives_count = 3',
    `SET tcp_user_timeout = ${Math.floor(timeoutMs)}`,
  ];
}

/**
 * A string as an escape-string literal: the same value whatever the session's
 * standard_conforming_strings. (A NUL cannot be spelled; text cannot hold one.)
 */
export function escapedLiteral(value: string): string {
  return `E'${value.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}

/** Quotes a string as an SQL literal (standard_conforming_strings, the default since 9.1). */
export function quoteLiteral(value: string): string {
  return `'${value.replace(/'/g, "''")}'`;
}
