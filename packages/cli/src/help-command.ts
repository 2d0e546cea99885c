import { ImageSwarmError } from '@imageswarm/core'
import type { Command } from 'commander'

/**
 * `imageswarm help key generate` as `imageswarm key generate --help`: commander's own
 * `help` subcommand goes one level deep only, and `key` has subcommands. Other arguments
 * are returned unchanged. A name that is no command is refused, not answered with the
 * program's help, so a typo is not mistaken for an answer.
 *
 * @example expandHelpCommand(program, ['help', 'key', 'generate']) // ['key', 'generate', '--help']
 */
export function expandHelpCommand(program: Command, argv: readonly string[]): string[] {
  if (argv[0] !== 'help' || argv.length < 2) return [...argv]
  const names = argv.slice(1)
  let command = program
  for (const name of names) {
    const next = command.commands.find((sub) => sub.name() === name || sub.aliases().includes(name))
    if (next === undefined) {
      const known = command.commands.map((sub) => sub.name()).filter((sub) => sub !== 'help')
      throw new ImageSwarmError(
        'E_USAGE',
        `${[program.name(), ...names.slice(0, names.indexOf(name))].join(' ')} has no command ${JSON.stringify(name)}`,
        { hint: `its commands: ${known.join(', ')}` },
      )
    }
    command = next
  }
  return [...names, '--help']
}
