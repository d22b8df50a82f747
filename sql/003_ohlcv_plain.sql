-- OHLCV per pool per minute and per hour on plain PostgreSQL (no TimescaleDB):
-- ordinary views, computed at query time. Prices are raw amounts; volume is the
-- sum of quantities, quote_volume the sum of price × quantity.
CREATE OR REPLACE VIEW ohlcv_1m AS
SELECT pool_id,
       date_trunc('minute', time)                  AS bucket,
       (array_agg(price ORDER BY time, trade_id))[1]       AS open,
       max(price)                                  AS high,
       min(price)                                  AS low,
       (array_agg(price ORDER BY time DESC, trade_id DESC))[1] AS close,
       sum(quantity)                               AS volume,
       sum(volume)                                 AS quote_volume,
       count(*)                                    AS trades
  FROM analytics_trades
 GROUP BY pool_id, date_trunc('minute', time);

CREATE OR REPLACE VIEW ohlcv_1h AS
SELECT pool_id,
       date_trunc('hour', time)                    AS bucket,
       (array_agg(price ORDER BY time, trade_id))[1]       AS open,
       max(price)                                  AS high,
       min(price)                                  AS low,
       (array_agg(price ORDER BY time DESC, trade_id DESC))[1] AS close,
       sum(quantity)                               AS volume,
       sum(volume)                                 AS quote_volume,
       count(*)                                    AS trades
  FROM analytics_trades
 GROUP BY pool_id, date_trunc('hour', time);
