import { PassThrough } from 'node:stream'
import { INSTALLER_PARAMETERS, RAMDISK_KERNEL_PARAMETERS } from '@imageswarm/installer/node'
import { describe, expect, it } from 'vitest'
import { createCliLogger, humanLine } from '../src/cli-logger.js'
import { ConsoleOutput } from '../src/console-output.js'
import { INSTALLER_KERNEL_PARAMETERS } from '../src/installer-environment.js'
import { deploymentConsoleLine, describeDeploymentEvent } from '../src/serve-console.js'

function capture(tty: boolean) {
  const stream = new PassThrough()
  let text = ''
  stream.on('data', (chunk) => (text += chunk))
  return {
    output: new ConsoleOutput(stream as unknown as NodeJS.WriteStream, tty),
    text: () => text,
  }
}

describe('the human log', () => {
  it('shows warnings and errors as one line each, info only when a level is asked for', () => {
    const quiet = capture(false)
    const logger = createCliLogger({
      name: 'install',
      level: 'info',
      levelGiven: false,
      format: 'human',
      console: quiet.output,
    })
    logger.info({ dir: '/tmp/x' }, 'archive location chosen')
    logger.warn(
      { attempt: 1, err: 'Error: connect ECONNREFUSED' },
      'image server not reachable yet; retrying',
    )
    logger.warn(
      { attempt: 2, err: 'Error: connect ECONNREFUSED' },
      'image server not reachable yet; retrying',
    )
    logger.error({ image: 'compute', hint: 'pack it again' }, 'archive changed on disk')
    expect(quiet.text()).toBe(
      [
        'warning: image server not reachable yet; retrying (connect ECONNREFUSED)',
        'error: image compute: archive changed on disk',
        '  hint: pack it again',
        '',
      ].join('\n'),
    )

    const verbose = capture(false)
    createCliLogger({
      name: 'install',
      level: 'info',
      levelGiven: true,
      format: 'human',
      console: verbose.output,
    }).info({ dir: '/tmp/x' }, 'archive location chosen')
    expect(verbose.text()).toBe('archive location chosen\n')
  })

  it('formats a record without JSON', () => {
    expect(humanLine({ level: 20, msg: 'piece 3 verified' })).toBe('debug: piece 3 verified')
    expect(humanLine({ level: 40, msg: 'slow', err: { message: 'timeout' } })).toBe(
      'warning: slow (timeout)',
    )
  })
})

describe('the console', () => {
  it('prints lines above the bar on a terminal and ends the bar full', () => {
    const { output, text } = capture(true)
    output.progress('downloading', { value: 10, total: 100, detail: 'fast' })
    output.line('piece 4 failed its hash check')
    output.progress('downloading', { value: 90, total: 100, detail: 'fast' })
    output.endProgress({ complete: true, detail: 'done' })
    const shown = text()
    expect(shown).toContain('piece 4 failed its hash check\n')
    expect(shown).toMatch(/downloading \[=+\] 100% \| done/)
    // The line is printed before the last drawing of the bar.
    expect(shown.lastIndexOf('piece 4')).toBeLessThan(shown.lastIndexOf('100%'))
  })

  it('draws no bar off a terminal', () => {
    const { output, text } = capture(false)
    output.progress('downloading', { value: 10, total: 100, detail: 'fast' })
    output.endProgress({ complete: true })
    output.line('installed')
    expect(text()).toBe('installed\n')
  })
})

describe('kernel parameters', () => {
  it('knows every name the installer and its ramdisk read', () => {
    expect([...INSTALLER_KERNEL_PARAMETERS].sort()).toEqual(
      [
        ...INSTALLER_PARAMETERS.flatMap((parameter) => parameter.kernel).filter((name) =>
          name.startsWith('imageswarm.'),
        ),
        ...RAMDISK_KERNEL_PARAMETERS,
      ].sort(),
    )
  })
})

describe('a deployment on the serve console', () => {
  const deployment = {
    id: 3,
    image: 'rocky9',
    infoHash: 'a'.repeat(40),
    state: 'running' as const,
    startedAt: 0,
    endedAt: null,
    seconds: 31,
    nodes: 2,
    installed: 1,
    failed: 1,
    lost: 0,
    installing: 0,
    serverBytes: 1200,
    archiveSize: 1000,
    copies: 1.2,
    text: '2 nodes in 74 s, server sent 1.2 copies (1 failed)',
  }
  const node = {
    peerId: '-IS0100-abcdefabcdef',
    node: 'n017',
    mac: '52:54:00:12:34:56',
    address: '10.0.0.17',
    state: 'downloading' as const,
    lost: false,
    error: null,
    started: 0,
    finished: null,
    seconds: null,
    bytesFromServer: 0,
    bytesFromPeers: 0,
  }

  it('shows the beginning and the summary; a failed node once, as the log’s warning', () => {
    const installed = { ...node, state: 'done' as const, finished: 30_400, seconds: 30.4 }
    const failed = {
      ...node,
      node: null,
      mac: null,
      state: 'failed' as const,
      seconds: 12,
      error: { code: 'E_NO_SPACE', message: 'disk full' },
    }
    expect(deploymentConsoleLine({ kind: 'began', deployment, node })).toBe(
      'rocky9: deployment 3 began (first node n017 52:54:00:12:34:56 10.0.0.17)',
    )
    expect(deploymentConsoleLine({ kind: 'node-finished', deployment, node: installed })).toBe(
      undefined,
    )
    expect(deploymentConsoleLine({ kind: 'node-finished', deployment, node: failed })).toBe(
      undefined,
    )
    expect(
      deploymentConsoleLine({ kind: 'ended', deployment: { ...deployment, state: 'finished' } }),
    ).toBe('rocky9: deployment 3 finished: 2 nodes in 74 s, server sent 1.2 copies (1 failed)')

    // The log has every node; its record carries the image, which a person's line shows once.
    expect(describeDeploymentEvent({ kind: 'node-finished', deployment, node: installed })).toBe(
      'deployment 3: node n017 52:54:00:12:34:56 10.0.0.17 installed after 30 s',
    )
    const shown = capture(false)
    const logger = createCliLogger({
      name: 'server',
      level: 'info',
      levelGiven: false,
      format: 'human',
      console: shown.output,
    })
    logger.warn(
      { image: 'rocky9', deployment: 3 },
      describeDeploymentEvent({ kind: 'node-finished', deployment, node: failed }),
    )
    expect(shown.text()).toBe(
      'warning: image rocky9: deployment 3: node 10.0.0.17 failed after 12 s (E_NO_SPACE: disk full)\n',
    )
  })
})
