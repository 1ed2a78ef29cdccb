// Xen Orchestra's xen-api client loading a pool, for tests/benchmarks/bench_client.py.
// Only the package's public API: createClient, connect, objectsFetched, objects, disconnect.
//   node xo_load.mjs NODE_MODULES INFO_FILE CLASS,CLASS,...
// Prints {"load_s", "cpu_s", "vms", "objects"} as JSON: from createClient until every
// record of those classes is in the client's object collection (wall and CPU time).
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { pathToFileURL } from 'node:url'

const [modules, infoFile, classes] = process.argv.slice(2)
const info = JSON.parse(readFileSync(infoFile, 'utf8'))
const entry = createRequire(modules + '/').resolve('xen-api')
const { createClient } = await import(pathToFileURL(entry).href)

const cpu0 = process.cpuUsage()
const t0 = performance.now()
const xapi = createClient({
  url: info.url,
  allowUnauthorized: true, // the simulator's self-signed certificate
  auth: { user: info.user, password: info.password },
  watchEvents: classes.split(','), // the classes xsctl's cache reads, not every class
})
await xapi.connect()
await xapi.objectsFetched
const loadS = (performance.now() - t0) / 1e3
const cpu = process.cpuUsage(cpu0)
const cpuS = (cpu.user + cpu.system) / 1e6
const all = Object.values(xapi.objects.all)
const vms = all.filter(o => o.$type === 'VM' && !o.is_a_template && !o.is_control_domain &&
  !o.is_a_snapshot).length
await xapi.disconnect()
console.log(JSON.stringify({ load_s: loadS, cpu_s: cpuS, vms, objects: all.length }))
process.exit(0)
