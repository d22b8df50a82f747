-- The connector's least-privilege role on the SOURCE (the Ponder database), and the
-- publication it streams. Run by the tables' owner or a superuser, with psql, once per
-- source database (re-running is harmless):
--
--   psql "$SOURCE_OWNER_URL" -v password="$SLOTLINE_SOURCE_PASSWORD" -f sql/roles/source_role.sql
--
-- psql variables (all optional): role (default slotline), password (default: none set,
-- e.g. when the server authenticates otherwise), schema (default public: the schema Ponder
-- writes, SLOTLINE_SOURCE_SCHEMA), publication (default slotline: SLOTLINE_PUBLICATION).
--
-- What the role can do, and nothing more:
--   REPLICATION        create, stream from, advance and drop the logical slot
--   USAGE on the schema and SELECT on order_book_trades and pools
--                      the initial snapshot (COPY in the slot's snapshot) and backfills
--   the built-ins it calls are PUBLIC by default: pg_logical_emit_message (heartbeats and
--   backfill watermarks), pg_try_advisory_lock (leader election), pg_replication_slots.
-- It is not a superuser, owns nothing, and cannot write to any table.
--
-- The publication is created here, by the owner, because only a table's owner may publish
-- it (CREATE PUBLICATION ... FOR TABLE). The connector's set-up (`slotline setup`, and `run`
-- with SLOTLINE_AUTO_SETUP) then finds it complete and only checks it.
-- Not applied by `slotline setup`: that applies 001-003 to the sink only.

\set ON_ERROR_STOP on
\if :{?role}
\else
  \set role slotline
\endif
\if :{?schema}
\else
  \set schema public
\endif
\if :{?publication}
\else
  \set publication slotline
\endif

SELECT format('CREATE ROLE %I', :'role')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role')
\gexec
ALTER ROLE :"role" WITH LOGIN REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
\if :{?password}
  ALTER ROLE :"role" WITH PASSWORD :'password';
\endif

GRANT USAGE ON SCHEMA :"schema" TO :"role";
GRANT SELECT ON TABLE :"schema".order_book_trades, :"schema".pools TO :"role";

-- publish_via_partition_root: with Ponder's isolated ordering the tables are partitioned by
-- chain, and every partition's changes are then published as the table's own.
SELECT format('CREATE PUBLICATION %I FOR TABLE %I.order_book_trades, %I.pools '
              'WITH (publish_via_partition_root = true)', :'publication', :'schema', :'schema')
 WHERE NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = :'publication')
\gexec
SELECT format('ALTER PUBLICATION %I SET (publish_via_partition_root = true)', :'publication')
 WHERE EXISTS (SELECT 1 FROM pg_publication WHERE pubname = :'publication' AND NOT pubviaroot)
\gexec
