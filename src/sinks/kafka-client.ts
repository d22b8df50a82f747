import { createRequire } from 'node:module';
import {
  encodeProduceRequest,
  groupMessagesPerPartition,
  type ProduceArgs,
} from './kafka-produce.js';

type KafkaJs = typeof import('kafkajs');

/**
 * The kafkajs versions whose internals kafka-produce.ts was checked against
 * (the modules replaced, and what they are called with). Another version
 * runs kafkajs' own code, and says so in the log; kafka-produce.test.ts
 * fails on it, so an upgrade is checked before it ships.
 */
export const VERIFIED_KAFKAJS = ['2.2.4'];

const PRODUCE_REQUEST = 'kafkajs/src/protocol/requests/produce/v3/request.js';
const GROUP_MESSAGES = 'kafkajs/src/producer/groupMessagesPerPartition.js';
const SEND_MESSAGES = 'kafkajs/src/producer/sendMessages.js';

export interface KafkaFastPaths {
  kafkajs: string;
  /** Produce requests encoded by kafka-produce.ts (those it covers). */
  produceEncoding: boolean;
  /** Messages grouped per partition in linear time. */
  grouping: boolean;
}

/** Requests encoded by each encoder in this process, for tests and profiles. */
export const produceEncodings = { slotline: 0, kafkajs: 0 };

interface ProduceRequest {
  encode: () => Promise<unknown>;
}
type RequestModule = ((args: ProduceArgs) => ProduceRequest) & { stock?: unknown };

let installed: KafkaFastPaths | null = null;

/**
 * kafkajs, with its produce request encoder and per-partition grouping
 * replaced by kafka-produce.ts (same bytes, same groups) when its version is
 * a verified one. Every part of the connector loads kafkajs through here: the
 * grouping is bound when kafkajs' producer module loads, so it must be
 * replaced first.
 */
export async function loadKafkajs(): Promise<{ kafkajs: KafkaJs; fastPaths: KafkaFastPaths }> {
  const fastPaths = installFastPaths();
  return { kafkajs: await import('kafkajs'), fastPaths };
}

/** Replaces the two kafkajs modules (once per process); says what is in use. */
export function installFastPaths(): KafkaFastPaths {
  if (installed) return installed;
  const require = createRequire(import.meta.url);
  const version = (require('kafkajs/package.json') as { version: string }).version;
  if (!VERIFIED_KAFKAJS.includes(version)) {
    return (installed = { kafkajs: version, produceEncoding: false, grouping: false });
  }

  // Loaded lazily by kafkajs (at a broker's first produce), so replacing its exports now is enough.
  const requestPath = require.resolve(PRODUCE_REQUEST);
  const stock = require(requestPath) as RequestModule;
  const encoding = require.cache[requestPath];
  if (encoding && stock.stock === undefined) {
    const fast: RequestModule = (args) => {
      const request = stock(args);
      const own = request.encode;
      request.encode = async () => {
        const body = encodeProduceRequest(args);
        if (body === null) {
          produceEncodings.kafkajs++;
          return own();
        }
        produceEncodings.slotline++;
        // What kafkajs' request framing reads of an Encoder.
        return { buf: body, buffer: body, size: () => body.length };
      };
      return request;
    };
    fast.stock = stock;
    encoding.exports = fast;
  }

  // Bound by sendMessages.js when it loads: replaceable only before (or replaced already,
  // by another instance of this module in the same process).
  const groupPath = require.resolve(GROUP_MESSAGES);
  const loaded = require.cache[groupPath]?.exports as { stock?: unknown } | undefined;
  let grouping = loaded?.stock !== undefined;
  if (!grouping && require.cache[require.resolve(SEND_MESSAGES)] === undefined) {
    const stockGroup: unknown = require(groupPath);
    const group = require.cache[groupPath];
    if (group) {
      // The stock one stays reachable, as the tests' reference.
      group.exports = Object.assign(
        (args: Parameters<typeof groupMessagesPerPartition>[0]) => groupMessagesPerPartition(args),
        { stock: stockGroup },
      );
      grouping = true;
    }
  }
  return (installed = { kafkajs: version, produceEncoding: encoding !== undefined, grouping });
}
