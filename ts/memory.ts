import { allocate, type DType, type TypedArray } from './dtype.js'

/**
 * Output buffers of the native backend, recycled through `Tensor.dispose()`.
 *
 * A typed array fresh from V8 costs more than most kernels that fill it: a
 * large one's pages come zeroed from the OS on first touch (for 64 MB, about as
 * long as a whole elementwise pass), and a small one (over 64 bytes) is memory
 * V8 allocates, zeroes and later sweeps on its helper threads. A buffer is
 * recycled only while Eclat is its sole holder: it was allocated here as a
 * realize's output, and its data was never handed out (`dataSync()`, `data()`,
 * `detach()`, `assign()` hand it out). Buffers an async realize is reading or
 * writing are never recycled.
 */

/**
 * Buffers up to this size are left to V8: it keeps them on its heap, where a
 * fresh one is cheap. A larger one gets memory of its own (allocated, zeroed,
 * and swept by V8's helper threads), which costs more than a small kernel.
 */
const MAX_ON_HEAP_BYTES = 64
/** Buffers below this size are kept at most this many per dtype and length. */
const SMALL_BYTES = 1 << 16
const MAX_FREE_SMALL = 64

/** Free buffers by dtype, then by length. */
const free = new Map<DType, Map<number, TypedArray[]>>()
/** Buffers this module allocated whose data nobody outside Eclat holds. */
const owned = new WeakSet<TypedArray>()
/** Buffers an in-flight async realize reads or writes, with a count per realize. */
const busy = new Map<TypedArray, number>()
let pooledBytes = 0
let limitBytes = poolLimitFromEnv()

/** `ECLAT_DEBUG=poison`: new output buffers are filled with all-ones bytes (NaN, -1, 255), so a kernel that leaves part of its output unwritten shows. */
let poison = (process.env['ECLAT_DEBUG'] ?? '').split(',').includes('poison')

function poolLimitFromEnv(): number {
  const mb = process.env['ECLAT_POOL_MB']
  const n = mb === undefined ? 512 : Number(mb)
  return Number.isFinite(n) && n >= 0 ? n * 2 ** 20 : 512 * 2 ** 20
}

/** A buffer for a realize's output: a recycled one of the same dtype and length, or a new one. */
export function outputBuffer(dtype: DType, n: number): TypedArray {
  const list = free.get(dtype)?.get(n)
  let buffer = list?.pop()
  if (buffer) pooledBytes -= buffer.byteLength
  else buffer = allocate(dtype, n)
  if (poison) new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength).fill(0xff)
  if (buffer.byteLength > MAX_ON_HEAP_BYTES) owned.add(buffer)
  return buffer
}

/** The buffer's data is now held outside Eclat: it must never be recycled. */
export function handOut(buffer: TypedArray): void {
  owned.delete(buffer)
}

/**
 * Takes back a buffer nothing will read again. Returns false (and keeps
 * nothing) when it is not Eclat's alone, is in use by an async realize, or the
 * pool is full.
 */
export function recycle(buffer: TypedArray, dtype: DType): boolean {
  if (!owned.has(buffer) || busy.has(buffer)) return false
  owned.delete(buffer)
  if (pooledBytes + buffer.byteLength > limitBytes) return true // dropped: V8 frees it
  let bySize = free.get(dtype)
  if (!bySize) free.set(dtype, (bySize = new Map()))
  let list = bySize.get(buffer.length)
  if (!list) bySize.set(buffer.length, (list = []))
  if (buffer.byteLength < SMALL_BYTES && list.length >= MAX_FREE_SMALL) return true // dropped
  list.push(buffer)
  pooledBytes += buffer.byteLength
  return true
}

/** Marks buffers as read or written by an async realize until `release` (never recycled meanwhile). */
export function markBusy(buffers: readonly TypedArray[]): void {
  for (const b of buffers) busy.set(b, (busy.get(b) ?? 0) + 1)
}

/** Ends a `markBusy`. */
export function release(buffers: readonly TypedArray[]): void {
  for (const b of buffers) {
    const n = busy.get(b)! - 1
    if (n === 0) busy.delete(b)
    else busy.set(b, n)
  }
}

/** What the buffer pool holds. */
export interface BufferPoolInfo {
  /** Free buffers kept for reuse. */
  readonly buffers: number
  /** Their total size in bytes. */
  readonly bytes: number
  /** The most it keeps (`ECLAT_POOL_MB`, 512 MB by default, or `setBufferPoolLimit`). */
  readonly limitBytes: number
}

/**
 * What the pool of recycled output buffers holds (buffers of disposed tensors,
 * reused by later realizes of the same dtype and size).
 *
 * @example
 * y.dispose(); console.log(bufferPoolInfo().bytes)
 */
export function bufferPoolInfo(): BufferPoolInfo {
  let buffers = 0
  for (const bySize of free.values()) for (const list of bySize.values()) buffers += list.length
  return { buffers, bytes: pooledBytes, limitBytes }
}

/**
 * Sets the most the buffer pool keeps, in bytes; buffers beyond it are freed
 * now. `0` empties the pool and turns recycling off.
 *
 * @example
 * setBufferPoolLimit(0) // free every pooled buffer
 */
export function setBufferPoolLimit(bytes: number): void {
  if (!(bytes >= 0)) throw new RangeError(`setBufferPoolLimit: expected a size in bytes >= 0, got ${bytes}`)
  limitBytes = bytes
  for (const bySize of free.values()) {
    for (const [n, list] of bySize) {
      while (pooledBytes > limitBytes && list.length > 0) pooledBytes -= list.pop()!.byteLength
      if (list.length === 0) bySize.delete(n)
    }
  }
}

/** Whether `ECLAT_DEBUG=poison` is on. */
export function poisonOutputs(): boolean {
  return poison
}

/** Turns `ECLAT_DEBUG=poison` on or off (tests). */
export function setPoison(on: boolean): void {
  poison = on
}
