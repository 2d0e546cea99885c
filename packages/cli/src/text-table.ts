/** A column of a text table: its heading, and whether it is a number (aligned right). */
export interface TextColumn {
  title: string
  numeric?: boolean
}

/**
 * Lines of a table for a terminal: every column as wide as its widest cell, two spaces
 * between, numbers aligned right, the last column not padded (it may be long).
 *
 * @example
 *   textTable([{ title: 'IMAGE' }, { title: 'NODES', numeric: true }], [['compute', '16']])
 *   // ['IMAGE    NODES', 'compute     16']
 */
export function textTable(columns: readonly TextColumn[], rows: readonly string[][]): string[] {
  const widths = columns.map((column, i) =>
    Math.max(column.title.length, ...rows.map((row) => (row[i] ?? '').length)),
  )
  const line = (cells: readonly string[]) =>
    columns
      .map((column, i) => {
        const cell = cells[i] ?? ''
        if (i === columns.length - 1) return column.numeric ? cell.padStart(widths[i]!) : cell
        return column.numeric ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!)
      })
      .join('  ')
      .trimEnd()
  return [line(columns.map((c) => c.title)), ...rows.map(line)]
}

/** Bytes in binary units, as the dashboard shows them: `1.2 GiB`. */
export function formatBytes(bytes: number | null): string {
  if (bytes === null || !Number.isFinite(bytes)) return '-'
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let value = bytes
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit += 1
  }
  return `${value.toFixed(value >= 100 || unit === 0 ? 0 : 1)} ${units[unit]}`
}
