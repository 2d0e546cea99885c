import type { Command } from 'commander'
import { SYSTEMIMAGER_COMMANDS } from './si-compat.js'

/** What a manual page needs besides the program: the header's version and date. */
export interface ManPageInfo {
  /** `0.1.0`: shown in the header as `imageswarm 0.1.0`. */
  version: string
  /**
   * The header's date, `YYYY-MM-DD`, from SOURCE_DATE_EPOCH when packaging: never the
   * clock, so the same tree gives the same pages.
   */
  date?: string
}

/** Extra sections for some pages, by command path. */
const FILES: Readonly<Record<string, string>> = {
  serve: [
    '.TP',
    '.I /etc/imageswarm/server.conf',
    'The settings the systemd unit imageswarm.service passes with \\fB\\-\\-config\\fR:',
    'one \\fIkey\\fR = \\fIvalue\\fR a line, the keys named as the long flags above without',
    'their dashes (\\fBimage = compute,login\\fR, \\fBupload\\-limit = 100M\\fR, \\fBtracker = no\\fR',
    'for \\fB\\-\\-no\\-tracker\\fR); \\fB#\\fR starts a comment line. Flags and the environment',
    'win over the file.',
    '.TP',
    '.I /run/imageswarm/serve.pid',
    'The running server\u2019s PID, held open while it runs; \\fBimageswarm stop\\fR reads it.',
    '.TP',
    '.I /var/lib/systemimager/images/NAME',
    'Image roots; archives in \\fI/var/lib/systemimager/tarballs\\fR, torrents and manifests in',
    '\\fI/var/lib/systemimager/torrents\\fR.',
  ].join('\n'),
}

/**
 * Every manual page of the program, by file name (`imageswarm.1`, `imageswarm-serve.1`,
 * `imageswarm-key-generate.1`, and `si_startbttrack.1` … as `.so` links to the page of
 * the command they run), written from the same commander program as `--help`, so the two
 * never disagree. Sorted by name; the same program and info give the same bytes.
 *
 * @example renderManPages(buildProgram(), { version: '0.1.0' }).get('imageswarm-serve.1')
 */
