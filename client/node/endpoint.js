// Where the service is and how to reach it, found as the C++ client's ResolveConnection
// (common/access.h) finds it: an explicit target, $MPIGATE_ENDPOINT, or the endpoint file that
// mpigate-server writes (with the token of a service on TCP, and whether it speaks TLS).
'use strict';

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const grpc = require('@grpc/grpc-js');

const {MpigateError} = require('./errors');

// The run directory: $MPIGATE_RUN_DIR, else /tmp/mpigate-<uid> (common/endpoint.h).
function defaultRunDir(env = process.env) {
  return env.MPIGATE_RUN_DIR || `/tmp/mpigate-${os.userInfo().uid}`;
}

// The endpoint file: $MPIGATE_ENDPOINT_FILE, else <run dir>/endpoint.
function defaultEndpointFile(env = process.env) {
  return env.MPIGATE_ENDPOINT_FILE || path.join(defaultRunDir(env), 'endpoint');
}

// The endpoint file: the target on its first line, then `key=value` lines (`token=...` for a
// service on TCP, `tls=1`). {target, keys}, target '' if it holds none; throws ENOENT errors.
function readEndpointFile(file) {
  const lines =
      fs.readFileSync(file, 'utf8').split('\n').map((line) => line.trim()).filter(Boolean);
  const keys = {};
  for (const line of lines.slice(1)) {
    const equals = line.indexOf('=');
    if (equals > 0) keys[line.slice(0, equals)] = line.slice(equals + 1);
  }
  return {target: lines[0] || '', keys};
}

// How to reach the service:
//   target   `explicit` if given, else $MPIGATE_ENDPOINT, else the endpoint file's;
//   token    options.token, else $MPIGATE_TOKEN, else the endpoint file's when the target came
//            from it ('' for none);
//   tlsCa, tlsCert, tlsKey
//            options.tlsCa, tlsCert, tlsKey, else $MPIGATE_TLS_CA, $MPIGATE_TLS_CERT,
//            $MPIGATE_TLS_KEY: PEM text, or the path of a file holding it ('' for none);
//   tls      whether to speak TLS: when a CA is given, or the endpoint file says `tls=1` and the
//            target came from it.
// `options.env` stands for process.env. Throws an MpigateError NOT_FOUND that says what to do if
// nothing gives a target. Reads no certificate: channelCredentials() (channel.js) does.
function resolveAccess(explicit, options = {}) {
  const env = options.env || process.env;
  const token = options.token || env.MPIGATE_TOKEN || '';
  const tlsCa = options.tlsCa || env.MPIGATE_TLS_CA || '';
  const access = {
    token,
    tls: Boolean(tlsCa),
    tlsCa,
    tlsCert: options.tlsCert || env.MPIGATE_TLS_CERT || '',
    tlsKey: options.tlsKey || env.MPIGATE_TLS_KEY || '',
  };
  if (explicit) return {...access, target: explicit};
  if (env.MPIGATE_ENDPOINT) return {...access, target: env.MPIGATE_ENDPOINT};
  const file = defaultEndpointFile(env);
  let why;
  try {
    const {target, keys} = readEndpointFile(file);
    if (target) {
      return {
        ...access,
        target,
        token: token || keys.token || '',
        tls: access.tls || keys.tls === '1',
      };
    }
    why = `endpoint file ${file} is empty`;
  } catch (error) {
    if (error.code !== 'ENOENT') throw error;
    why = `no endpoint file at ${file}`;
  }
  throw new MpigateError(
      grpc.status.NOT_FOUND,
      `no mpigate service found: ${why}. Start mpigate-server, or set MPIGATE_ENDPOINT or ` +
          'MPIGATE_ENDPOINT_FILE');
}

// The gRPC target to dial (resolveAccess()'s). Targets look like
// unix:/tmp/mpigate-0/gateway.sock or node12:50051.
function resolveEndpoint(explicit, env = process.env) {
  return resolveAccess(explicit, {env}).target;
}

module.exports = {
  defaultRunDir,
  defaultEndpointFile,
  resolveAccess,
  resolveEndpoint
};
