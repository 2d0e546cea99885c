import { readFile } from 'node:fs/promises'
import { errnoOf, ImageSwarmError } from '@imageswarm/core'
import type { Command, Option } from 'commander'

/** One `key = value` line of a configuration file. */
export interface ConfigEntry {
  key: string
  value: string
  /** 1-based line number, for error messages. */
  line: number
}

/**
 * Reads the lines of a configuration file such as /etc/imageswarm/server.conf: `key = value`
 * per line, `#` starting a comment line, blank lines ignored. A value may be quoted ("…" or
 * '…') to keep leading or trailing spaces or a `#`; otherwise it runs to the end of the line.
 * A line that is not `key = value` is refused with the file and line.
 *
 * @example parseConfigText('image = compute,login\nupload-limit = 100M\n', 'server.conf')
 * // [{ key: 'image', value: 'compute,login', line: 1 }, { key: 'upload-limit', value: '100M', line: 2 }]
 */
export function parseConfigText(text: string, path: string): ConfigEntry[] {
  const entries: ConfigEntry[] = []
  const lines = text.split(/\r?\n/)
  for (const [index, raw] of lines.entries()) {
    const line = index + 1
    const trimmed = raw.trim()
    if (trimmed === '' || trimmed.startsWith('#')) continue
    const match = /^([A-Za-z0-9][A-Za-z0-9-]*)\s*=\s*(.*)$/.exec(trimmed)
    if (match === null) {
      throw configError(path, line, `expected "key = value", not ${JSON.stringify(trimmed)}`, {
        hint: 'write one setting a line, named as the flag without its dashes: upload-limit = 100M',
      })
    }
    entries.push({ key: match[1] as string, value: unquote(match[2] as string, path, line), line })
  }
  return entries
}

function unquote(value: string, path: string, line: number): string {
  const first = value[0]
  if (first !== '"' && first !== "'") return value
  if (value.length < 2 || value[value.length - 1] !== first) {
    throw configError(path, line, `the value ${value} opens a quote it does not close`)
  }
  return value.slice(1, -1)
}

/** Values a boolean setting takes, as systemd and most configuration files spell them. */
const BOOLEANS: Record<string, boolean> = {
  true: true,
  yes: true,
  on: true,
  '1': true,
  false: false,
  no: false,
  off: false,
  '0': false,
}

/** The option a configuration key names: the flag's long name without `--` (`--no-X` as `X`). */
function keyOf(option: Option): string | undefined {
  const long = option.long?.replace(/^--/, '')
  if (long === undefined) return undefined
  return option.negate ? long.replace(/^no-/, '') : long
}

/**
 * The options a configuration file may set for `command`: its own and its parents'
 * (`log-level`), by key; never `config` itself, `help` or `version`.
 */
function settableOptions(command: Command): Map<string, { option: Option; owner: Command }> {
  const options = new Map<string, { option: Option; owner: Command }>()
  for (let owner: Command | null = command; owner !== null; owner = owner.parent) {
    for (const option of owner.options) {
      const key = keyOf(option)
      if (key === undefined || ['config', 'help', 'version'].includes(key)) continue
      if (!options.has(key)) options.set(key, { option, owner })
    }
  }
  return options
}

/**
 * Applies a configuration file's settings to `command`'s parsed options, through the same
 * parsers the flags use. What the command line or the environment set wins over the file,
 * and the file over the defaults. An unknown key, a repeated one (except list settings
 * such as `image`) or a bad value is refused with the file, line and key.
 */
