import { describe, expect, it } from 'vitest'
import { deploymentTable } from '../src/commands/nodes.js'
import { formatBytes, textTable } from '../src/text-table.js'

describe('the status commands’ tables', () => {
  it('align text left and numbers right, each column as wide as its widest cell', () => {
    const lines = textTable(
      [{ title: 'NODE' }, { title: 'SECONDS', numeric: true }, { title: 'ERROR' }],
      [
        ['node1', '74', ''],
        ['node10', '5.5', 'E_NO_SPACE: disk full'],
      ],
    )
    expect(lines).toEqual([
      'NODE    SECONDS  ERROR',
      'node1        74',
      'node10      5.5  E_NO_SPACE: disk full',
    ])
  })

  it('show a deployment’s rows sorted by host name, lost nodes marked', () => {
    const row = {
      peerId: '2d4953303143302d303030303030303030303031',
      mac: null,
      address: '10.0.0.11',
      state: 'downloading' as const,
      lost: false,
      error: null,
      started: 0,
      finished: null,
      seconds: null,
      bytesFromServer: 0,
      bytesFromPeers: 0,
    }
    const lines = deploymentTable([
      { ...row, node: 'node10', state: 'done', seconds: 70, bytesFromPeers: 3 * 1024 ** 2 },
      { ...row, node: 'node2', lost: true },
    ])
    expect(lines[1]).toMatch(/^node2 +- +10\.0\.0\.11 +downloading \(lost\) +- +0 B +0 B$/)
    expect(lines[2]).toMatch(/^node10 +- +10\.0\.0\.11 +done +70 +0 B +3\.0 MiB$/)
    expect(formatBytes(1.2 * 1024 ** 3)).toBe('1.2 GiB')
  })
})
