-- TimescaleDB only (after 003_ohlcv_timescale.sql): chunks of analytics_trades
-- older than SLOTLINE_COLUMNSTORE_AFTER_SECONDS move to the columnstore
-- (compressed), recent ones stay in the rowstore where the stream and Ponder's
-- reorgs write. The connector sets slotline.columnstore_after (an interval, or
-- empty when the variable is 0) for this session before applying the file.
-- Why these settings, and how writes reach compressed chunks: docs/timescaledb.md.
DO $$
DECLARE
  after   interval := nullif(current_setting('slotline.columnstore_after', true), '')::interval;
  trades  regclass := 'analytics_trades'::regclass;
  enabled boolean;
  job     record;
BEGIN
  SELECT h.compression_enabled INTO enabled
    FROM timescaledb_information.hypertables h
   WHERE format('%I.%I', h.hypertable_schema, h.hypertable_name)::regclass = trades;

  -- Segments per pool, newest first inside each: the queries people run are a
  -- pool's (or its symbol's: one symbol per pool) trades over a time range, and
  -- the OHLCV aggregates group by pool and time bucket. The bloom filter on
  -- trade_id lets a change of one trade (by id, the only key a source DELETE
  -- carries) find its batch among the compressed ones instead of decompressing
  -- every batch of every chunk. Applied once, when the columnstore is first
  -- enabled: an operator's later changes to these settings are kept.
  IF after IS NOT NULL AND NOT enabled THEN
    EXECUTE format(
      'ALTER TABLE %s SET (timescaledb.compress, timescaledb.compress_segmentby = %L, '
      'timescaledb.compress_orderby = %L, timescaledb.compress_index = %L)',
      trades, 'pool_id', 'time DESC', 'bloom(trade_id)');
  END IF;

  SELECT j.job_id, j.config INTO job
    FROM timescaledb_information.jobs j
   WHERE j.proc_name = 'policy_compression'
     AND format('%I.%I', j.hypertable_schema, j.hypertable_name)::regclass = trades;

  IF after IS NULL THEN
    -- 0: no policy. Chunks already compressed stay so; writes still reach them.
    IF job.job_id IS NOT NULL THEN
      PERFORM remove_compression_policy(trades, if_exists => true);
    END IF;
  ELSIF job.job_id IS NULL THEN
    PERFORM add_compression_policy(trades, compress_after => after);
  ELSIF (job.config ->> 'compress_after')::interval IS DISTINCT FROM after THEN
    -- The age changed: keep the job (and any schedule an operator gave it).
    PERFORM alter_job(job.job_id,
                      config => jsonb_set(job.config, '{compress_after}', to_jsonb(after::text)));
  END IF;
END $$;
