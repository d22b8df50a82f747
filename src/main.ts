import { Connector, type RunHandles } from './connector/connector.js';
import type { Config } from './config.js';

export type { RunHandles } from './connector/connector.js';
export { type ConnectorState, newConnectorState } from './connector/status.js';

/**
 * `slotline run`. The lifecycle lives in src/connector/: the Connector starts
 * its parts in order and stops them in reverse; a Supervisor runs one
 * replication Session at a time and decides from how it ended; the Pipeline
 * owns what is in flight and what may be acknowledged; FlowControl owns why
 * the socket is not read. Resolves after a clean shutdown; rejects with a
 * non-retriable SlotlineError.
 */
export async function runConnector(cfg: Config, h: RunHandles): Promise<void> {
  await new Connector(cfg, h).run();
}
