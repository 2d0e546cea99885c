// CPU seconds (and the part of them spent in the kernel) and peak memory of every process
// inside given network namespaces, sampled from /proc. A process is counted by the largest
// utime+stime, stime and VmHWM seen for it, so the work a process does in its last
// sampling interval is missed (at most `everyMs`).
import { readdirSync, readFileSync, readlinkSync } from 'node:fs'

const TICKS = 100 // USER_HZ on Linux

function readProcess(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'latin1')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  const sys = Number(fields[12]) / TICKS
  const cpu = Number(fields[11]) / TICKS + sys
  const status = readFileSync(`/proc/${pid}/status`, 'latin1')
  const hwm = /VmHWM:\s+(\d+) kB/.exec(status)
  return { cpu, sys, peakRss: hwm ? Number(hwm[1]) * 1024 : 0 }
}

/**
 * Samples every `everyMs`. `roles` maps a namespace inode to a role name. `stop()`
 * returns, per role, the CPU seconds summed over its processes and the largest peak
 * RSS of one process in it, and per namespace the same.
 */
export function sampleNamespaces(namespaces, everyMs = 1000) {
  const byInode = new Map(namespaces.map((n) => [`net:[${n.inode}]`, n]))
  const seen = new Map() // pid:starttime → { key, cpu, peakRss }
  const sample = () => {
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue
      let ns
      try {
        ns = byInode.get(readlinkSync(`/proc/${entry}/ns/net`))
      } catch {
        continue
      }
      if (!ns) continue
      try {
        const now = readProcess(entry)
        const prev = seen.get(entry)
        if (prev && prev.ns === ns) {
          prev.cpu = Math.max(prev.cpu, now.cpu)
          prev.sys = Math.max(prev.sys, now.sys)
          prev.peakRss = Math.max(prev.peakRss, now.peakRss)
        } else {
          // A new pid, or a reused one in another namespace: keep the old one's figures.
          if (prev) seen.set(`${entry}:${Math.random()}`, prev)
          seen.set(entry, { ns, ...now })
        }
      } catch {}
    }
  }
  sample()
  const timer = setInterval(sample, everyMs)
  return {
    stop() {
      clearInterval(timer)
      sample()
      const perNs = new Map()
      for (const record of seen.values()) {
        const totals = perNs.get(record.ns.name) ?? {
          role: record.ns.role,
          cpu: 0,
          sys: 0,
          peakRss: 0,
        }
        totals.cpu += record.cpu
        totals.sys += record.sys
        totals.peakRss = Math.max(totals.peakRss, record.peakRss)
        perNs.set(record.ns.name, totals)
      }
      const perRole = {}
      for (const totals of perNs.values()) {
        perRole[totals.role] ??= { cpu: 0, sys: 0, peakRss: 0, hosts: 0 }
        const role = perRole[totals.role]
        role.cpu += totals.cpu
        role.sys += totals.sys
        role.peakRss = Math.max(role.peakRss, totals.peakRss)
        role.hosts += 1
      }
      return { perRole, perHost: Object.fromEntries(perNs) }
    },
  }
}
