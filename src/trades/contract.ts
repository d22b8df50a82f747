/**
 * The source contract: the columns of Ponder's `order_book_trades` and
 * `pools` that slotline reads, their types and what it needs of their values.
 * The mapping (map.ts) takes its column names from here, and the README's
 * table is generated from here (`npm run docs`), so the two cannot drift.
 * Columns are found by name; other columns are ignored. Values arrive as text
 * (pgoutput's text format), so another type works when its text is what
 * `needs` says.
 */

export interface SourceColumn {
  /** The column's name at the source. */
  name: string;
  /** The type Ponder gives it. */
  type: string;
  /** Without it the table cannot be mapped (`source_schema_mismatch`). */
  required: boolean;
  /** What slotline needs of its values and does with them. */
  needs: string;
}

const column = (name: string, type: string, required: boolean, needs: string): SourceColumn => ({
  name,
  type,
  required,
  needs,
});

export const TRADE_SOURCE_COLUMNS = {
  id: column('id', 'text', true, 'the trade key: primary key (or in the replica identity)'),
  chainId: column('chain_id', 'integer', true, 'a 32-bit integer'),
  price: column('price', 'numeric(78,0)', true, 'a whole number ≥ 0 of at most 78 digits'),
  quantity: column('quantity', 'numeric(78,0)', true, 'a whole number ≥ 0 of at most 78 digits'),
  timestamp: column(
    'timestamp',
    'integer',
    true,
    'unix seconds (integer or bigint: verify and backfill compare it)',
  ),
  transactionId: column('transaction_id', 'text', false, 'copied as is'),
  side: column('side', 'varchar', true, '`buy` or `sell`, any case'),
  poolId: column(
    'pool_id',
    'text',
    true,
    'the pool: equal to its `order_book` (or `id`, SLOTLINE_POOL_JOIN_COLUMN)',
  ),
} as const satisfies Record<string, SourceColumn>;

export const POOL_SOURCE_COLUMNS = {
  id: column('id', 'text', true, 'the pool key: primary key (or in the replica identity)'),
  coin: column('coin', 'varchar', true, "the trades' symbol, e.g. `MWETH/MUSDC`"),
  orderBook: column(
    'order_book',
    'text',
    false,
    "what trades' `pool_id` names (SLOTLINE_POOL_JOIN_COLUMN=order_book, the default)",
  ),
  chainId: column('chain_id', 'integer', false, 'a 32-bit integer'),
  baseCurrency: column('base_currency', 'text', false, 'copied as is'),
  quoteCurrency: column('quote_currency', 'text', false, 'copied as is'),
  baseDecimals: column('base_decimals', 'integer', false, 'a 32-bit integer'),
  quoteDecimals: column('quote_decimals', 'integer', false, 'a 32-bit integer'),
  volume: column('volume', 'numeric(78,0)', false, 'a number'),
  volumeInQuote: column('volume_in_quote', 'numeric(78,0)', false, 'a number'),
  price: column('price', 'numeric(78,0)', false, 'a number'),
  timestamp: column('timestamp', 'integer', false, 'a 32-bit integer'),
} as const satisfies Record<string, SourceColumn>;

export const SOURCE_CONTRACT = {
  order_book_trades: TRADE_SOURCE_COLUMNS,
  pools: POOL_SOURCE_COLUMNS,
} as const;

/** The README's short table of the source contract: required columns with their types. */
export function sourceContractMarkdown(): string {
  const rows = Object.entries(SOURCE_CONTRACT).map(([table, cols]) => {
    const all = Object.values(cols as Record<string, SourceColumn>);
    const required = all.filter((c) => c.required).map((c) => `\`${c.name}\` ${c.type}`);
    const optional = all.filter((c) => !c.required).map((c) => `\`${c.name}\``);
    return `| \`${table}\` | ${required.join(', ')} | ${optional.join(', ')} |`;
  });
  return ['| table | required columns | optional columns |', '| --- | --- | --- |', ...rows].join(
    '\n',
  );
}

/** The full table: every column, and what slotline needs of it. */
export function sourceColumnsMarkdown(): string {
  const rows = Object.entries(SOURCE_CONTRACT).flatMap(([table, cols]) =>
    Object.values(cols as Record<string, SourceColumn>).map(
      (c) =>
        `| \`${table}\` | \`${c.name}\` | ${c.type} | ${c.required ? 'yes' : 'no'} | ${c.needs} |`,
    ),
  );
  return [
    '| table | column | Ponder type | required | slotline needs |',
    '| --- | --- | --- | --- | --- |',
    ...rows,
  ].join('\n');
}
