import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import type { Sink } from './sink.js';
import { TimescaleSink } from './timescale.js';

/**
 * The enabled sinks, TimescaleDB first: its checkpoint row also carries the
 * slot's lifecycle (snapshot state). The ack sent to PostgreSQL is the minimum
 * over all of them.
 */
export function createSinks(cfg: Config, log: Logger): Sink[] {
  return [
    new TimescaleSink({
      url: cfg.sinkUrl,
      schema: cfg.sinkSchema,
      slot: cfg.slot,
      log: log.child({ component: 'timescale' }),
    }),
  ];
}
