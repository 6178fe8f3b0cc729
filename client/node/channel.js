// The connection to the service: the Gateway stub from the .proto files (loaded at run time by
// @grpc/proto-loader), its credentials (plaintext, or TLS with an optional client certificate),
// the bearer token, and the unary calls (Run, GetPoolStatus, ListFunctions).
'use strict';

const fs = require('node:fs');
const path = require('node:path');

const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const {resolveAccess} = require('./endpoint');
const {MpigateError, callError} = require('./errors');
const {settleOutcome, taskOptions, toBuffer} = require('./tasks');

// The .proto files: installed, in proto/ next to this file (the mpigate package puts them there);
// in a checkout, the repository's proto/ (this file is client/node/channel.js).
const DEFAULT_PROTO_DIR = [
  path.join(__dirname, 'proto'), path.resolve(__dirname, '..', '..', 'proto')
].find((dir) => fs.existsSync(path.join(dir, 'mpigate/v1/gateway.proto')));
// As the C++ client's ExecutorOptions: the largest message sent or accepted.
const DEFAULT_MAX_MESSAGE_BYTES = 512 << 20;

// mpigate.v1.Gateway's client constructor, from the .proto files under `protoDir`.
const gatewayByDir = new Map();
function loadGateway(protoDir = DEFAULT_PROTO_DIR) {
  let Gateway = gatewayByDir.get(protoDir);
  if (Gateway === undefined) {
    const definition = protoLoader.loadSync(
        [
          path.join(protoDir, 'mpigate/v1/gateway.proto'),
          path.join(protoDir, 'mpigate/v1/task.proto')
        ],
        {
          includeDirs: [protoDir],
          // Task ids and counts as Numbers (exact below 2^53), states as their names, bytes as
          // Buffers, unset fields as their defaults, and `event` / `request` naming the oneof's
          // case.
          longs: Number,
          enums: String,
          defaults: true,
          oneofs: true,
        });
    Gateway = grpc.loadPackageDefinition(definition).mpigate.v1.Gateway;
    gatewayByDir.set(protoDir, Gateway);
  }
  return Gateway;
}

// PEM text given as itself (it holds "-----BEGIN") or as the path of a file holding it, as a
// Buffer; `what` names it in errors. As common/access.cc's ReadPem: NOT_FOUND for a file that
// cannot be read, INVALID_ARGUMENT for one that holds no PEM.
function readPem(pathOrPem, what) {
  if (pathOrPem.includes('-----BEGIN')) return Buffer.from(pathOrPem, 'utf8');
  let pem;
  try {
    pem = fs.readFileSync(pathOrPem);
  } catch (error) {
    throw new MpigateError(
        grpc.status.NOT_FOUND, `cannot read ${what} ${pathOrPem}: ${error.message}`);
  }
  if (!pem.includes('-----BEGIN')) {
    throw new MpigateError(grpc.status.INVALID_ARGUMENT, `${what} ${pathOrPem} holds no PEM`);
  }
  return pem;
}

// The channel credentials of resolveAccess()'s `access`: plaintext, or TLS verified against its
// CA (the system's roots when it has none), with its client certificate and key if it has them.
// Throws an MpigateError: INVALID_ARGUMENT for a certificate without its key or a key without its
// certificate, NOT_FOUND or INVALID_ARGUMENT for PEM that cannot be read (readPem()).
function channelCredentials(access) {
  if (!access.tls) return grpc.credentials.createInsecure();
  const ca = access.tlsCa ? readPem(access.tlsCa, 'TLS CA certificate') : null;
  if (Boolean(access.tlsCert) !== Boolean(access.tlsKey)) {
    throw new MpigateError(
        grpc.status.INVALID_ARGUMENT,
        'a TLS client certificate needs its key, and a key its certificate (tlsCert/tlsKey, ' +
            'MPIGATE_TLS_CERT/MPIGATE_TLS_KEY)');
  }
  if (!access.tlsCert) return grpc.credentials.createSsl(ca);
  return grpc.credentials.createSsl(
      ca, readPem(access.tlsKey, 'TLS client key'),
      readPem(access.tlsCert, 'TLS client certificate'));
}

// Adds `authorization: Bearer <token>` to every call: the token a service on TCP requires
// (common/access.h). Metadata rather than call credentials, which gRPC refuses on plaintext; on a
// TLS channel it travels encrypted all the same.
function tokenInterceptor(token) {
  return (options, nextCall) => new grpc.InterceptingCall(nextCall(options), {
    start(metadata, listener, next) {
      metadata.set('authorization', `Bearer ${token}`);
      next(metadata, listener);
    },
  });
}

// A stub of the Gateway service at `endpoint`, reached as resolveAccess() and
// channelCredentials() say with `options` (token, tlsCa, tlsCert, tlsKey, env): {stub, target},
// the target as resolved (grpc-js would name it with its default scheme, dns:).
function newStub(endpoint, options) {
  const Gateway = loadGateway(options.protoDir);
  const maxMessageBytes = options.maxMessageBytes || DEFAULT_MAX_MESSAGE_BYTES;
  const access = resolveAccess(endpoint, options);
  const stub = new Gateway(access.target, channelCredentials(access), {
    'grpc.max_send_message_length': maxMessageBytes,
    'grpc.max_receive_message_length': maxMessageBytes,
    interceptors: access.token ? [tokenInterceptor(access.token)] : [],
  });
  return {stub, target: access.target};
}

// Runs one task with the unary Run call: its result, or a rejection as Executor.submit()'s.
function runOn(stub, fn, payload, options = {}) {
  const task = {
    taskId: 0,
    function: fn,
    payload: toBuffer(payload, 'payload'),
    payloadType: options.payloadType || '',
    options: taskOptions(options),
  };
  const callOptions = options.timeoutMs ? {deadline: Date.now() + options.timeoutMs} : {};
  return new Promise((resolve, reject) => {
    stub.Run({task}, callOptions, (error, outcome) => {
      if (error) {
        // The task's own rejection (e.g. NOT_FOUND for an unknown function) is the call's error.
        reject(callError(error));
      } else {
        settleOutcome(outcome, resolve, reject);
      }
    });
  });
}

function unary(stub, method, request) {
  return new Promise((resolve, reject) => {
    stub[method](
        request,
        (error, response) => (error ? reject(callError(error, method)) : resolve(response)));
  });
}

// Runs one task with the unary Run call on a connection of its own, closed after: for scripts.
// `options` as Executor.run()'s, and endpoint and Executor.connect()'s protoDir, maxMessageBytes,
// token, tlsCa, tlsCert, tlsKey.
async function run(fn, payload, options = {}) {
  const {stub} = newStub(options.endpoint, options);
  try {
    return await runOn(stub, fn, payload, options);
  } finally {
    stub.close();
  }
}

// The pool's status (PoolStatus) on a connection of its own. `options`: endpoint, and
// Executor.connect()'s protoDir, token, tlsCa, tlsCert, tlsKey.
async function status(options = {}) {
  const {stub} = newStub(options.endpoint, options);
  try {
    return await unary(stub, 'GetPoolStatus', {});
  } finally {
    stub.close();
  }
}

module.exports = {
  DEFAULT_PROTO_DIR,
  DEFAULT_MAX_MESSAGE_BYTES,
  loadGateway,
  channelCredentials,
  newStub,
  runOn,
  unary,
  run,
  status,
};
