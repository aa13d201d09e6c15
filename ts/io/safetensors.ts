/**
 * The safetensors format (the one PyTorch and Hugging Face use): an 8-byte
 * little-endian header length, a JSON header mapping names to
 * `{ dtype, shape, data_offsets }`, then the raw little-endian data.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { allocate, itemSize, type DType } from '../dtype.js'
import { EclatError, FormatError } from '../errors.js'
import { numel } from '../graph/shape.js'
import { loadNode, Tensor } from '../tensor.js'

const TO_FILE: Record<DType, string> = { float32: 'F32', float64: 'F64', int32: 'I32', bool: 'BOOL' }
const FROM_FILE: Record<string, DType> = { F32: 'float32', F64: 'float64', I32: 'int32', BOOL: 'bool' }

/** Little-endian bytes of a typed array (copied on big-endian hosts). */
function littleEndian(t: Tensor): Uint8Array {
  const data = t.dataSync()
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] === 1 || itemSize(t.dtype) === 1) return bytes
  const out = new Uint8Array(bytes.length)
  const size = itemSize(t.dtype)
  for (let i = 0; i < bytes.length; i += size) for (let j = 0; j < size; j++) out[i + j] = bytes[i + size - 1 - j]!
  return out
}

/**
 * Writes tensors to `path` in the safetensors format (all tensors realized in one go).
 *
 * @example
 * saveSafetensors('weights.safetensors', model.stateDict())
 */
export function saveSafetensors(path: string, tensors: Record<string, Tensor>, metadata?: Record<string, string>): void {
  const names = Object.keys(tensors).sort()
  const header: Record<string, unknown> = {}
  if (metadata) header['__metadata__'] = metadata
  const chunks: Uint8Array[] = []
  let offset = 0
  for (const name of names) {
    const t = tensors[name]
    if (!(t instanceof Tensor)) throw new EclatError(`saveSafetensors: '${name}' is not a Tensor`)
    const bytes = littleEndian(t)
    header[name] = { dtype: TO_FILE[t.dtype], shape: [...t.shape], data_offsets: [offset, offset + bytes.length] }
    chunks.push(bytes)
    offset += bytes.length
  }
  let json = JSON.stringify(header)
  json += ' '.repeat((8 - (json.length % 8)) % 8) // keep the data 8-byte aligned
  const head = Buffer.from(json, 'utf8')
  const size = Buffer.alloc(8)
  size.writeBigUInt64LE(BigInt(head.length))
  writeFileSync(path, Buffer.concat([size, head, ...chunks]))
}

/**
 * Reads a safetensors file into tensors. A malformed file (truncated, a header
 * length past the end, offsets out of range or overlapping, an unsupported
 * dtype) throws a FormatError; nothing is read out of bounds.
 *
 * @example
 * const weights = loadSafetensors('weights.safetensors')
 */
export function loadSafetensors(path: string): Record<string, Tensor> {
  return parseSafetensors(readFileSync(path), path)
}

/**
 * Parses safetensors bytes (see `loadSafetensors`).
 *
 * @example
 * const weights = parseSafetensors(await (await fetch(url)).bytes())
 */
export function parseSafetensors(file: Uint8Array, source = 'buffer'): Record<string, Tensor> {
  const bad = (why: string) => new FormatError(`safetensors ${source}: ${why}`)
  if (file.length < 8) throw bad(`${file.length} bytes is too short for the 8-byte header length`)
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength)
  const headerLength = view.getBigUint64(0, true)
  if (headerLength > BigInt(file.length - 8)) throw bad(`header length ${headerLength} runs past the end of the ${file.length}-byte file`)
  const dataStart = 8 + Number(headerLength)
  let header: unknown
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(file.subarray(8, dataStart)))
  } catch (e) {
    throw bad(`header is not valid JSON (${(e as Error).message})`)
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) throw bad('header is not a JSON object')
  const dataLength = file.length - dataStart
  const out: Record<string, Tensor> = {}
  const ranges: [number, number, string][] = []
  for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') continue
    const e = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown }
    if (typeof e !== 'object' || e === null) throw bad(`entry '${name}' is not an object`)
    const dtype = typeof e.dtype === 'string' ? FROM_FILE[e.dtype] : undefined
    if (!dtype) throw bad(`tensor '${name}' has unsupported dtype ${JSON.stringify(e.dtype)} (supported: ${Object.keys(FROM_FILE).join(', ')})`)
    const shape = e.shape
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) throw bad(`tensor '${name}' has an invalid shape ${JSON.stringify(shape)}`)
    const offsets = e.data_offsets
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)) {
      throw bad(`tensor '${name}' has invalid data_offsets ${JSON.stringify(offsets)}`)
    }
    const [begin, end] = offsets as [number, number]
    if (begin > end || end > dataLength) throw bad(`tensor '${name}' data_offsets [${begin}, ${end}] are out of range for ${dataLength} data bytes`)
    const n = numel(shape as number[])
    if (end - begin !== n * itemSize(dtype)) {
      throw bad(`tensor '${name}' has ${end - begin} bytes, but shape [${shape.join(', ')}] of ${dtype} needs ${n * itemSize(dtype)}`)
    }
    ranges.push([begin, end, name])
    const data = allocate(dtype, n)
    const bytes = new Uint8Array(data.buffer)
    bytes.set(file.subarray(dataStart + begin, dataStart + end))
    if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1 && itemSize(dtype) > 1) {
      const size = itemSize(dtype)
      for (let i = 0; i < bytes.length; i += size) bytes.subarray(i, i + size).reverse()
    }
    out[name] = new Tensor(loadNode(data, shape as number[], dtype, name))
  }
  ranges.sort((a, b) => a[0] - b[0] || a[1] - b[1])
  for (let i = 1; i < ranges.length; i++) {
    const [prev, cur] = [ranges[i - 1]!, ranges[i]!]
    if (cur[0] < prev[1] && cur[1] > cur[0]) throw bad(`tensors '${prev[2]}' and '${cur[2]}' overlap`)
  }
  return out
}
