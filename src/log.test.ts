import { describe, expect, it } from 'vitest';
import { createLogger, redactUrl, scrubSecrets } from './log.js';

const PW = 's3cretpw';
const URL_WITH_PW = `postgres://slotline:${PW}@db.internal:5432/ponder`;

function capture(secrets: string[] = []) {
  const lines: string[] = [];
  const log = createLogger({
    level: 'info',
    secrets,
    destination: { write: (s: string) => void lines.push(s) },
  });
  return { log, lines, text: () => lines.join('') };
}

describe('redactUrl', () => {
  it('hides the password and keeps the rest', () => {
    const r = redactUrl(URL_WITH_PW);
    expect(r).not.toContain(PW);
    expect(r).toContain('slotline:***@db.internal:5432/ponder');
  });

  it('hides secret-looking query parameters', () => {
    const r = redactUrl(`postgres://u@h/db?sslmode=require&password=${PW}&api_token=t0kval`);
    expect(r).not.toContain(PW);
    expect(r).not.toContain('t0kval');
    expect(r).toContain('sslmode=require');
  });

  it('leaves a URL without a password alone and never echoes garbage', () => {
    expect(redactUrl('postgres://u@h/db')).toBe('postgres://u@h/db');
    expect(redactUrl(`not a url ${PW}`)).not.toContain(PW);
  });
});

describe('scrubSecrets', () => {
  it('replaces a URL password inside free text', () => {
    const s = scrubSecrets(`connect to ${URL_WITH_PW} failed; retry postgresql://a:${PW}@x/y`);
    expect(s).not.toContain(PW);
    expect(s).toContain('postgres://slotline:***@db.internal');
    expect(s).toContain('postgresql://a:***@x/y');
  });

  it('replaces listed secrets everywhere', () => {
    const s = scrubSecrets(`token=admintok3n and admintok3n again`, ['admintok3n']);
    expect(s).toBe('token=*** and *** again');
  });

  it('leaves text without secrets unchanged', () => {
    expect(scrubSecrets('nothing to see at postgres://u@h/db', ['abc'])).toBe(
      'nothing to see at postgres://u@h/db',
    );
  });
});

describe('createLogger', () => {
  it('writes JSON lines with the message', () => {
    const { log, lines } = capture();
    log.info({ slot: 'slotline' }, 'streaming');
    const rec = JSON.parse(lines[0]!) as Record<string, unknown>;
    expect(rec).toMatchObject({
      level: 'info',
      msg: 'streaming',
      slot: 'slotline',
      name: 'slotline',
    });
  });

  it('never prints a password in a message string', () => {
    const { log, text } = capture([PW]);
    log.info(`connecting to ${URL_WITH_PW}`);
    log.warn({ x: 1 }, 'retrying %s', URL_WITH_PW);
    log.error(`the password is ${PW}`);
    expect(text()).not.toContain(PW);
    expect(text()).toContain('connecting to');
  });

  it('never prints a password in an err message or stack', () => {
    const { log, text } = capture([PW]);
    const err = new Error(`could not connect to ${URL_WITH_PW}`, {
      cause: new Error(`inner ${PW}`),
    });
    log.error({ err }, 'source failed');
    expect(text()).toContain('could not connect');
    expect(text()).not.toContain(PW);
  });

  it('never prints sourceUrl fields', () => {
    const { log, text } = capture();
    log.info({ sourceUrl: URL_WITH_PW }, 'config');
    log.info({ config: { sourceUrl: URL_WITH_PW, sinkUrl: URL_WITH_PW } }, 'config');
    expect(text()).not.toContain(PW);
    expect(lines(text())).toHaveLength(2);
  });

  // BUG (latent): log.error(err) with the Error as the only argument makes pino
  // use err.message as `msg`, which bypasses both the logMethod scrub (not a
  // string argument) and the err serializer.
  it('never prints a password when an Error is logged on its own', () => {
    const { log, text } = capture([PW]);
    log.error(new Error(`could not connect to ${URL_WITH_PW}`));
    expect(text()).not.toContain(PW);
  });
});

function lines(text: string): string[] {
  return text.split('\n').filter((l) => l.length > 0);
}
