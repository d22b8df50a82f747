import { describe, expect, it } from 'vitest';
import { adminUrl } from './admin/client.js';
import { configMarkdown, effectiveSettings, loadConfig, SETTINGS } from './config.js';
import { ConfigError } from './errors.js';

const BASE = {
  SLOTLINE_SOURCE_URL: 'postgres://u:s3cretpw@source/ponder',
  SLOTLINE_SINK_URL: 'postgresql://u:s3cretpw@sink/analytics',
};

function fails(env: Record<string, string>): ConfigError {
  try {
    loadConfig(env);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return e as ConfigError;
  }
  throw new Error('loadConfig accepted a bad configuration');
}

describe('loadConfig', () => {
  it('applies defaults', () => {
    expect(loadConfig({ ...BASE })).toMatchObject({
      sourceUrl: BASE.SLOTLINE_SOURCE_URL,
      sinkUrl: BASE.SLOTLINE_SINK_URL,
      sourceSchema: 'public',
      sinkSchema: 'public',
      slot: 'slotline',
      publication: 'slotline',
      poolJoinColumn: 'order_book',
      kafkaBrokers: null,
      httpPort: 8080,
      adminToken: null,
      logLevel: 'info',
      batchMaxRows: 5000,
      inflightMaxRows: 10000,
      inflightMaxBytes: 64 * 1024 * 1024,
      statusIntervalMs: 10000,
      idleAckIntervalMs: 1000,
      heartbeatIntervalMs: 10000,
      retryInitialMs: 500,
      retryMaxMs: 30000,
      shutdownTimeoutMs: 25000,
      autoSetup: true,
      snapshot: 'initial',
      applyTruncate: true,
    });
  });

  it('takes the leadership settings: admin port, advertised address, timeouts', () => {
    expect(loadConfig({ ...BASE })).toMatchObject({
      adminPort: 0,
      advertiseUrl: null,
      forwardTimeoutMs: 60_000,
      deadPeerTimeoutMs: 10_000,
    });
    const c = loadConfig({
      ...BASE,
      SLOTLINE_ADMIN_PORT: '8081',
      SLOTLINE_ADVERTISE_URL: 'http://10.0.0.7:8081',
      SLOTLINE_DEAD_PEER_TIMEOUT_MS: '4000',
    });
    expect(c).toMatchObject({
      adminPort: 8081,
      advertiseUrl: 'http://10.0.0.7:8081',
      deadPeerTimeoutMs: 4000,
    });
    expect(fails({ ...BASE, SLOTLINE_ADMIN_PORT: '8080' }).message).toMatch(
      /SLOTLINE_ADMIN_PORT must differ from SLOTLINE_HTTP_PORT/,
    );
    for (const bad of ['10.0.0.7:8081', 'http://10.0.0.7:8081/admin', 'ftp://x:1'])
      expect(fails({ ...BASE, SLOTLINE_ADVERTISE_URL: bad }).message).toMatch(
        /SLOTLINE_ADVERTISE_URL .*no path/,
      );
    expect(fails({ ...BASE, SLOTLINE_DEAD_PEER_TIMEOUT_MS: '500' }).message).toMatch(
      /SLOTLINE_DEAD_PEER_TIMEOUT_MS/,
    );
  });

  it('keeps chunks in the rowstore for 7 days by default; 0 means no columnstore policy', () => {
    expect(loadConfig({ ...BASE }).columnstoreAfterSeconds).toBe(7 * 86_400);
    const off = { ...BASE, SLOTLINE_COLUMNSTORE_AFTER_SECONDS: '0' };
    expect(loadConfig(off).columnstoreAfterSeconds).toBe(0);
    const hour = { ...BASE, SLOTLINE_COLUMNSTORE_AFTER_SECONDS: '3600' };
    expect(loadConfig(hour).columnstoreAfterSeconds).toBe(3600);
    // Under an hour would put chunks that reorgs still rewrite into the columnstore.
    const short = fails({ ...BASE, SLOTLINE_COLUMNSTORE_AFTER_SECONDS: '600' });
    expect(short.message).toContain('SLOTLINE_COLUMNSTORE_AFTER_SECONDS');
  });

  it('treats an empty value as unset', () => {
    expect(loadConfig({ ...BASE, SLOTLINE_HTTP_PORT: '' }).httpPort).toBe(8080);
  });

  it('parses explicit values', () => {
    const c = loadConfig({
      ...BASE,
      SLOTLINE_HTTP_PORT: '0',
      SLOTLINE_AUTO_SETUP: 'no',
      SLOTLINE_APPLY_TRUNCATE: '0',
      SLOTLINE_POOL_JOIN_COLUMN: 'id',
      SLOTLINE_SLOT: 'my_slot_2',
      SLOTLINE_ADMIN_TOKEN: 'a'.repeat(16),
    });
    expect(c).toMatchObject({
      httpPort: 0,
      autoSetup: false,
      applyTruncate: false,
      poolJoinColumn: 'id',
      slot: 'my_slot_2',
      adminToken: 'a'.repeat(16),
    });
  });

  it('names a missing SLOTLINE_SOURCE_URL', () => {
    const e = fails({ SLOTLINE_SINK_URL: BASE.SLOTLINE_SINK_URL });
    expect(e.message).toContain('SLOTLINE_SOURCE_URL');
    expect(e.message).not.toContain('SLOTLINE_SINK_URL');
  });

  it.each([
    ['SLOTLINE_HTTP_PORT', 'abc'],
    ['SLOTLINE_HTTP_PORT', '70000'],
    ['SLOTLINE_SLOT', 'Bad-Name'],
    ['SLOTLINE_POOL_JOIN_COLUMN', 'x'],
    ['SLOTLINE_AUTO_SETUP', 'maybe'],
    ['SLOTLINE_ADMIN_TOKEN', 'short'],
    ['SLOTLINE_SOURCE_SCHEMA', 'drop table;'],
    ['SLOTLINE_BATCH_MAX_ROWS', '0'],
  ])('names the bad variable %s=%s', (name, value) => {
    const e = fails({ ...BASE, [name]: value });
    expect(e.message).toContain(name);
    expect(e.message.split('\n')).toHaveLength(2); // the header and this one problem
  });

  it('never echoes the admin token', () => {
    const e = fails({ ...BASE, SLOTLINE_ADMIN_TOKEN: 'tok3n-xyz' });
    expect(e.message).not.toContain('tok3n-xyz');
  });

  it('lists every bad variable at once', () => {
    const e = fails({ ...BASE, SLOTLINE_HTTP_PORT: 'abc', SLOTLINE_SLOT: 'Bad-Name' });
    expect(e.message).toContain('SLOTLINE_HTTP_PORT');
    expect(e.message).toContain('SLOTLINE_SLOT');
  });

  it('never echoes a URL password', () => {
    const withOther = fails({ ...BASE, SLOTLINE_HTTP_PORT: 'abc' });
    expect(withOther.message).not.toContain('s3cretpw');
    const badUrl = fails({ ...BASE, SLOTLINE_SOURCE_URL: 'mysql://u:s3cretpw@h/db' });
    expect(badUrl.message).toContain('SLOTLINE_SOURCE_URL');
    expect(badUrl.message).not.toContain('s3cretpw');
    const unparseable = fails({ ...BASE, SLOTLINE_SINK_URL: 'u:s3cretpw@h/db' });
    expect(unparseable.message).toContain('SLOTLINE_SINK_URL');
    expect(unparseable.message).not.toContain('s3cretpw');
  });

  it('splits and trims Kafka brokers', () => {
    expect(
      loadConfig({ ...BASE, SLOTLINE_KAFKA_BROKERS: ' k1:9092 ,k2:9092,, k3:9093 ' }).kafkaBrokers,
    ).toEqual(['k1:9092', 'k2:9092', 'k3:9093']);
    expect(loadConfig({ ...BASE, SLOTLINE_KAFKA_BROKERS: ' , ' }).kafkaBrokers).toBeNull();
  });

  it('rejects RETRY_MAX below RETRY_INITIAL', () => {
    const e = fails({ ...BASE, SLOTLINE_RETRY_INITIAL_MS: '5000', SLOTLINE_RETRY_MAX_MS: '1000' });
    expect(e.message).toContain('SLOTLINE_RETRY_MAX_MS');
    expect(
      loadConfig({ ...BASE, SLOTLINE_RETRY_INITIAL_MS: '1000', SLOTLINE_RETRY_MAX_MS: '1000' })
        .retryMaxMs,
    ).toBe(1000);
  });

  it('rejects an in-flight bound below the batch size', () => {
    const e = fails({ ...BASE, SLOTLINE_BATCH_MAX_ROWS: '100', SLOTLINE_INFLIGHT_MAX_ROWS: '10' });
    expect(e.message).toContain('SLOTLINE_INFLIGHT_MAX_ROWS');
  });
});

