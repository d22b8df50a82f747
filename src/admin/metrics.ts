import client from 'prom-client';
import type { PgoutputMessage, Relation } from '../decode/pgoutput.js';
import { hotPathCounts } from '../sinks/timescale-copy.js';

/**
 * Every metric slotline exports, declared here with help text, in base units
 * (`_bytes`, `_seconds`, `_total`). No LSN or id is ever a label.
 */
// eslint-disable-next-line max-lines-per-function -- declarative: one metric definition after another, no logic to split
export function createMetrics(opts: { version: string; defaultMetrics?: boolean }) {
  const registry = new client.Registry();
  if (opts.defaultMetrics !== false)
    client.collectDefaultMetrics({ register: registry, prefix: 'slotline_' });
  const r = [registry];
  // The COPY counters follow the sink's totals (sinks/timescale-copy.ts), read at each scrape.
  const seen = {
    copied: hotPathCounts.copied,
    conflicts: hotPathCounts.conflicts,
    tombstones: hotPathCounts.tombstones,
  };

  const m = {
    registry,
    buildInfo: new client.Gauge({
      name: 'slotline_build_info',
      help: 'Always 1; labels carry the version of slotline and Node.js.',
      labelNames: ['version', 'node'],
      registers: r,
    }),
    leader: new client.Gauge({
      name: 'slotline_leader',
      help: '1 while this process holds the slot and streams, 0 otherwise (standby, stopped).',
      registers: r,
    }),
    slotLagBytes: new client.Gauge({
      name: 'slotline_slot_lag_bytes',
      help: 'WAL the slot has not confirmed: pg_current_wal_lsn() - confirmed_flush_lsn.',
      registers: r,
    }),
    slotRetainedWalBytes: new client.Gauge({
      name: 'slotline_slot_retained_wal_bytes',
      help: 'WAL the server keeps for the slot: pg_current_wal_lsn() - restart_lsn.',
      registers: r,
    }),
    slotSafeWalSizeBytes: new client.Gauge({
      name: 'slotline_slot_safe_wal_size_bytes',
      help: 'WAL that can still be written before the slot is invalidated (max_slot_wal_keep_size); NaN when unlimited.',
      registers: r,
    }),
    slotWalStatus: new client.Gauge({
      name: 'slotline_slot_wal_status',
      help: "1 for the slot's current wal_status (reserved, extended, unreserved, lost), 0 for the others.",
      labelNames: ['status'],
      registers: r,
    }),
    slotActive: new client.Gauge({
      name: 'slotline_slot_active',
      help: '1 when some process streams from the slot (pg_replication_slots.active).',
      registers: r,
    }),
    slotExists: new client.Gauge({
      name: 'slotline_slot_exists',
      help: '1 when the replication slot exists on the source.',
      registers: r,
    }),
    commitLagSeconds: new client.Gauge({
      name: 'slotline_commit_lag_seconds',
      help: 'Age of the oldest source commit not yet durable in every sink (0 when caught up).',
      registers: r,
    }),
    lastCommitTimestampSeconds: new client.Gauge({
      name: 'slotline_last_commit_timestamp_seconds',
      help: 'Commit time (unix seconds) of the last source transaction durable in every sink.',
      registers: r,
    }),
    sinkCheckpointLsnBytes: new client.Gauge({
      name: 'slotline_sink_checkpoint_lsn_bytes',
      help: "A sink's checkpoint as a WAL position in bytes (to see it advance; not exact past 2^53).",
      labelNames: ['sink'],
      registers: r,
    }),
    eventsDecoded: new client.Counter({
      name: 'slotline_events_decoded_total',
      help: 'Row changes decoded from the slot, counted at each commit, by source table and operation.',
      labelNames: ['table', 'operation'],
      registers: r,
    }),
    transactions: new client.Counter({
      name: 'slotline_transactions_total',
      help: 'Source transactions decoded (those skipped as already durable are not counted).',
      registers: r,
    }),
    rowsWritten: new client.Counter({
      name: 'slotline_sink_rows_written_total',
      help: 'Changes durably written, per sink.',
      labelNames: ['sink'],
      registers: r,
    }),
    writeDuration: new client.Histogram({
      name: 'slotline_sink_write_duration_seconds',
      help: 'Time to write one batch durably (one sink transaction), per sink.',
      labelNames: ['sink'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: r,
    }),
    batchRows: new client.Histogram({
      name: 'slotline_sink_batch_rows',
      help: 'Changes per written batch, per sink.',
      labelNames: ['sink'],
      buckets: [1, 10, 50, 100, 500, 1000, 2500, 5000, 10000, 50000],
      registers: r,
    }),
    inflightRows: new client.Gauge({
      name: 'slotline_inflight_rows',
      help: 'Changes decoded but not yet durable in every sink.',
      registers: r,
    }),
    inflightBytes: new client.Gauge({
      name: 'slotline_inflight_bytes',
      help: 'Decoded bytes held in the in-flight queue.',
      registers: r,
    }),
    streamPaused: new client.Gauge({
      name: 'slotline_stream_paused',
      help: '1 while the connector has stopped reading the replication socket (backpressure or admin pause).',
      registers: r,
    }),
    publicationProblem: new client.Gauge({
      name: 'slotline_publication_problem',
      help: '1 while the publication does not feed both source tables (dropped, or a table recreated outside it): changes are being lost.',
      registers: r,
    }),
    ponderDeployment: new client.Gauge({
      name: 'slotline_ponder_deployment_info',
      help: 'Follow mode: 1 for the Ponder deployment schema slotline streams (the one whose rows the sink holds).',
      labelNames: ['schema'],
      registers: r,
    }),
    ponderViewsMismatch: new client.Gauge({
      name: 'slotline_ponder_views_mismatch',
      help: 'Follow mode: 1 while the Ponder views point at a schema slotline is not streaming (a switch pending, running or failing, or views that cannot be resolved).',
      registers: r,
    }),
    ponderSwitches: new client.Counter({
      name: 'slotline_ponder_switches_total',
      help: 'Follow mode: switches to a new Ponder deployment, completed.',
      registers: r,
    }),
    ponderLastSwitchSeconds: new client.Gauge({
      name: 'slotline_ponder_last_switch_duration_seconds',
      help: 'Follow mode: how long the last switch took: checks, publication move, copy of the new deployment and the reconciling sink transaction.',
      registers: r,
    }),
    ponderLastSwitchTimestampSeconds: new client.Gauge({
      name: 'slotline_ponder_last_switch_timestamp_seconds',
      help: 'Follow mode: when the last switch completed (unix seconds); 0 before the first.',
      registers: r,
    }),
    deadLetters: new client.Counter({
      name: 'slotline_dead_letters_total',
      help: 'Rows sent to slotline.dead_letters, by reason code.',
      labelNames: ['reason'],
      registers: r,
    }),
    deadLettersByState: new client.Gauge({
      name: 'slotline_dead_letter_entries',
      help: 'Dead letters in slotline.dead_letters, by reason code and state (pending, retried, resolved, discarded).',
      labelNames: ['reason', 'state'],
      registers: r,
    }),
    errors: new client.Counter({
      name: 'slotline_errors_total',
      help: 'Errors by kind (the error code: connection, slot_in_use, auth_failed, pg_<sqlstate>, …) and where they happened.',
      labelNames: ['kind', 'where'],
      registers: r,
    }),
    copyRows: new client.Counter({
      name: 'slotline_sink_copy_rows_total',
      help: 'Trades the TimescaleDB sink wrote by COPY (new inserts and snapshot rows), in writes that committed; the other rows went by the guarded upsert.',
      registers: r,
      collect() {
        this.inc(hotPathCounts.copied - seen.copied);
        seen.copied = hotPathCounts.copied;
      },
    }),
    copyFallbacks: new client.Counter({
      name: 'slotline_sink_copy_fallbacks_total',
      help: 'COPYs rolled back to the guarded upsert, in writes that committed, by reason: conflict (the sink already held a row: a replay after a restart or an LSN reset) or tombstone (a copied id had a newer tombstone).',
      labelNames: ['reason'],
      registers: r,
      collect() {
        this.inc({ reason: 'conflict' }, hotPathCounts.conflicts - seen.conflicts);
        this.inc({ reason: 'tombstone' }, hotPathCounts.tombstones - seen.tombstones);
        seen.conflicts = hotPathCounts.conflicts;
        seen.tombstones = hotPathCounts.tombstones;
      },
    }),
    backfillRows: new client.Counter({
      name: 'slotline_backfill_rows_total',
      help: 'Rows re-read from the source by backfills and handed to the sinks.',
      registers: r,
    }),
    backfillRunning: new client.Gauge({
      name: 'slotline_backfill_running',
      help: '1 while a backfill runs.',
      registers: r,
    }),
    verifyBucketsChecked: new client.Counter({
      name: 'slotline_verify_buckets_checked_total',
      help: 'Time buckets compared between source and sink by verify (periodic or POST /api/sync/run).',
      registers: r,
    }),
    verifyBucketsMismatched: new client.Gauge({
      name: 'slotline_verify_buckets_mismatched',
      help: 'Buckets that differed between source and sink at the end of the last verify (after its repair, if it repaired).',
      registers: r,
    }),
    verifyRowsRepaired: new client.Counter({
      name: 'slotline_verify_rows_repaired_total',
      help: 'Rows a verify repair re-copied from the source (action=recopied) or removed from the sink because the source no longer has them (action=deleted).',
      labelNames: ['action'],
      registers: r,
    }),
    verifyLastRunTimestampSeconds: new client.Gauge({
      name: 'slotline_verify_last_run_timestamp_seconds',
      help: 'When the last verify finished (unix seconds); 0 before the first.',
      registers: r,
    }),
  };
  m.buildInfo.set({ version: opts.version, node: process.version }, 1);
  for (const s of WAL_STATUSES) m.slotWalStatus.set({ status: s }, 0);
  return m;
}

export type Metrics = ReturnType<typeof createMetrics>;

export const WAL_STATUSES = ['reserved', 'extended', 'unreserved', 'lost'] as const;

const OPERATIONS = ['insert', 'update', 'delete'] as const;

/**
 * Counts decoded row changes per transaction and adds them to the counter at
 * its commit, so the counter never includes a transaction that was cut off.
 * Per message it only bumps a number of the change's relation (no label key
 * is built per row: that was 3% of a catch-up's CPU); labels are made at the
 * commit, once per relation and operation.
 */
export class DecodeCounter {
  /** Per relation (as decoded: a new Relation message is a new entry) its inserts, updates, deletes. */
  private readonly pending = new Map<Relation, [number, number, number]>();
  private lastRelation: Relation | null = null;
  private lastCounts: [number, number, number] = [0, 0, 0];

  constructor(private readonly metrics: Metrics) {}

  onMessage(msg: PgoutputMessage): void {
    switch (msg.tag) {
      case 'insert':
        this.counts(msg.relation)[0] += 1;
        return;
      case 'update':
        this.counts(msg.relation)[1] += 1;
        return;
      case 'delete':
        this.counts(msg.relation)[2] += 1;
        return;
      case 'commit':
        this.metrics.transactions.inc();
        for (const [relation, counts] of this.pending) {
          for (let i = 0; i < OPERATIONS.length; i++) {
            const n = counts[i]!;
            if (n > 0)
              this.metrics.eventsDecoded.inc({ table: relation.name, operation: OPERATIONS[i] }, n);
          }
        }
        this.clear();
        return;
      case 'begin':
        this.clear();
        return;
      default:
        return;
    }
  }

  private counts(relation: Relation): [number, number, number] {
    if (relation === this.lastRelation) return this.lastCounts;
    let counts = this.pending.get(relation);
    if (counts === undefined) {
      counts = [0, 0, 0];
      this.pending.set(relation, counts);
    }
    this.lastRelation = relation;
    this.lastCounts = counts;
    return counts;
  }

  private clear(): void {
    this.pending.clear();
    this.lastRelation = null;
  }
}
