import { MultiBar, type SingleBar } from 'cli-progress'

/** The values a progress bar shows beside its percentage. */
export interface ProgressLine {
  /** Bytes (or entries) done and in all. */
  value: number
  total: number
  /** Short text after the bar: rates, peers, time left. */
  detail: string
}

/**
 * What a person sees on stderr: short lines, and on a terminal one progress bar that
 * those lines print above instead of overwriting. Everything the CLI shows a person (its
 * own lines, warnings from the log, the install's progress) goes through one of these,
 * so none of them tears another.
 */
export class ConsoleOutput {
  readonly tty: boolean
  readonly #stream: NodeJS.WritableStream
  #bars: MultiBar | undefined
  #bar: SingleBar | undefined
  #total = 0

  constructor(
    stream: NodeJS.WritableStream & { isTTY?: boolean } = process.stderr,
    tty = stream.isTTY === true,
  ) {
    this.#stream = stream
    this.tty = tty
  }

  /** One line of text; on a terminal above the bar, which is drawn again below it. */
  line(text: string): void {
    if (this.#bars) {
      this.#bars.log(`${text}\n`)
      // Draw now: cli-progress would print the line at its next redraw, or never if the
      // bar is stopped first.
      this.#bars.update()
      return
    }
    this.#stream.write(`${text}\n`)
  }

  /** Moves the bar (terminal only; off one, callers print periodic lines instead). */
  progress(label: string, progress: ProgressLine): void {
    if (!this.tty) return
    if (!this.#bars || !this.#bar) {
      this.#bars = new MultiBar({
        stream: this.#stream as NodeJS.WriteStream,
        format: `${label} [{bar}] {percentage}% | {detail}`,
        hideCursor: true,
        clearOnComplete: false,
        stopOnComplete: false,
        barsize: 30,
        // The CLI handles SIGINT itself (runInterruptible); the bar must not exit.
        gracefulExit: false,
      })
      this.#bar = this.#bars.create(progress.total, 0, { detail: progress.detail })
    }
    this.#total = progress.total
    this.#bar.setTotal(progress.total)
    this.#bar.update(Math.min(progress.value, progress.total), { detail: progress.detail })
  }

  /**
   * Ends the bar, drawn a last time: full when the work completed (the last progress
   * report of a download can come before its final piece), as it stood otherwise.
   */
  endProgress(outcome: { complete: boolean; detail?: string }): void {
    if (!this.#bars || !this.#bar) return
    if (outcome.complete) {
      this.#bar.update(this.#total, outcome.detail === undefined ? {} : { detail: outcome.detail })
    }
    this.#bars.update()
    this.#bars.stop()
    this.#bars = undefined
    this.#bar = undefined
  }
}
