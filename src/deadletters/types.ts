/** What a dead letter is, and which of them an action applies to. */
export const DEAD_LETTER_STATES = ['pending', 'retried', 'resolved', 'discarded'] as const;
export type DeadLetterState = (typeof DEAD_LETTER_STATES)[number];

/** Which dead letters an action applies to. Every field narrows; none at all means "all". */
export interface DeadLetterFilter {
  ids?: number[];
  reason?: string;
  table?: string;
  state?: DeadLetterState;
  /** first_seen at or after / before (ISO or unix seconds) */
  from?: string;
  to?: string;
  /** trades waiting for this pool (unknown_pool) */
  poolRef?: string;
}

export interface DeadLetterRow {
  id: number;
  sourceTable: string;
  operation: string;
  rowKey: string;
  lsn: string;
  commitTime: Date | null;
  raw: Record<string, string | null>;
  reasonCode: string;
  reason: string;
  state: DeadLetterState;
  attempts: number;
  firstSeen: Date;
  lastSeen: Date;
  note: string | null;
}