describe('configMarkdown', () => {
  it('lists every SLOTLINE_ variable with its default', () => {
    const md = configMarkdown();
    const names = Object.keys(SETTINGS);
    expect(names.length).toBeGreaterThan(20);
    for (const name of names) expect(md).toContain(`| \`${name}\` |`);
    expect(md).toContain('| `SLOTLINE_HTTP_PORT` | `8080` |');
    expect(md).toContain('| `SLOTLINE_SOURCE_URL` | — |');
    expect(md.split('\n')).toHaveLength(names.length + 2);
  });
});

describe('loadConfig: Kafka', () => {
  it('defaults: topics per table, created with 6 partitions and the brokers’ replication factor', () => {
    expect(loadConfig({ ...BASE, SLOTLINE_KAFKA_BROKERS: 'k1:9092' })).toMatchObject({
      kafkaBrokers: ['k1:9092'],
      kafkaClientId: 'slotline',
      kafkaTopicTrades: 'ponder.order_book_trades',
      kafkaTopicPools: 'ponder.pools',
      kafkaCreateTopics: true,
      kafkaTopicPartitions: 6,
      kafkaReplicationFactor: null,
      kafkaTombstones: false,
      kafkaSsl: false,
      kafkaSslCaFile: null,
      kafkaSasl: null,
      kafkaDelivery: 'exactly-once',
      kafkaTopicProgress: 'ponder.order_book_trades.progress',
      kafkaTransactionalId: 'slotline.slotline.ponder.order_book_trades',
    });
  });

  it('exactly-once names follow the slot and the trades topic; each may be set', () => {
    const c = loadConfig({
      ...BASE,
      SLOTLINE_SLOT: 'prod',
      SLOTLINE_KAFKA_TOPIC_TRADES: 'dex.trades',
    });
    expect(c.kafkaTopicProgress).toBe('dex.trades.progress');
    expect(c.kafkaTransactionalId).toBe('slotline.prod.dex.trades');
    const set = loadConfig({
      ...BASE,
      SLOTLINE_KAFKA_DELIVERY: 'at-least-once',
      SLOTLINE_KAFKA_TOPIC_PROGRESS: 'slotline-progress',
      SLOTLINE_KAFKA_TRANSACTIONAL_ID: 'team-a.slotline',
    });
    expect(set).toMatchObject({
      kafkaDelivery: 'at-least-once',
      kafkaTopicProgress: 'slotline-progress',
      kafkaTransactionalId: 'team-a.slotline',
    });
    expect(fails({ ...BASE, SLOTLINE_KAFKA_DELIVERY: 'exactly-twice' }).message).toContain(
      'SLOTLINE_KAFKA_DELIVERY',
    );
    expect(fails({ ...BASE, SLOTLINE_KAFKA_TOPIC_PROGRESS: 'ponder.pools' }).message).toContain(
      'SLOTLINE_KAFKA_TOPIC_PROGRESS must differ',
    );
  });

  it('SLOTLINE_KAFKA_COMPRESSION: none by default, gzip, and nothing else', () => {
    expect(loadConfig(BASE).kafkaCompression).toBe('none');
    expect(loadConfig({ ...BASE, SLOTLINE_KAFKA_COMPRESSION: 'gzip' }).kafkaCompression).toBe(
      'gzip',
    );
    const err = fails({ ...BASE, SLOTLINE_KAFKA_COMPRESSION: 'snappy' }).message;
    expect(err).toContain('SLOTLINE_KAFKA_COMPRESSION');
    expect(err).toContain('none or gzip');
  });

  it('parses SASL and TLS', () => {
    const c = loadConfig({
      ...BASE,
      SLOTLINE_KAFKA_BROKERS: 'k1:9093',
      SLOTLINE_KAFKA_SSL: 'true',
      SLOTLINE_KAFKA_SSL_CA_FILE: '/etc/kafka/ca.pem',
      SLOTLINE_KAFKA_SASL_MECHANISM: 'scram-sha-512',
      SLOTLINE_KAFKA_SASL_USERNAME: 'slotline',
      SLOTLINE_KAFKA_SASL_PASSWORD: 'kafka-s3cret',
      SLOTLINE_KAFKA_REPLICATION_FACTOR: '3',
    });
    expect(c.kafkaSasl).toEqual({
      mechanism: 'scram-sha-512',
      username: 'slotline',
      password: 'kafka-s3cret',
    });
    expect(c.kafkaSsl).toBe(true);
    expect(c.kafkaSslCaFile).toBe('/etc/kafka/ca.pem');
    expect(c.kafkaReplicationFactor).toBe(3);
  });

  it('a SASL mechanism needs a user name and a password, each named when missing', () => {
    const e = fails({ ...BASE, SLOTLINE_KAFKA_SASL_MECHANISM: 'plain' });
    expect(e.message).toContain('SLOTLINE_KAFKA_SASL_USERNAME');
    expect(e.message).toContain('SLOTLINE_KAFKA_SASL_PASSWORD');
    const noMechanism = fails({ ...BASE, SLOTLINE_KAFKA_SASL_USERNAME: 'u' });
    expect(noMechanism.message).toContain('SLOTLINE_KAFKA_SASL_MECHANISM');
  });

  it('rejects an unknown mechanism, a CA file without TLS, one topic for both tables, a bad topic name', () => {
    expect(fails({ ...BASE, SLOTLINE_KAFKA_SASL_MECHANISM: 'gssapi' }).message).toContain(
      'SLOTLINE_KAFKA_SASL_MECHANISM',
    );
    expect(fails({ ...BASE, SLOTLINE_KAFKA_SSL_CA_FILE: '/ca.pem' }).message).toContain(
      'SLOTLINE_KAFKA_SSL',
    );
    expect(
      fails({ ...BASE, SLOTLINE_KAFKA_TOPIC_TRADES: 'x', SLOTLINE_KAFKA_TOPIC_POOLS: 'x' }).message,
    ).toContain('must differ');
    expect(fails({ ...BASE, SLOTLINE_KAFKA_TOPIC_POOLS: 'a/b' }).message).toContain(
      'SLOTLINE_KAFKA_TOPIC_POOLS',
    );
  });

  it('never echoes the SASL password', () => {
    const e = fails({
      ...BASE,
      SLOTLINE_KAFKA_SASL_PASSWORD: 'kafka-s3cret',
      SLOTLINE_HTTP_PORT: 'abc',
    });
    expect(e.message).not.toContain('kafka-s3cret');
  });
});

