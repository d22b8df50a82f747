-- TimescaleDB only: analytics_trades becomes a hypertable, and OHLCV per pool
-- per minute and per hour are continuous aggregates with refresh policies.
-- Applied instead of 003_ohlcv_plain.sql when the extension is present.

-- A plain-PostgreSQL install may have left ordinary views of the same names.
DO $$
DECLARE
  v text;
BEGIN
  FOREACH v IN ARRAY ARRAY['ohlcv_1h', 'ohlcv_1m'] LOOP
    IF EXISTS (SELECT 1 FROM pg_views WHERE viewname = v AND schemaname = current_schema())
       AND NOT EXISTS (SELECT 1 FROM timescaledb_information.continuous_aggregates
                        WHERE view_name = v AND view_schema = current_schema()) THEN
      EXECUTE format('DROP VIEW %I', v);
    END IF;
  END LOOP;
END $$;

SELECT create_hypertable('analytics_trades', 'time',
                         chunk_time_interval => INTERVAL '1 day',
                         if_not_exists => TRUE,
                         migrate_data => TRUE);

CREATE MATERIALIZED VIEW IF NOT EXISTS ohlcv_1m
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT pool_id,
       time_bucket(INTERVAL '1 minute', time) AS bucket,
       first(price, time)                     AS open,
       max(price)                             AS high,
       min(price)                             AS low,
       last(price, time)                      AS close,
       sum(quantity)                          AS volume,
       sum(volume)                            AS quote_volume,
       count(*)                               AS trades
  FROM analytics_trades
 GROUP BY pool_id, time_bucket(INTERVAL '1 minute', time)
WITH NO DATA;

CREATE MATERIALIZED VIEW IF NOT EXISTS ohlcv_1h
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT pool_id,
       time_bucket(INTERVAL '1 hour', time) AS bucket,
       first(price, time)                   AS open,
       max(price)                           AS high,
       min(price)                           AS low,
       last(price, time)                    AS close,
       sum(quantity)                        AS volume,
       sum(volume)                          AS quote_volume,
       count(*)                             AS trades
  FROM analytics_trades
 GROUP BY pool_id, time_bucket(INTERVAL '1 hour', time)
WITH NO DATA;

-- Real-time aggregates (materialized_only = false) cover the newest buckets;
-- the policies materialise older ones, and re-materialise late changes
-- (Ponder reorgs) inside start_offset.
SELECT add_continuous_aggregate_policy('ohlcv_1m',
         start_offset => INTERVAL '1 day', end_offset => INTERVAL '1 minute',
         schedule_interval => INTERVAL '1 minute', if_not_exists => TRUE);
SELECT add_continuous_aggregate_policy('ohlcv_1h',
         start_offset => INTERVAL '7 days', end_offset => INTERVAL '1 hour',
         schedule_interval => INTERVAL '15 minutes', if_not_exists => TRUE);
