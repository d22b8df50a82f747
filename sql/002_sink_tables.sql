-- Sink tables, created in SLOTLINE_SINK_SCHEMA (the connector sets search_path
-- to it before applying this file). Prices and quantities are raw uint256
-- amounts: unconstrained numeric, never floating point.
CREATE TABLE IF NOT EXISTS analytics_trades (
  trade_id       text        NOT NULL,
  time           timestamptz NOT NULL,
  chain_id       integer     NOT NULL,
  pool_id        text        NOT NULL,
  symbol         text,
  side           text        NOT NULL,
  price          numeric     NOT NULL,
  quantity       numeric     NOT NULL,
  -- price × quantity, exact
  volume         numeric     NOT NULL,
  transaction_id text,
  -- commit LSN of the source transaction that wrote this version of the row;
  -- an older change never overwrites a newer one
  source_lsn     pg_lsn      NOT NULL,
  -- A hypertable's unique keys must contain its time column.
  PRIMARY KEY (trade_id, time)
);
CREATE INDEX IF NOT EXISTS analytics_trades_pool_time_idx ON analytics_trades (pool_id, time DESC);

-- A mirror of the source's pools, kept current by the stream.
CREATE TABLE IF NOT EXISTS pools (
  id              text PRIMARY KEY,
  chain_id        integer,
  coin            text,
  order_book      text,
  base_currency   text,
  quote_currency  text,
  base_decimals   integer,
  quote_decimals  integer,
  volume          numeric,
  volume_in_quote numeric,
  price           numeric,
  timestamp       integer,
  source_lsn      pg_lsn NOT NULL
);
CREATE INDEX IF NOT EXISTS pools_order_book_idx ON pools (order_book);

-- Row versions (see "The apply rule" in the README): with source_lsn, the
-- source generation and the change's position in its transaction. Rows written
-- before these columns existed get generation 0 and position -1 (before any
-- change of the same transaction), which is how they were ordered then.
ALTER TABLE analytics_trades ADD COLUMN IF NOT EXISTS source_generation integer NOT NULL DEFAULT 0;
ALTER TABLE analytics_trades ADD COLUMN IF NOT EXISTS source_seq        integer NOT NULL DEFAULT -1;
ALTER TABLE pools            ADD COLUMN IF NOT EXISTS source_generation integer NOT NULL DEFAULT 0;
ALTER TABLE pools            ADD COLUMN IF NOT EXISTS source_seq        integer NOT NULL DEFAULT -1;

-- Deleted keys and the version that deleted them, so that an older write
-- arriving later (a replay, a retry, a stale path) cannot bring a row back.
-- Beside the tables they guard, so they follow SLOTLINE_SINK_SCHEMA. Purged by
-- the connector once nothing older can arrive any more.
CREATE TABLE IF NOT EXISTS analytics_trades_tombstones (
  trade_id          text        PRIMARY KEY,
  source_generation integer     NOT NULL,
  source_lsn        pg_lsn      NOT NULL,
  source_seq        integer     NOT NULL,
  deleted_at        timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS pools_tombstones (
  id                text        PRIMARY KEY,
  source_generation integer     NOT NULL,
  source_lsn        pg_lsn      NOT NULL,
  source_seq        integer     NOT NULL,
  deleted_at        timestamptz NOT NULL DEFAULT now()
);
-- The COPY path asks which tombstones are newer than the rows it copies: a
-- range scan of this index (none while streaming forward).
CREATE INDEX IF NOT EXISTS analytics_trades_tombstones_version_idx
  ON analytics_trades_tombstones (source_generation, source_lsn, source_seq);
