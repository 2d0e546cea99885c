import { main } from './main.js'
import { reportError } from './report-error.js'
import { DEFAULT_BITTORRENT_CONF, readBittorrentConf } from './si-bittorrent-conf.js'
import { type SystemImagerCommand, translateSystemImagerCommand } from './si-compat.js'

/**
 * Runs one of SystemImager's command names through the imageswarm CLI. si_startbttrack and
 * si_installbtimage read `/etc/systemimager/bittorrent.conf` as SystemImager's server did
 * (`SI_BITTORRENT_CONF` names another file); their flags win over it.
 */
export async function runSystemImagerCommand(
  command: SystemImagerCommand,
  argv: readonly string[],
): Promise<number> {
  let args: string[]
  try {
    const conf =
      command === 'si_startbttrack' || command === 'si_installbtimage'
        ? await readBittorrentConf(process.env.SI_BITTORRENT_CONF || DEFAULT_BITTORRENT_CONF)
        : undefined
    const translation = translateSystemImagerCommand(command, argv, conf)
    for (const note of translation.notes) process.stderr.write(`${command}: note: ${note}\n`)
    args = translation.args
  } catch (err) {
    return reportError(err)
  }
  return main(args)
}
