// mpigate's Node client: Promises over the mpigate.v1.Gateway service, with @grpc/grpc-js and the
// repository's .proto files loaded at run time by @grpc/proto-loader.
//
//   const mpigate = require('./mpigate');
//   const ex = await mpigate.Executor.connect();          // $MPIGATE_ENDPOINT or the endpoint file
//   const hello = await ex.submit('echo', Buffer.from('hello'));        // <Buffer 68 65 6c 6c 6f>
//   const echoed = await ex.map('echo', ['a', 'b', 'c'], {chunksize: 2});  // in input order
//   await ex.shutdown();                                   // waits for the session's tasks
//
// One Executor is one Session stream, as one C++ mpigate::Executor is. A task that fails, is
// cancelled or is rejected rejects its Promise with an MpigateError carrying the canonical gRPC
// code (`code`, as grpc.status; `codeName`, e.g. 'NOT_FOUND') and the message. It reaches the
// service as the C++ client does (common/access.h): on a Unix socket, or on TCP with the service's
// bearer token, in plaintext or over TLS.
//
// Unlike the C++ client this one does not resume a session whose connection broke: its pending
// Promises reject with UNAVAILABLE. Payloads and results always travel in the messages (no shared
// memory). An Executor keeps the process alive until shutdown() has ended its stream.
//
// The modules: executor.js (Executor), session.js (its stream), channel.js (stub, credentials,
// unary calls), endpoint.js (finding the service), tasks.js (tasks and outcomes on the wire),
// errors.js (MpigateError).
'use strict';

const grpc = require('@grpc/grpc-js');

const {
  DEFAULT_PROTO_DIR,
  channelCredentials,
  loadGateway,
  run,
  status,
} = require('./channel');
const {
  defaultEndpointFile,
  defaultRunDir,
  resolveAccess,
  resolveEndpoint,
} = require('./endpoint');
const {MpigateError} = require('./errors');
const {Executor} = require('./executor');

module.exports = {
  Executor,
  MpigateError,
  // The canonical status codes by name, e.g. codes.NOT_FOUND (grpc.status).
  codes: grpc.status,
  run,
  status,
  resolveEndpoint,
  resolveAccess,
  channelCredentials,
  defaultRunDir,
  defaultEndpointFile,
  loadGateway,
  DEFAULT_PROTO_DIR,
};
