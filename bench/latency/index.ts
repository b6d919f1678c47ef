/** `bench latency`: what its command and its test use (run.ts runs it). */
export { benchLatency } from './run.js';
export { namespacesUnavailable } from './link.js';
export { resolveMethods } from './methods.js';
export { latencySpec, latencyTable, writeLatencyPlot } from './report.js';
export * from './types.js';
