-- The connector's least-privilege role on the SINK (TimescaleDB or plain PostgreSQL). Run
-- by the database's owner or a superuser, with psql, once per sink database (re-running is
-- harmless):
--
--   psql "$SINK_OWNER_URL" -v password="$SLOTLINE_SINK_PASSWORD" -f sql/roles/sink_role.sql
--
-- psql variables (all optional): role (default slotline_sink), password (default: none
-- set), schema (default public: SLOTLINE_SINK_SCHEMA).
--
-- The connector applies sql/001-003 itself at start (idempotent DDL), so the role may create
-- its schema "slotline" (CREATE on the database) and the sink tables and views (USAGE and
-- CREATE on the sink schema); it then owns what it made. It is not a superuser and cannot
-- touch other schemas' tables. TimescaleDB is not a trusted extension, so it is created
-- here, by the owner, when the server has it loaded.

\set ON_ERROR_STOP on
\if :{?role}
\else
  \set role slotline_sink
\endif
\if :{?schema}
\else
  \set schema public
\endif

SELECT format('CREATE ROLE %I', :'role')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role')
\gexec
ALTER ROLE :"role" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
\if :{?password}
  ALTER ROLE :"role" WITH PASSWORD :'password';
\endif

SELECT 'CREATE EXTENSION IF NOT EXISTS timescaledb'
 WHERE current_setting('shared_preload_libraries') ~ 'timescaledb'
   AND EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')
\gexec

SELECT format('GRANT CONNECT, CREATE ON DATABASE %I TO %I', current_database(), :'role')
\gexec
CREATE SCHEMA IF NOT EXISTS :"schema";
GRANT USAGE, CREATE ON SCHEMA :"schema" TO :"role";
