import pino, { type Logger } from 'pino';

export type { Logger };

/**
 * Hides the password (and any token query parameter) of a connection URL, so
 * that a URL can be named in a log line or an error.
 */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    for (const k of [...u.searchParams.keys()]) {
      if (/pass|token|secret|key/i.test(k)) u.searchParams.set(k, '***');
    }
    return u.toString();
  } catch {
    return '(unparseable URL)';
  }
}

/** Replaces credentials embedded in free text (error messages from drivers). */
export function scrubSecrets(text: string, secrets: readonly string[] = []): string {
  let out = text.replace(/(postgres(?:ql)?:\/\/[^:/@\s]*:)[^@\s]*@/gi, '$1***@');
  for (const s of secrets) if (s.length >= 4) out = out.split(s).join('***');
  return out;
}

export interface LogOptions {
  level: string;
  /** Values never to be printed (passwords, tokens), scrubbed from messages. */
  secrets?: readonly string[];
  destination?: pino.DestinationStream;
}

/** The one root logger; parts take `log.child({ component })`. */
export function createLogger(opts: LogOptions): Logger {
  const secrets = opts.secrets ?? [];
  return pino(
    {
      name: 'slotline',
      level: opts.level,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: {
        paths: [
          'password',
          '*.password',
          'token',
          '*.token',
          'url',
          '*.url',
          'sourceUrl',
          'sinkUrl',
          '*.sourceUrl',
          '*.sinkUrl',
          'adminToken',
          '*.adminToken',
          'headers.authorization',
          'req.headers.authorization',
          'connectionString',
          '*.connectionString',
        ],
        censor: '***',
      },
      formatters: { level: (label) => ({ level: label }) },
      hooks: {
        logMethod(args, method) {
          // log.error(err) alone: pino would copy err.message into msg unscrubbed.
          const first: unknown = args[0];
          if (args.length === 1 && first instanceof Error) {
            args = [{ err: first }, first.message] as unknown as typeof args;
          }
          const scrubbed = args.map((a) => (typeof a === 'string' ? scrubSecrets(a, secrets) : a));
          method.apply(this, scrubbed as Parameters<typeof method>);
        },
      },
      serializers: {
        err: (e: unknown) => {
          const s = pino.stdSerializers.err(e as Error);
          if (s && typeof s.message === 'string') s.message = scrubSecrets(s.message, secrets);
          if (s && typeof s.stack === 'string') s.stack = scrubSecrets(s.stack, secrets);
          return s;
        },
      },
    },
    opts.destination,
  );
}
