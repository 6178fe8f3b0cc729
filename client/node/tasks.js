// Tasks to the wire and outcomes back: the messages of task.proto as the Executor's arguments and
// Promises see them.
'use strict';

const grpc = require('@grpc/grpc-js');

const {MpigateError, errorOf} = require('./errors');

// Bytes from a Buffer, a Uint8Array or a string (UTF-8).
function toBuffer(value, what) {
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof Uint8Array) {
    return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  }
  if (typeof value === 'string') return Buffer.from(value, 'utf8');
  if (value === undefined || value === null) return Buffer.alloc(0);
  throw new TypeError(`${what} must be a Buffer, a Uint8Array or a string, not ${typeof value}`);
}

// TaskOptions (task.proto) from the options of submit() and map().
function taskOptions(options) {
  return {
    queueTimeoutMs: options.queueTimeoutMs || 0,
    runTimeoutMs: options.runTimeoutMs || 0,
    maxRetries: options.maxRetries || 0,
  };
}

// Settles a task's Promise with its outcome: its result bytes (a chunk's: its ItemOutcomes), or the
// error to reject with.
function settleOutcome(outcome, resolve, reject, chunk = false) {
  const extra = {taskId: outcome.taskId};
  switch (outcome.state) {
    case 'TASK_STATE_SUCCEEDED':
      resolve(chunk ? outcome.items : outcome.result);
      return;
    case 'TASK_STATE_FAILED':
      reject(errorOf(outcome.error, grpc.status.UNKNOWN, extra));
      return;
    case 'TASK_STATE_CANCELLED':
      reject(errorOf(outcome.error, grpc.status.CANCELLED, extra));
      return;
    default:
      reject(new MpigateError(
          grpc.status.INTERNAL,
          `the service sent an outcome with no end state for task ${outcome.taskId}`, extra));
  }
}

module.exports = {
  toBuffer,
  taskOptions,
  settleOutcome
};