export function applyConfigEntries(command: Command, entries: ConfigEntry[], path: string): void {
  const options = settableOptions(command)
  const seen = new Map<string, number>()
  const values = new Map<string, { owner: Command; name: string; value: unknown }>()
  for (const { key, value, line } of entries) {
    const found = options.get(key)
    if (found === undefined) {
      const negated = key.startsWith('no-') ? options.get(key.slice(3)) : undefined
      throw configError(path, line, `unknown key "${key}"`, {
        hint:
          negated !== undefined
            ? `write ${key.slice(3)} = no`
            : `the keys are the long flags of imageswarm ${command.name()} without their dashes (imageswarm help ${command.name()})`,
      })
    }
    const { option, owner } = found
    const name = option.attributeName()
    const previous = values.get(key)
    const list = option.variadic
    if (previous !== undefined && !list) {
      throw configError(path, line, `"${key}" is set again (first on line ${seen.get(key)})`)
    }
    seen.set(key, seen.get(key) ?? line)
    let parsed: unknown
    try {
      parsed = parseValue(option, value, previous?.value)
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err)
      throw configError(path, line, `${key}: ${message}`, {
        hint:
          option.isBoolean() || option.negate
            ? `for example ${key} = no`
            : `${key} takes what ${option.long} takes (imageswarm help ${command.name()})`,
        cause: err,
      })
    }
    values.set(key, { owner, name, value: parsed })
  }
  for (const { owner, name, value } of values.values()) {
    const source = owner.getOptionValueSource(name)
    // Commander's own order: command line, then environment, then configuration, then defaults.
    if (source === 'cli' || source === 'env') continue
    owner.setOptionValueWithSource(name, value, 'config')
  }
}

function parseValue(option: Option, value: string, previous: unknown): unknown {
  // Commander counts a `--no-X` flag as no boolean; here it is one: `X = no`.
  if (option.isBoolean() || option.negate) {
    const flag = BOOLEANS[value.toLowerCase()]
    if (flag === undefined) {
      throw new Error(`takes yes or no (true/false, on/off, 1/0), not ${JSON.stringify(value)}`)
    }
    // `tracker = no` is `--no-tracker`: the value is the setting's, whatever the flag's name.
    return flag
  }
  if (value === '') throw new Error('has no value')
  if (option.argChoices !== undefined && !option.argChoices.includes(value)) {
    throw new Error(`takes ${option.argChoices.join(', ')}, not ${JSON.stringify(value)}`)
  }
  const parse = (option as Option & { parseArg?: (value: string, previous: unknown) => unknown })
    .parseArg
  if (parse !== undefined) return parse(value, previous)
  if (option.variadic) return [...((previous as string[] | undefined) ?? []), value]
  return value
}

function configError(
  path: string,
  line: number,
  message: string,
  details: { hint?: string; cause?: unknown } = {},
): ImageSwarmError {
  return new ImageSwarmError('E_CONFIG_INVALID', `${path}, line ${line}: ${message}`, {
    operation: 'read configuration',
    path,
    ...details,
  })
}

/** Reads and parses a configuration file; a missing or unreadable one is refused by name. */
export async function readConfigFile(path: string): Promise<ConfigEntry[]> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    throw new ImageSwarmError(
      'E_CONFIG_INVALID',
      `cannot read the configuration file ${path} (${errnoOf(err) ?? String(err)})`,
      {
        operation: 'read configuration',
        path,
        hint: 'give an existing file with --config, or leave --config out',
        cause: err,
      },
    )
  }
  return parseConfigText(text, path)
}

/**
 * Gives `command` a `--config FILE` option whose settings are read before the command
 * runs (see `applyConfigEntries`). The `required` options (`--image`) may then come from
 * the file: commander checks mandatory options before any hook runs, so they are checked
 * here instead, after the file is read.
 */
export function addConfigFileOption(command: Command, required: readonly string[] = []): Command {
  const mandatory = command.options.filter(
    (option) => option.mandatory && required.includes(keyOf(option) ?? ''),
  )
  for (const option of mandatory) option.mandatory = false
  return command
    .option(
      '--config <file>',
      'read settings from FILE: one "key = value" a line, the keys named as these flags (image = a,b); flags and environment win',
    )
    .hook('preAction', async (_program, actionCommand) => {
      const path = actionCommand.getOptionValue('config') as string | undefined
      if (path !== undefined) {
        applyConfigEntries(actionCommand, await readConfigFile(path), path)
      }
      for (const option of mandatory) {
        if (actionCommand.getOptionValue(option.attributeName()) === undefined) {
          throw new ImageSwarmError('E_USAGE', `${option.long} is required`, {
            path: option.long,
            hint: `give ${option.flags}, or ${keyOf(option)} = … in the --config file`,
          })
        }
      }
    })
}
