import { canTransition, ImageSwarmError, type InstallEvent, type NodeState } from '@imageswarm/core'

/** The install's state, moved only along `NODE_TRANSITIONS` from core. */
export class InstallState {
  #state: NodeState = 'waiting'

  constructor(private readonly emit: (event: InstallEvent) => void) {}

  get current(): NodeState {
    return this.#state
  }

  moveTo(next: NodeState): void {
    if (next === this.#state) return
    if (!canTransition(this.#state, next)) {
      throw new ImageSwarmError(
        'E_USAGE',
        `internal: illegal install transition ${this.#state} → ${next}`,
      )
    }
    const previous = this.#state
    this.#state = next
    this.emit({ type: 'state', state: next, previous })
  }
}