export function renderManPages(program: Command, info: ManPageInfo): Map<string, string> {
  const pages = new Map<string, string>()
  const visit = (command: Command, path: string[]) => {
    pages.set(`${pageName(path)}.1`, renderPage(command, path, info))
    for (const sub of visibleCommands(command)) visit(sub, [...path, sub.name()])
  }
  visit(program, [program.name()])
  for (const [alias, command] of Object.entries(SYSTEMIMAGER_COMMANDS)) {
    pages.set(`${alias}.1`, `.so man1/${pageName([program.name(), command])}.1\n`)
  }
  pages.set('imageswarm-installer.1', renderInstallerPage(info))
  return new Map([...pages].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
}

function pageName(path: readonly string[]): string {
  return path.join('-')
}

function visibleCommands(command: Command): Command[] {
  return command
    .createHelp()
    .visibleCommands(command)
    .filter((sub) => sub.name() !== 'help')
}

function renderPage(command: Command, path: string[], info: ManPageInfo): string {
  const help = command.createHelp()
  const name = pageName(path)
  const lines = [
    header(name, info),
    '.SH NAME',
    `${roffText(name)} \\- ${roffText(summary(command))}`,
  ]
  lines.push('.SH SYNOPSIS', `.B ${roffText(path.join(' '))}`)
  // commandUsage is `imageswarm key generate [options]`: the path, then the usage proper.
  const usage = help.commandUsage(command).slice(path.join(' ').length).trim()
  if (usage !== '') lines.push(roffText(usage))
  lines.push('.SH DESCRIPTION', roffText(sentence(command.description())))
  const aliases = Object.entries(SYSTEMIMAGER_COMMANDS)
    .filter(([, target]) => path.length === 2 && target === path[1])
    .map(([alias]) => alias)
  for (const alias of aliases) {
    lines.push(
      '.PP',
      `\\fB${roffText(alias)}\\fR runs this command with SystemImager\u2019s flags translated.`,
    )
  }
  if (path.length === 2 && path[1] === 'install') {
    lines.push(
      '.PP',
      '\\fBimageswarm\\-install\\fR is this command alone, with the same options: the install',
      'client without the server, as installer ramdisks carry it.',
    )
  }
  const args = help.visibleArguments(command)
  if (args.length > 0) {
    lines.push('.SH ARGUMENTS')
    for (const arg of args) {
      lines.push(
        '.TP',
        `.I ${roffText(help.argumentTerm(arg))}`,
        roffText(help.argumentDescription(arg)),
      )
    }
  }
  const options = help.visibleOptions(command)
  if (options.length > 0) {
    lines.push('.SH OPTIONS')
    for (const option of options) {
      lines.push(
        '.TP',
        `.B ${roffText(help.optionTerm(option))}`,
        roffText(help.optionDescription(option)),
      )
    }
  }
  const globals = command.parent === null ? [] : help.visibleGlobalOptions(command)
  if (globals.length > 0) {
    lines.push('.SH GLOBAL OPTIONS')
    for (const option of globals) {
      lines.push(
        '.TP',
        `.B ${roffText(help.optionTerm(option))}`,
        roffText(help.optionDescription(option)),
      )
    }
  }
  const subs = visibleCommands(command)
  if (subs.length > 0) {
    lines.push('.SH COMMANDS')
    for (const sub of subs) {
      lines.push(
        '.TP',
        `.B ${roffText(help.subcommandTerm(sub))}`,
        `${roffText(summary(sub))}; see \\fB${roffText(pageName([...path, sub.name()]))}\\fR(1).`,
      )
    }
  }
  const files = FILES[path.slice(1).join(' ')]
  if (files !== undefined) lines.push('.SH FILES', files)
  lines.push('.SH EXIT STATUS', EXIT_STATUS)
  lines.push('.SH SEE ALSO', seeAlso(path, subs))
  return `${lines.join('\n')}\n`
}

const EXIT_STATUS = [
  '0 on success; 2 for bad parameters (a usage error); 70 for an internal error, to be',
  'reported; each other kind of failure has its own code, listed in the README under',
  '\\(lqExit codes\\(rq. Errors are printed with a code (\\fBE_USAGE\\fR) and a hint.',
].join('\n')

function seeAlso(path: string[], subs: Command[]): string {
  const names = new Set<string>()
  if (path.length > 1) names.add(pageName(path.slice(0, -1)))
  for (const sub of subs) names.add(pageName([...path, sub.name()]))
  if (path.length === 1) names.add('imageswarm-installer')
  return [...names].map((name) => `\\fB${roffText(name)}\\fR(1)`).join(', ')
}

function renderInstallerPage(info: ManPageInfo): string {
  return `${[
    header('imageswarm-installer', info),
    '.SH NAME',
    'imageswarm\\-installer \\- install a bare node from the installer ramdisk',
    '.SH SYNOPSIS',
    '.B imageswarm\\-installer',
    '.SH DESCRIPTION',
    'What the installer ramdisk\u2019s /init runs on a network\\-booted node: disks, the image',
    'over the swarm, bootloader, overrides and post\\-install scripts. It takes its settings',
    'from the kernel command line (\\fBimageswarm.server=\\fR\\fIURL\\fR[,\\fIURL\\fR...]',
    '\\fBimageswarm.image=\\fR\\fINAME\\fR) and the environment, never from arguments;',
    'see docs/installer\\-ramdisk.md. \\fBimageswarm initrd\\fR builds the ramdisk.',
    '.SH OPTIONS',
    '.TP',
    '.B \\-V, \\-\\-version',
    'print the version',
    '.TP',
    '.B \\-h, \\-\\-help',
    'print a short description',
    '.SH SEE ALSO',
    '\\fBimageswarm\\-initrd\\fR(1), \\fBimageswarm\\-install\\fR(1)',
  ].join('\n')}\n`
}

/** The title line; a page's name is letters, hyphens and underscores, as man(7) shows them. */
function header(name: string, info: ManPageInfo): string {
  return `.TH ${name.toUpperCase()} 1 "${info.date ?? ''}" "imageswarm ${roffText(info.version)}" "imageswarm manual"`
}

/** The first clause of a description, for NAME and the command lists. */
function summary(command: Command): string {
  return command.summary() || command.description().split(/\.\s/)[0] || command.name()
}

function sentence(text: string): string {
  return text === ''
    ? ''
    : `${text[0]?.toUpperCase()}${text.slice(1)}${/[.!?)]$/.test(text) ? '' : '.'}`
}

/** Text as roff reads it literally: backslashes, hyphens and a leading dot or quote escaped. */
export function roffText(text: string): string {
  return text
    .replace(/\\/g, '\\e')
    .replace(/-/g, '\\-')
    .split('\n')
    .map((line) => line.replace(/^([.'])/, '\\&$1'))
    .join('\n')
}
