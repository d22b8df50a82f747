/**
 * A TCP proxy between one connector and PostgreSQL that a test can freeze: a
 * network partition as both ends see it. Frozen, it forwards nothing in either
 * direction and closes nothing (a connection either end closes meanwhile stays
 * open on the other side), and new connections are accepted but get no answer
 * — as when packets are dropped, not refused. The database server's own
 * timeouts are what it tests: the peer it sees (this proxy) keeps its sockets,
 * so only the sessions' idle_session_timeout and wal_sender_timeout can end them.
 */
import net from 'node:net';

export interface FreezableProxy extends AsyncDisposable {
  /** The port to connect to instead of the server's. */
  readonly port: number;
  /** Stops forwarding, keeping every socket open. */
  freeze(): void;
  /** Forwards again, and passes on the closes that happened while frozen. */
  thaw(): void;
  readonly frozen: boolean;
}

interface Pair {
  client: net.Socket;
  server: net.Socket | null;
  /** A side that closed while frozen: passed on at the thaw. */
  closed: Set<'client' | 'server'>;
}

export async function startProxy(target: { host: string; port: number }): Promise<FreezableProxy> {
  let frozen = false;
  const pairs = new Set<Pair>();

  const connectUpstream = (p: Pair) => {
    const server = net.connect(target.port, target.host);
    p.server = server;
    server.on('error', () => p.client.destroy());
    server.on('data', (chunk: Buffer) => p.client.write(chunk));
    server.on('close', () => closed(p, 'server'));
    p.client.on('data', (chunk: Buffer) => server.write(chunk));
    p.client.resume();
  };
  const closed = (p: Pair, side: 'client' | 'server') => {
    if (frozen) {
      p.closed.add(side);
      return;
    }
    p.client.destroy();
    p.server?.destroy();
    pairs.delete(p);
  };

  const listener = net.createServer((client) => {
    const p: Pair = { client, server: null, closed: new Set() };
    pairs.add(p);
    client.pause();
    client.on('error', () => p.server?.destroy());
    client.on('close', () => closed(p, 'client'));
    if (!frozen) connectUpstream(p);
  });
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  const port = (listener.address() as net.AddressInfo).port;

  return {
    port,
    get frozen() {
      return frozen;
    },
    freeze() {
      frozen = true;
      // Unread bytes stay in the kernel's buffers; TCP flow control does the rest.
      for (const p of pairs) {
        p.client.pause();
        p.server?.pause();
      }
    },
    thaw() {
      frozen = false;
      for (const p of [...pairs]) {
        if (p.closed.size > 0) {
          closed(p, 'client');
          continue;
        }
        if (p.server === null) connectUpstream(p);
        p.client.resume();
        p.server?.resume();
      }
    },
    async [Symbol.asyncDispose]() {
      frozen = false;
      for (const p of pairs) {
        p.client.destroy();
        p.server?.destroy();
      }
      pairs.clear();
      await new Promise<void>((resolve) => listener.close(() => resolve()));
    },
  };
}
