#!/usr/bin/env bash
# Captures raw pgoutput (proto_version 1) messages from a THROWAWAY PostgreSQL
# 15+ cluster started with wal_level=logical, and prints them in the fixture
# format of src/decode/fixtures/ (see the README there). It creates and drops
# tables, a publication, a slot and a replication origin: never point it at a
# shared server. Connection from the usual PG* variables, e.g.
#   PGHOST=/tmp/sock PGPORT=54329 PGUSER=postgres test/tools/capture-pgoutput.sh \
#     > src/decode/fixtures/pg15-pgoutput-v1.hex
set -euo pipefail

q() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }

q <<'SQL' >/dev/null
SET client_min_messages = warning;
DROP PUBLICATION IF EXISTS pub;
SELECT pg_drop_replication_slot('capture') FROM pg_replication_slots WHERE slot_name = 'capture';
SELECT pg_replication_origin_drop('upstream') FROM pg_replication_origin WHERE roname = 'upstream';
DROP TABLE IF EXISTS order_book_trades, pools, trade_notes;
DROP TYPE IF EXISTS trade_kind;
CREATE TABLE order_book_trades(id text primary key, chain_id integer not null,
  price numeric(78,0), quantity numeric(78,0), timestamp integer,
  transaction_id text, side varchar, pool_id text not null);
CREATE TABLE pools(id text primary key, chain_id integer not null, coin varchar,
  order_book text, base_currency text not null, quote_currency text not null,
  base_decimals integer, quote_decimals integer,
  volume numeric(78,0), volume_in_quote numeric(78,0), price numeric(78,0), timestamp integer);
CREATE TYPE trade_kind AS ENUM ('limit', 'market');
CREATE TABLE trade_notes(id integer primary key, kind trade_kind not null, body text);
ALTER TABLE trade_notes ALTER COLUMN body SET STORAGE EXTERNAL; -- out of line, uncompressed
CREATE PUBLICATION pub FOR TABLE order_book_trades, pools, trade_notes;
SELECT pg_create_logical_replication_slot('capture', 'pgoutput');
SELECT pg_replication_origin_create('upstream');
SQL

printf '# captured by test/tools/capture-pgoutput.sh from %s\n' \
  "$(q -A -t -c "SELECT split_part(version(), ' on ', 1)")"

# One section per step: the step's SQL as a comment, then one line per message:
# <lsn> <xid> <hex bytes>, as pg_logical_slot_get_binary_changes reports them.
step() {
  local title=$1 sql=$2
  printf '# %s\n' "$title"
  q -c "$sql" >/dev/null
  q -A -t -F ' ' -c "SELECT lsn, xid, encode(data, 'hex') FROM pg_logical_slot_get_binary_changes('capture', NULL, NULL,
    'proto_version', '1', 'publication_names', 'pub', 'messages', 'true')"
}

step 'insert: pool, then a trade with 78-digit price/quantity and NULL transaction_id' "
BEGIN;
INSERT INTO pools VALUES ('0xpool', 31337, 'MWETH/MUSDC', '0xbook', '0xweth', '0xusdc', 18, 6,
  0, 0, 115792089237316195423570985008687907853269984665640564039457584007913129639935, 1700000000);
INSERT INTO order_book_trades VALUES ('0xtx-0', 31337,
  115792089237316195423570985008687907853269984665640564039457584007913129639935,
  100000000000000000000000000000000000000000000000000000000000000000000000000001,
  1700000001, NULL, 'buy', '0xbook');
COMMIT;"

step 'update, default replica identity, key unchanged (new tuple only)' "
UPDATE order_book_trades SET side = 'sell' WHERE id = '0xtx-0';"

step 'update, default replica identity, key changed (K tuple)' "
UPDATE order_book_trades SET id = '0xtx-1' WHERE id = '0xtx-0';"

step 'update after REPLICA IDENTITY FULL (Relation again, O tuple)' "
ALTER TABLE order_book_trades REPLICA IDENTITY FULL;
UPDATE order_book_trades SET quantity = 7 WHERE id = '0xtx-1';"

step 'enum column (Type message) and a 3000-byte out-of-line text' "
INSERT INTO trade_notes VALUES (1, 'limit', repeat('0123456789', 300));"

step 'update leaving the TOASTed column unchanged (u)' "
UPDATE trade_notes SET kind = 'market' WHERE id = 1;"

step 'delete with REPLICA IDENTITY FULL (O) and default (K)' "
BEGIN;
DELETE FROM order_book_trades WHERE id = '0xtx-1';
DELETE FROM pools WHERE id = '0xpool';
COMMIT;"

step 'truncate two tables, RESTART IDENTITY CASCADE' "
TRUNCATE pools, order_book_trades RESTART IDENTITY CASCADE;"

step 'transactional and non-transactional logical messages' "
BEGIN;
SELECT pg_logical_emit_message(true, 'slotline', 'in-txn');
SELECT pg_logical_emit_message(false, 'slotline-heartbeat', '1700000002');
INSERT INTO trade_notes VALUES (2, 'market', NULL);
COMMIT;"

step 'change replayed from a replication origin (Origin message)' "
SELECT pg_replication_origin_session_setup('upstream');
BEGIN;
SELECT pg_replication_origin_xact_setup('0/ABCDEF0', '2024-01-02 03:04:05+00');
INSERT INTO trade_notes VALUES (3, 'limit', 'from upstream');
COMMIT;
SELECT pg_replication_origin_session_reset();"

q <<'SQL' >/dev/null
SELECT pg_drop_replication_slot('capture');
SELECT pg_replication_origin_drop('upstream');
DROP PUBLICATION pub;
SQL