describe('loadConfig: Ponder follow mode', () => {
  it('is off by default, on with SLOTLINE_PONDER_VIEWS_SCHEMA', () => {
    expect(loadConfig({ ...BASE })).toMatchObject({ ponderViewsSchema: null, ponderPollMs: 5000 });
    expect(
      loadConfig({ ...BASE, SLOTLINE_PONDER_VIEWS_SCHEMA: 'app', SLOTLINE_PONDER_POLL_MS: '250' }),
    ).toMatchObject({ ponderViewsSchema: 'app', ponderPollMs: 250 });
  });

  it('refuses a fixed schema beside it, and a views schema that is not an identifier', () => {
    const both = fails({
      ...BASE,
      SLOTLINE_PONDER_VIEWS_SCHEMA: 'app',
      SLOTLINE_SOURCE_SCHEMA: 'app_1234',
    });
    expect(both.message).toMatch(/SLOTLINE_SOURCE_SCHEMA and SLOTLINE_PONDER_VIEWS_SCHEMA/);
    expect(both.code).toBe('source_schema_conflict');
    expect(both.message).toMatch(/\n {4}Fix: unset SLOTLINE_SOURCE_SCHEMA/);
    expect(fails({ ...BASE, SLOTLINE_PONDER_VIEWS_SCHEMA: 'a-b' }).message).toMatch(
      /SLOTLINE_PONDER_VIEWS_SCHEMA "a-b": must be an SQL identifier/,
    );
  });
});

