/**
 * Eclat: lazy tensors with reverse-mode autodiff for Node.js, run by
 * multithreaded Rust kernels.
 *
 * @example
 * import { tensor } from 'eclat'
 * const x = tensor([[1, 2], [3, 4]])
 * console.log(x.mul(x).sum().item()) // 30
 */
export { Tensor, where, matmul, type TensorLike, type TensorOptions, type ScanOptions, type SliceRange } from './tensor.js'
export { tensor, zeros, ones, full, arange, linspace, eye, input, rand, randn, manualSeed } from './creation.js'
export { concat, stack, split } from './ops/composite.js'
export { type DType, type TypedArray } from './dtype.js'
export { type NestedArray } from './data.js'
export { EclatError, ShapeError, DTypeError, IndexError, FormatError, AllocationError } from './errors.js'
export { PRIMITIVES, type Op } from './graph/ops.js'
export { numThreads, simdLevel, supportedSimdLevels, backendName, setBackend, realize, realizeAsync, explainRealize, type KernelInfo } from './runtime.js'
export { bufferPoolInfo, setBufferPoolLimit, type BufferPoolInfo } from './memory.js'
export { backward, zeroGrad, type BackwardOptions } from './autograd/backward.js'
export { grad, valueAndGrad, vjp, checkpoint, type GradOptions, type Grads } from './autograd/functional.js'
export { gradcheck, type GradcheckOptions, type GradcheckResult } from './autograd/gradcheck.js'
export { noGrad } from './autograd/mode.js'
export * as nn from './nn/index.js'
export * as optim from './optim/index.js'
export { Module, Linear, Sequential, ReLU, GELU, Tanh, Sigmoid, Flatten, Dropout, LayerNorm, Embedding, Conv2d, MaxPool2d, AvgPool2d } from './nn/index.js'
export { mseLoss, crossEntropy, nllLoss, binaryCrossEntropyWithLogits, type LossOptions, type Reduction } from './nn/index.js'
export { Optimizer, SGD, Adam, AdamW, StepLR, CosineAnnealingLR, type SGDOptions, type AdamOptions } from './optim/index.js'
export { saveSafetensors, loadSafetensors, parseSafetensors } from './io/safetensors.js'
