// The errors of the Node client: MpigateError, which every rejection of the client is, and its
// making from the service's TaskError and from grpc-js's call errors.
'use strict';

const grpc = require('@grpc/grpc-js');

// Canonical codes by name and number (grpc.status is google.rpc.Code).
const CODE_NAMES =
    Object.fromEntries(Object.entries(grpc.status).map(([name, code]) => [code, name]));

// An error of a task or of a call, with its canonical gRPC code.
class MpigateError extends Error {
  constructor(code, details, extra = {}) {
    const codeName = CODE_NAMES[code] || `CODE_${code}`;
    super(`${codeName}: ${details}`);
    this.name = 'MpigateError';
    // As grpc.status, e.g. 5 for NOT_FOUND.
    this.code = code;
    this.codeName = codeName;
    // The message alone, without the code.
    this.details = details;
    // The task's id in its session, the C++ exception type that escaped the function, the index of
    // the failed item in a map: when known.
    Object.assign(this, extra);
  }
}

// A TaskError (task.proto) as an MpigateError; `ifOk` when it carries no code.
function errorOf(taskError, ifOk, extra) {
  const error = taskError || {};
  const code = error.code ? error.code : ifOk;
  const details = error.exceptionType ? `${error.exceptionType}: ${error.message}` : error.message;
  const more = {...extra};
  if (error.exceptionType) more.exceptionType = error.exceptionType;
  return new MpigateError(code, details || '', more);
}

// A gRPC call's error (grpc-js ServiceError) as an MpigateError.
function callError(error, what) {
  const code = typeof error.code === 'number' ? error.code : grpc.status.UNKNOWN;
  const details = error.details || error.message;
  return new MpigateError(code, what ? `${what}: ${details}` : details);
}

module.exports = {
  MpigateError,
  errorOf,
  callError
};