describe('loadConfig: the mistakes named with a code and a fix', () => {
  const url = (password: string) => `postgres://u:${password}@127.0.0.1:5432/ponder`;

  it.each([
    ['an unencoded #', 'p@ss#wxyzq'],
    ['an unencoded # that breaks the port', 'pa#ss'],
    ['an unencoded /', '1234/secret'],
    ['an unencoded ?', 'pa?ss'],
    ['a % without two hex digits', '50%off'],
  ])('a URL password with %s: url_unencoded_character, no piece of it echoed', (_what, pw) => {
    for (const [variable, side] of [
      ['SLOTLINE_SOURCE_URL', 'source'],
      ['SLOTLINE_SINK_URL', 'sink'],
    ] as const) {
      const e = fails({ ...BASE, [variable]: url(pw) });
      expect(e.code).toBe('url_unencoded_character');
      expect(e.problems).toHaveLength(1);
      expect(e.problems[0]).toMatchObject({
        variable,
        code: 'url_unencoded_character',
        remedy: { side, variable, fix: expect.stringMatching(/# as %23/) },
      });
      expect(e.message).toMatch(/\n {4}Fix: percent-encode/);
      for (const piece of pw.split(/[@#/?%]/).filter((p) => p.length >= 3))
        expect(e.message).not.toContain(piece);
    }
  });

  it('accepts an unencoded @ alone (the last @ ends the password) and an encoded password', () => {
    expect(loadConfig({ ...BASE, SLOTLINE_SOURCE_URL: url('p@ss') }).sourceUrl).toBe(url('p@ss'));
    const encoded = url(encodeURIComponent('p@ss#w/rd?%'));
    expect(loadConfig({ ...BASE, SLOTLINE_SOURCE_URL: encoded }).sourceUrl).toBe(encoded);
  });

  it.each(['pg_catalog', 'pg_toast', 'pg_temp_1', 'information_schema'])(
    'refuses SLOTLINE_SINK_SCHEMA=%s',
    (schema) => {
      const e = fails({ ...BASE, SLOTLINE_SINK_SCHEMA: schema });
      expect(e.code).toBe('sink_schema_reserved');
      expect(e.problems[0]?.remedy).toMatchObject({
        side: 'sink',
        variable: 'SLOTLINE_SINK_SCHEMA',
      });
    },
  );

  it('allows a schema that only looks like one', () => {
    expect(loadConfig({ ...BASE, SLOTLINE_SINK_SCHEMA: 'pgdata' }).sinkSchema).toBe('pgdata');
  });

  it('trims the admin token (a secret file ends with a newline); refuses whitespace inside', () => {
    const token = 'a'.repeat(20);
    for (const raw of [`${token}\n`, `  ${token}\r\n`, `\t${token} `])
      expect(loadConfig({ ...BASE, SLOTLINE_ADMIN_TOKEN: raw }).adminToken).toBe(token);
    const inner = fails({ ...BASE, SLOTLINE_ADMIN_TOKEN: 'abcdefgh ijklmnopq' });
    expect(inner.message).toMatch(/SLOTLINE_ADMIN_TOKEN \(value hidden\): must be printable ASCII/);
    expect(fails({ ...BASE, SLOTLINE_ADMIN_TOKEN: ' short\n' }).message).toMatch(/at least 16/);
  });

  it('a problem without a code keeps the generic config_invalid', () => {
    const e = fails({ ...BASE, SLOTLINE_HTTP_PORT: 'abc', SLOTLINE_SINK_SCHEMA: 'pg_catalog' });
    expect(e.code).toBe('config_invalid');
    expect(e.problems.map((p) => p.variable)).toEqual([
      'SLOTLINE_SINK_SCHEMA',
      'SLOTLINE_HTTP_PORT',
    ]);
  });
});

describe('SLOTLINE_HTTP_HOST', () => {
  it('binds every IPv4 interface by default, as before; takes an address or a host name', () => {
    expect(loadConfig({ ...BASE }).httpHost).toBe('0.0.0.0');
    for (const h of ['127.0.0.1', '::', '::1', 'localhost', 'slotline-0.slotline.svc'])
      expect(loadConfig({ ...BASE, SLOTLINE_HTTP_HOST: h }).httpHost).toBe(h);
    for (const h of ['not a host', 'http://x', '-x'])
      expect(fails({ ...BASE, SLOTLINE_HTTP_HOST: h }).message).toContain('SLOTLINE_HTTP_HOST');
  });

  it('is where the commands reach the connector, unless it binds every interface', () => {
    const url = (env: Record<string, string>) => adminUrl(loadConfig({ ...BASE, ...env }));
    expect(url({})).toBe('http://127.0.0.1:8080');
    expect(url({ SLOTLINE_HTTP_HOST: '::', SLOTLINE_HTTP_PORT: '9' })).toBe('http://127.0.0.1:9');
    expect(url({ SLOTLINE_HTTP_HOST: '::1' })).toBe('http://[::1]:8080');
    expect(url({ SLOTLINE_HTTP_HOST: '10.0.0.7' })).toBe('http://10.0.0.7:8080');
    expect(url({ SLOTLINE_ADMIN_URL: 'http://slotline:8080', SLOTLINE_HTTP_HOST: '::1' })).toBe(
      'http://slotline:8080',
    );
  });
});

describe('effectiveSettings', () => {
  it('says where each value comes from and hides every secret', () => {
    const rows = effectiveSettings({
      ...BASE,
      SLOTLINE_ADMIN_TOKEN: 'tok-0123456789abcdef',
      SLOTLINE_KAFKA_SASL_PASSWORD: 'kafka-s3cret',
      SLOTLINE_ADMIN_URL: 'http://admin:pw-in-url@slotline:8080/?token=t0k',
      SLOTLINE_HTTP_PORT: '',
    });
    const by = Object.fromEntries(rows.map((r) => [r.name, r]));
    expect(rows.map((r) => r.name)).toEqual(Object.keys(SETTINGS));
    expect(by.SLOTLINE_SOURCE_URL).toEqual({
      name: 'SLOTLINE_SOURCE_URL',
      value: 'postgres://u:***@source/ponder',
      from: 'environment',
    });
    expect(by.SLOTLINE_HTTP_PORT).toMatchObject({ value: '8080', from: 'default' });
    expect(by.SLOTLINE_KAFKA_BROKERS).toMatchObject({ value: null, from: 'unset' });
    expect(by.SLOTLINE_ADMIN_TOKEN?.value).toBe('***');
    expect(by.SLOTLINE_KAFKA_SASL_PASSWORD?.value).toBe('***');
    expect(JSON.stringify(rows)).not.toMatch(/s3cretpw|tok-0123|kafka-s3cret|pw-in-url|t0k/);
    // A URL that does not parse may still hold a password: it is not shown at all.
    const bad = effectiveSettings({ SLOTLINE_SINK_URL: 'postgres://u:p@ss@host:x/db' });
    expect(bad.find((r) => r.name === 'SLOTLINE_SINK_URL')?.value).not.toContain('ss@');
  });
});
