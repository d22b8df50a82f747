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
    });
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
