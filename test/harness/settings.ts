/** Connector settings that make a test take seconds, not minutes. */
export const FAST: Record<string, string> = {
  SLOTLINE_STATUS_INTERVAL_MS: '500',
  SLOTLINE_IDLE_ACK_INTERVAL_MS: '100',
  SLOTLINE_HEARTBEAT_INTERVAL_MS: '0',
  SLOTLINE_RETRY_INITIAL_MS: '100',
  SLOTLINE_RETRY_MAX_MS: '1000',
};
