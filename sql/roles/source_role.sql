-- The connector's least-privilege role on the SOURCE (the Ponder database), and the
-- publication it streams. Run by the tables' owner or a superuser, with psql, once per
-- source database (re-running is harmless):
--
--   psql "$SOURCE_OWNER_URL" -v password="$SLOTLINE_SOURCE_PASSWORD" -f sql/roles/source_role.sql
--
-- psql variables (all optional): role (default slotline), password (default: none set,
-- e.g. when the server authenticates otherwise), schema (default public: the schema Ponder
-- writes, SLOTLINE_SOURCE_SCHEMA; in follow mode the deployment the views point at now),
-- publication (default slotline: SLOTLINE_PUBLICATION), follow (on: SLOTLINE_PONDER_VIEWS_SCHEMA
-- is set, see below), ponder_role (default: the owner of :schema.order_book_trades).
--
-- What slotline uses the role for:
--   REPLICATION        create, stream from, advance and drop the logical slot. The attribute
--                      grants more than that (any slot, any plugin, every table's changes of a
--                      database it can connect to; physical replication where pg_hba.conf
--                      allows it): see docs/security.md for what limits it.
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
--
-- Follow mode (-v follow=on): every Ponder redeploy creates a new schema, owned by Ponder's
-- role, and slotline moves its publication there without a superuser. What a redeploy needs,
-- granted here once:
--   ALTER DEFAULT PRIVILEGES FOR ROLE <ponder_role> GRANT USAGE ON SCHEMAS, SELECT ON TABLES
--                      the role reads the schemas and tables Ponder creates from now on
--                      (to copy a new deployment and read its _ponder_meta); the Ponder
--                      schemas that exist already are granted the same way here
--   the publication owned by <ponder_role>, and slotline.follow_deployment(publication, schema)
--                      PostgreSQL lets only the owner of a publication, who must also own the
--                      tables added, move it (ALTER PUBLICATION ... SET TABLE): this SECURITY
--                      DEFINER function, owned by <ponder_role> and executable by the role
--                      alone, does that and nothing else, and only to the two tables of a
--                      deployment whose _ponder_meta says is_ready = 1
-- The alternative, GRANT <ponder_role> TO <role>, would also let the connector write Ponder's
-- tables.

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
\if :{?follow}
\else
  \set follow off
\endif
\if :{?ponder_role}
\else
  SELECT c.relowner::regrole::text AS ponder_role
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE n.nspname = :'schema' AND c.relname = 'order_book_trades'
  \gset
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

\if :follow
  ALTER DEFAULT PRIVILEGES FOR ROLE :"ponder_role" GRANT USAGE ON SCHEMAS TO :"role";
  ALTER DEFAULT PRIVILEGES FOR ROLE :"ponder_role" GRANT SELECT ON TABLES TO :"role";
  -- The deployments that exist already (one may be indexing now).
  SELECT format('GRANT USAGE ON SCHEMA %I TO %I', n.nspname, :'role'),
         format('GRANT SELECT ON ALL TABLES IN SCHEMA %I TO %I', n.nspname, :'role')
    FROM pg_namespace n JOIN pg_class c ON c.relnamespace = n.oid
   WHERE c.relname = '_ponder_meta' AND c.relowner = :'ponder_role'::regrole
  \gexec

  ALTER PUBLICATION :"publication" OWNER TO :"ponder_role";
  CREATE SCHEMA IF NOT EXISTS slotline;
  GRANT USAGE ON SCHEMA slotline TO :"role";
  CREATE OR REPLACE FUNCTION slotline.follow_deployment(publication name, deployment name)
  RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
  DECLARE
    ready text;
  BEGIN
    EXECUTE format('SELECT value ->> %L FROM %I._ponder_meta WHERE key = %L', 'is_ready', deployment, 'app')
       INTO ready;
    IF ready IS DISTINCT FROM '1' THEN
      RAISE EXCEPTION 'schema % is not a ready Ponder deployment', deployment
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    EXECUTE format('ALTER PUBLICATION %I SET TABLE %I.order_book_trades, %I.pools',
                   publication, deployment, deployment);
  END
  $fn$;
  ALTER FUNCTION slotline.follow_deployment(name, name) OWNER TO :"ponder_role";
  REVOKE ALL ON FUNCTION slotline.follow_deployment(name, name) FROM PUBLIC;
  GRANT EXECUTE ON FUNCTION slotline.follow_deployment(name, name) TO :"role";
\endif
