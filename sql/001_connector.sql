-- The connector's own state, in a schema of its own. Applied by `slotline setup`
-- (and by `run` when SLOTLINE_AUTO_SETUP is on); every statement is idempotent.
CREATE SCHEMA IF NOT EXISTS slotline;

-- One row per (slot, sink). `lsn` is the position up to which that sink holds
-- every change durably: the end LSN of the last transaction it committed, or
-- the server's WAL end acknowledged while idle. It is written in the same sink
-- transaction as the rows it covers, and never moves backwards.
CREATE TABLE IF NOT EXISTS slotline.checkpoints (
  slot         text        NOT NULL,
  sink         text        NOT NULL,
  lsn          pg_lsn,
  -- pending_snapshot: slot made by `setup`, initial copy still to do
  -- snapshotting:     initial copy under way (a restart redoes it)
  -- streaming:        `lsn` is valid; replication resumes there
  state        text        NOT NULL CHECK (state IN ('pending_snapshot', 'snapshotting', 'streaming')),
  snapshot_lsn pg_lsn,
  commit_time  timestamptz,
  updated_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (slot, sink)
);

-- Rows that could not be mapped. Nothing is dropped silently: the reason, the
-- LSN and the raw column values (as text) are kept for an operator.
CREATE TABLE IF NOT EXISTS slotline.dead_letters (
  id           bigserial   PRIMARY KEY,
  slot         text        NOT NULL,
  source_table text        NOT NULL,
  operation    text        NOT NULL CHECK (operation IN ('insert', 'update', 'delete', 'snapshot')),
  row_key      text        NOT NULL,
  -- commit LSN of the source transaction (the slot's consistent point for snapshot rows)
  lsn          pg_lsn      NOT NULL,
  commit_time  timestamptz,
  raw          jsonb       NOT NULL,
  reason_code  text        NOT NULL,
  reason       text        NOT NULL,
  state        text        NOT NULL DEFAULT 'pending'
                           CHECK (state IN ('pending', 'retried', 'resolved', 'discarded')),
  attempts     integer     NOT NULL DEFAULT 1,
  first_seen   timestamptz NOT NULL DEFAULT now(),
  last_seen    timestamptz NOT NULL DEFAULT now(),
  note         text,
  UNIQUE (slot, source_table, row_key, lsn)
);
CREATE INDEX IF NOT EXISTS dead_letters_state_idx ON slotline.dead_letters (state, reason_code);

-- Backfills: chunked re-reads of the source beside the live stream (DBLog
-- watermarks). Progress is kept so a restart resumes a running one.
CREATE TABLE IF NOT EXISTS slotline.backfills (
  id          bigserial   PRIMARY KEY,
  slot        text        NOT NULL,
  -- the range: unix seconds of order_book_trades.timestamp [from_ts, to_ts), and/or ids [from_id, to_id]
  from_ts     bigint,
  to_ts       bigint,
  from_id     text,
  to_id       text,
  chunk_size  integer     NOT NULL,
  -- the last id copied; the next chunk starts after it
  last_id     text,
  rows        bigint      NOT NULL DEFAULT 0,
  state       text        NOT NULL CHECK (state IN ('running', 'done', 'cancelled', 'failed')),
  error       text,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS backfills_one_running ON slotline.backfills (slot) WHERE state = 'running';

-- The source history the sink holds (see "The apply rule" in the README).
-- `generation` counts snapshots: every row a snapshot or the stream after it
-- writes carries it, and a row of a newer generation wins over any row of an
-- older one whatever their LSNs, so LSNs of two servers are never compared.
-- `system_id` and `timeline` identify the source server of that generation
-- (IDENTIFY_SYSTEM); a run against another server is refused.
ALTER TABLE slotline.checkpoints ADD COLUMN IF NOT EXISTS generation integer NOT NULL DEFAULT 0;
ALTER TABLE slotline.checkpoints ADD COLUMN IF NOT EXISTS system_id  text;
ALTER TABLE slotline.checkpoints ADD COLUMN IF NOT EXISTS timeline   integer;

-- A dead letter's full version, so that a retry is ordered like the change it stands for.
ALTER TABLE slotline.dead_letters ADD COLUMN IF NOT EXISTS source_seq integer NOT NULL DEFAULT -1;
ALTER TABLE slotline.dead_letters ADD COLUMN IF NOT EXISTS generation integer NOT NULL DEFAULT 0;

-- Leader epochs: a replica that starts leading takes epoch + 1, and every sink
-- write transaction checks (FOR SHARE) that the epoch is still its own, so a
-- deposed leader's late write fails instead of landing after the new leader's.
CREATE TABLE IF NOT EXISTS slotline.leaders (
  slot   text        PRIMARY KEY,
  epoch  bigint      NOT NULL,
  holder text        NOT NULL,
  since  timestamptz NOT NULL DEFAULT now()
);

-- The source schema (the Ponder deployment) whose rows the sink holds for this slot: with
-- SLOTLINE_PONDER_VIEWS_SCHEMA the connector follows redeploys, and a deployment switch
-- moves it in the same transaction as the rows (see docs/ponder.md).
ALTER TABLE slotline.checkpoints ADD COLUMN IF NOT EXISTS source_schema text;

-- Where the leader serves admin and /api/sync/* calls: a standby forwards them
-- to the address of the newest epoch.
ALTER TABLE slotline.leaders ADD COLUMN IF NOT EXISTS address text;

-- The operator's pause belongs to the deployment, not to one process: stored by
-- the leader under its epoch, read by whoever claims the next one. A table of its
-- own, because writers hold the leaders row FOR SHARE: a pause given while a
-- write waits on a stuck sink must not wait behind it.
CREATE TABLE IF NOT EXISTS slotline.pauses (
  slot      text        PRIMARY KEY,
  paused    boolean     NOT NULL,
  paused_at timestamptz,
  epoch     bigint      NOT NULL
);

-- OHLCV refreshes owed (TimescaleDB): spans of trade time that a write changed
-- outside the window the continuous aggregates' refresh policies re-read (a
-- backfill, a verify repair, a replay or late change of old history). Recorded
-- in the same transaction as the rows, so a crash cannot lose one; the
-- connector refreshes ohlcv_1m and ohlcv_1h over them once those transactions
-- have committed (refresh_continuous_aggregate cannot run inside one), then
-- deletes them. A NULL end is open (a TRUNCATE, a snapshot's sweep).
CREATE TABLE IF NOT EXISTS slotline.ohlcv_refresh (
  id         bigserial   PRIMARY KEY,
  slot       text        NOT NULL,
  from_time  timestamptz,
  to_time    timestamptz,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS ohlcv_refresh_slot_idx ON slotline.ohlcv_refresh (slot, id);

-- Raises `message` with SQLSTATE `code`. A write whose COMMIT travels in the
-- message that carries its rows calls it from statements that return a row
-- only when a check fails (the leader epoch, a newer tombstone), so the COMMIT
-- after them never runs unchecked (src/sinks/timescale-copy.ts).
CREATE OR REPLACE FUNCTION slotline.refuse(code text, message text) RETURNS boolean
  LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  RAISE EXCEPTION USING ERRCODE = code, MESSAGE = message;
END
$$;
