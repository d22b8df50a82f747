/** Why the replication socket is not read. */
export type PauseReason = 'operator' | 'backpressure' | 'stopping';

/** What flow control drives: the socket of one replication stream. */
export interface Pausable {
  pause(): void;
  resume(): void;
}

/**
 * The one owner of "is the replication socket read?". Each reason to stop
 * reading is held and released on its own, and the socket is read only when
 * none is held: an operator's resume does not override backpressure, and a
 * drained queue does not override an operator's pause. It outlives streams:
 * a pause given before a reconnect still holds after it.
 */
export class FlowControl {
  private readonly held = new Set<PauseReason>();
  private target: Pausable | null = null;
  private readonly listeners: ((paused: boolean) => void)[] = [];

  /** The stream now being read (null between streams). */
  attach(target: Pausable | null): void {
    this.target = target;
    this.apply();
  }

  hold(reason: PauseReason): void {
    if (this.held.has(reason)) return;
    this.held.add(reason);
    this.apply();
  }

  release(reason: PauseReason): void {
    if (!this.held.delete(reason)) return;
    this.apply();
  }

  has(reason: PauseReason): boolean {
    return this.held.has(reason);
  }

  get paused(): boolean {
    return this.held.size > 0;
  }

  /** The reasons held now, for /status. */
  reasons(): PauseReason[] {
    return [...this.held].sort();
  }

  onChange(listener: (paused: boolean) => void): void {
    this.listeners.push(listener);
  }

  private apply(): void {
    const paused = this.held.size > 0;
    if (paused) this.target?.pause();
    else this.target?.resume();
    for (const l of this.listeners) l(paused);
  }
}
