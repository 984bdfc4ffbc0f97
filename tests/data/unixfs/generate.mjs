// Reference CIDs for BlockImage's UnixFS importer, computed by the IPFS project's JS importer
// with the options of `ipfs add --cid-version=1 --raw-leaves` (256 KiB chunks, balanced DAG,
// at most 174 links per node, raw leaves, sha2-256).
// Content of a vector of size N: byte i = i mod 251 (the Python tests rebuild the same bytes).
// Usage: npm ci && node generate.mjs > vectors.json
import { importer } from 'ipfs-unixfs-importer'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { balanced } from 'ipfs-unixfs-importer/layout'
import { MemoryBlockstore } from 'blockstore-core/memory'

const CHUNK = 262144
const sizes = [0, 1, 250, 251, 1000, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK + 17,
  174 * CHUNK, 174 * CHUNK + 1, 175 * CHUNK, 1000 * CHUNK]

function* content (size) {
  const step = 1 << 20
  if (size === 0) { yield new Uint8Array(0); return }
  for (let start = 0; start < size; start += step) {
    const n = Math.min(step, size - start)
    const buf = new Uint8Array(n)
    for (let j = 0; j < n; j++) buf[j] = (start + j) % 251
    yield buf
  }
}

async function cidOf (chunks) {
  const options = {
    cidVersion: 1,
    rawLeaves: true,
    chunker: fixedSize({ chunkSize: CHUNK }),
    layout: balanced({ maxChildrenPerNode: 174 })
  }
  let last
  for await (const entry of importer([{ content: chunks }], new MemoryBlockstore(), options)) last = entry
  return last.cid.toString()
}

const vectors = [
  { name: 'hello world\\n', text: 'hello world\n', cid: await cidOf([new TextEncoder().encode('hello world\n')]) }
]
for (const size of sizes) {
  vectors.push({ name: `pattern-${size}`, size, pattern: 'i mod 251', cid: await cidOf(content(size)) })
}
process.stdout.write(JSON.stringify({ generator: 'ipfs-unixfs-importer@17.1.1', options: { cidVersion: 1, rawLeaves: true, chunkSize: CHUNK, maxChildrenPerNode: 174 }, vectors }, null, 2) + '\n')
