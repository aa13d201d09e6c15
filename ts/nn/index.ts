/**
 * Neural-network building blocks, PyTorch style: `Module` and its layers, and
 * the losses.
 *
 * @example
 * import { nn } from 'eclat'
 * const model = new nn.Sequential(new nn.Linear(784, 128), new nn.ReLU(), new nn.Linear(128, 10))
 */
export { Module } from './module.js'
export { Linear, Sequential, ReLU, GELU, Tanh, Sigmoid, Flatten, Dropout, LayerNorm, Embedding, Conv2d, MaxPool2d, AvgPool2d } from './layers.js'
export { mseLoss, crossEntropy, nllLoss, binaryCrossEntropyWithLogits, type LossOptions, type Reduction } from './losses.js'
