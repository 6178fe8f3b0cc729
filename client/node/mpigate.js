// mpigate's Node client: Promises over the mpigate.v1.Gateway service, with @grpc/grpc-js and the
// repository's .proto files loaded at run time by @grpc/proto-loader.
//
//   const mpigate = require('./mpigate');
//   const ex = await mpigate.Executor.connect();          // $MPIGATE_ENDPOINT or the endpoint file
//   const hello = await ex.submit('echo', Buffer.from('hello'));        // <Buffer 68 65 6c 6c 6f>
//   const echoed = await ex.map('echo', ['a', 'b', 'c'], {chunksize: 2});  // in input order
//   await ex.shutdown();                                   // waits for the session's tasks
//
// One Executor is one Session stream, as one C++ mpigate::Executor is: submissions made in the
// same turn of the event loop go out in one `submit` message, outcomes settle their Promises, and
// every outcome handled is acknowledged (`ack`) so that the service can forget it. A task that
// fails, is cancelled or is rejected rejects its Promise with an MpigateError carrying the
// canonical gRPC code (`code`, as grpc.status; `codeName`, e.g. 'NOT_FOUND') and the message.
//
// It reaches the service as the C++ client does (common/access.h): on a Unix socket, or on TCP
// with the service's bearer token, in plaintext or, when the endpoint file says `tls=1` or a CA
// is given (option tlsCa, $MPIGATE_TLS_CA), over TLS, with a client certificate (tlsCert/tlsKey,
// $MPIGATE_TLS_CERT/$MPIGATE_TLS_KEY) for a service that requires one.
//
// Unlike the C++ client this one does not resume a session whose connection broke: its pending
// Promises reject with UNAVAILABLE. Payloads and results always travel in the messages (no shared
// memory). An Executor keeps the process alive until shutdown() has ended its stream.
'use strict';

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

// The .proto files: installed, in proto/ next to this file (the mpigate package puts them there);
// in a checkout, the repository's proto/ (this file is client/node/mpigate.js).
const DEFAULT_PROTO_DIR = [
  path.join(__dirname, 'proto'), path.resolve(__dirname, '..', '..', 'proto')
].find((dir) => fs.existsSync(path.join(dir, 'mpigate/v1/gateway.proto')));
// As the C++ client's ExecutorOptions: the largest message sent or accepted, and how long
// connect() waits for the service.
const DEFAULT_MAX_MESSAGE_BYTES = 512 << 20;
const DEFAULT_CONNECT_TIMEOUT_MS = 10000;
// A `submit` message carries tasks up to about this many bytes (client/internal/session.cc).
const BATCH_BYTES = 4 << 20;
// What a task costs on the wire beyond its payload, items and function name, generously.
const TASK_OVERHEAD_BYTES = 64;

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
  const lines = fs.readFileSync(file, 'utf8').split('\n').map((line) => line.trim()).filter(Boolean);
  const keys = {};
  for (const line of lines.slice(1)) {
    const equals = line.indexOf('=');
    if (equals > 0) keys[line.slice(0, equals)] = line.slice(equals + 1);
  }
  return {target: lines[0] || '', keys};
}

// How to reach the service, as the C++ client's ResolveConnection (common/access.h) finds it:
//   target   `explicit` if given, else $MPIGATE_ENDPOINT, else the endpoint file's;
//   token    options.token, else $MPIGATE_TOKEN, else the endpoint file's when the target came
//            from it ('' for none);
//   tlsCa, tlsCert, tlsKey
//            options.tlsCa, tlsCert, tlsKey, else $MPIGATE_TLS_CA, $MPIGATE_TLS_CERT,
//            $MPIGATE_TLS_KEY: PEM text, or the path of a file holding it ('' for none);
//   tls      whether to speak TLS: when a CA is given, or the endpoint file says `tls=1` and the
//            target came from it.
// `options.env` stands for process.env. Throws an MpigateError NOT_FOUND that says what to do if
// nothing gives a target. Reads no certificate: channelCredentials() does.
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

// Runs one task with the unary Run call: its result, or a rejection as submit()'s.
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

// A session with the service: submit tasks and map over inputs, with Promises. Create one with
// Executor.connect() and end it with shutdown(). All methods may be called from anywhere in the
// program (Node has one thread); submit() and map() return at once and never block.
class Executor {
  // Connects to the service and opens a session. `endpoint`: a gRPC target, else as
  // resolveEndpoint() finds one. Options: clientName (for the service's status), connectTimeoutMs
  // (10 s), maxMessageBytes (512 MiB, at most the server's --max-message-mb), protoDir (the
  // repository's proto/), taskEnv (an object of environment variables for this executor's tasks,
  // OpenSession.env: each starts with the pool's environment plus these, and no task sees what
  // another executor's task set; names without '=' or NUL, at most 64 KiB in all, refused by a
  // pool with --isolation=none; not `env`, which stands for process.env in resolveAccess()),
  // maxRunningTasks (the most of this executor's tasks on workers at once, OpenSession
  // .max_running_tasks: the rest wait while other clients' tasks use the free workers; a task
  // counts while it runs or waits in a worker's backlog, a gang once per member, a broadcast not;
  // 0 or absent: no cap), and how to authenticate (resolveAccess()):
  //   token    the service's bearer token (else $MPIGATE_TOKEN, else the endpoint file's);
  //   tlsCa    the CA that signed the service's certificate, PEM text or a file's path (else
  //            $MPIGATE_TLS_CA); given, the client speaks TLS, which it also does without one
  //            (verifying against the system's roots) when the endpoint file says `tls=1`;
  //   tlsCert, tlsKey
  //            a client certificate and its key, PEM text or paths, for a service started with
  //            --tls-client-ca (else $MPIGATE_TLS_CERT, $MPIGATE_TLS_KEY); one needs the other.
  // Rejects with NOT_FOUND when no endpoint is known or a PEM file cannot be read,
  // INVALID_ARGUMENT for a certificate without its key (or a key without its certificate) or a
  // PEM file that holds none, UNAVAILABLE when the service does not answer in time, also when TLS
  // fails (a certificate that does not verify, on either side).
  static async connect(endpoint, options = {}) {
    const {stub, target} = newStub(endpoint, options);
    const connectTimeoutMs = options.connectTimeoutMs || DEFAULT_CONNECT_TIMEOUT_MS;
    const deadline = Date.now() + connectTimeoutMs;
    try {
      await new Promise(
          (resolve, reject) =>
              stub.waitForReady(deadline, (error) => (error ? reject(error) : resolve())));
    } catch (error) {
      stub.close();
      throw new MpigateError(
          grpc.status.UNAVAILABLE,
          `the mpigate service at ${target} did not answer within ${connectTimeoutMs} ms; is it ` +
              `running? (${error.message})`);
    }
    const executor = new Executor(stub, target, options);
    await executor._open(deadline);
    return executor;
  }

  // Use Executor.connect().
  constructor(stub, target, options) {
    this._stub = stub;
    this._target = target;
    this._clientName =
        options.clientName || `node ${path.basename(process.argv[1] || 'node')} pid ${process.pid}`;
    this._maxMessageBytes = options.maxMessageBytes || DEFAULT_MAX_MESSAGE_BYTES;
    this._taskEnv = {...(options.taskEnv || {})};
    this._maxRunningTasks = options.maxRunningTasks || 0;
    this._sendLimit = this._maxMessageBytes;
    this._nextTaskId = 1;
    // Task id -> {resolve, reject} of tasks sent or about to be, until their outcome or rejection.
    this._pending = new Map();
    // Submitted Promises -> their task ids, for cancel().
    this._taskIds = new WeakMap();
    // Requests waiting for the next flush: tasks, cancels, acknowledgements, the shutdown.
    this._outgoingTasks = [];
    this._outgoingCancels = [];
    this._acks = [];
    this._shutdownQueued = false;
    this._cancelPending = false;
    this._flushScheduled = false;
    // Resolvers of sent cancels, answered in order by `cancel_results`.
    this._cancelsSent = [];
    this._shutdownRequested = false;
    this._closed = false;
    // Set once the stream is over: the error of later submits.
    this._ended = null;
    this._streamOver = false;
    this._whenOver = new Promise((resolve) => {
      this._over = resolve;
    });
    this.sessionId = 0;
    this.workers = 0;
    this.poolState = 'POOL_STATE_UNSPECIFIED';
    this.poolReason = '';
  }

  // Submits fn(payload): a Promise of the result bytes (a Buffer). Rejects with an MpigateError
  // when the task fails (its function's code, e.g. UNKNOWN), is cancelled (CANCELLED), is rejected
  // (e.g. NOT_FOUND for an unknown function) or after shutdown() (FAILED_PRECONDITION). Options:
  // payloadType, queueTimeoutMs, runTimeoutMs, maxRetries (see TaskOptions in task.proto).
  submit(fn, payload, options = {}) {
    return this._enqueue({
      function: fn,
      payload: toBuffer(payload, 'payload'),
      payloadType: options.payloadType || '',
      options: taskOptions(options),
    });
  }

  // fn over `items` (Buffers or strings), `chunksize` items per task (default 1) as
  // concurrent.futures' map: a Promise of the results, in input order. The first failed item, in
  // input order, rejects it (`itemIndex` says which) and cancels the chunks that have not started.
  // Options as submit()'s, and chunksize.
  async map(fn, items, options = {}) {
    const chunksize = options.chunksize === undefined ? 1 : options.chunksize;
    if (!Number.isInteger(chunksize) || chunksize < 1) {
      throw new MpigateError(
          grpc.status.INVALID_ARGUMENT, `chunksize must be an integer >= 1, not ${chunksize}`);
    }
    const inputs = Array.from(items, (item, i) => toBuffer(item, `item ${i}`));
    const chunks = [];
    for (let first = 0; first < inputs.length; first += chunksize) {
      const chunk = this._enqueue({
        function: fn,
        items: inputs.slice(first, first + chunksize),
        payloadType: options.payloadType || '',
        options: taskOptions(options),
      });
      // Handled below in order; until then a rejection must not count as unhandled.
      chunk.catch(() => {});
      chunks.push({first, chunk});
    }
    const results = [];
    try {
      for (const {first, chunk} of chunks) {
        let outcomes;
        try {
          outcomes = await chunk;
        } catch (error) {
          // A copy: one error may reject many tasks (e.g. a lost connection).
          throw new MpigateError(
              error.code, error.details, {taskId: error.taskId, itemIndex: first});
        }
        outcomes.forEach((item, i) => {
          if (item.outcome === 'error') {
            throw errorOf(
                item.error, grpc.status.UNKNOWN,
                {taskId: this._taskIds.get(chunk), itemIndex: first + i});
          }
          results.push(item.result);
        });
      }
    } catch (error) {
      // As Python's map iterator: an error ends the map, and chunks not yet started are cancelled.
      const unfinished =
          chunks.map(({chunk}) => this._taskIds.get(chunk)).filter((id) => this._pending.has(id));
      if (unfinished.length > 0) this._cancelIds(unfinished, false).catch(() => {});
      throw error;
    }
    return results;
  }

  // Cancels a task of submit() (the Promise it returned) that has not started; with
  // {interruptRunning: true} also sets a running task's cancellation flag (a function such as
  // `sleep` then ends CANCELLED), with {force: true} kills it. The task's Promise rejects with
  // CANCELLED if it was cancelled. Resolves to {cancelled, interrupted} once the service answers.
  cancel(task, options = {}) {
    const taskId = this._taskIds.get(task);
    if (taskId === undefined) {
      return Promise.reject(
          new MpigateError(grpc.status.INVALID_ARGUMENT, 'not a task of this executor'));
    }
    return this._cancelIds([taskId], options.interruptRunning, options.force)
        .then((results) => results[0]);
  }

  // Stops the session accepting tasks, as concurrent.futures' Executor.shutdown(wait,
  // cancel_futures): with cancelFutures, tasks that have not started are cancelled (their
  // Promises reject with CANCELLED); with wait (the default), resolves once every task has its
  // outcome and the service has closed the session. Then closes the connection. Safe to call more
  // than once; cancelFutures works also after an earlier shutdown() without it.
  async shutdown({wait = true, cancelFutures = false} = {}) {
    if (!this._streamOver) {
      if (!this._shutdownRequested) {
        this._shutdownRequested = true;
        this._shutdownQueued = true;
        this._cancelPending = cancelFutures;
        this._scheduleFlush();
      } else if (cancelFutures && this._pending.size > 0) {
        this._cancelIds([...this._pending.keys()], false).catch(() => {});
      }
    }
    if (wait) await this._whenOver;
  }

  // Runs one task with the unary Run call, outside the session but on its connection: its result,
  // or a rejection as submit()'s. Options as submit()'s, and timeoutMs (the call's deadline; a task
  // that has not started by then is cancelled). Until shutdown() has closed the connection; then
  // the module's run() opens one of its own.
  run(fn, payload, options = {}) {
    return this._unaryCheck() || runOn(this._stub, fn, payload, options);
  }

  // The pool's status (PoolStatus in gateway.proto, with camelCase fields). Besides the pool's
  // size (workers, which stays the same while workers are lost) and load, workersDown (workers
  // out of service: their process was lost and is not replaced yet) and degradedReason (why;
  // '' while the pool is whole) say whether it is degraded. Until shutdown(), as run(); then the
  // module's status().
  status() {
    return this._unaryCheck() || unary(this._stub, 'GetPoolStatus', {});
  }

  // The functions the workers can run (FunctionInfo in gateway.proto). Until shutdown(), as run().
  async listFunctions() {
    return (await (this._unaryCheck() || unary(this._stub, 'ListFunctions', {}))).functions;
  }

  // A rejection for a unary call once the connection is closed, else null.
  _unaryCheck() {
    if (!this._streamOver) return null;
    return Promise.reject(new MpigateError(
        grpc.status.FAILED_PRECONDITION,
        'the executor is shut down and its connection closed: use the module\'s run(), status()'));
  }

  // The target this executor is connected to.
  get endpoint() {
    return this._target;
  }

  // --- The stream. ---

  // Opens the Session stream and waits for `opened`, until `deadline`.
  _open(deadline) {
    this._call = this._stub.Session();
    return new Promise((resolve, reject) => {
      let opened = false;
      const timer = setTimeout(() => {
        this._call.cancel();
      }, Math.max(0, deadline - Date.now()));
      this._call.on('data', (event) => {
        if (!opened) {
          clearTimeout(timer);
          opened = true;
          if (event.event !== 'opened') {
            this._call.cancel();
            reject(new MpigateError(
                grpc.status.INTERNAL,
                `the mpigate service at ${this._target} answered \`open\` with ${event.event}`));
            return;
          }
          this._adopt(event.opened);
          resolve();
          return;
        }
        this._handle(event);
      });
      // The call's end: 'status' comes once, 'end' once every message read before it has been
      // handled ('status' may overtake messages still buffered in the stream). 'error' repeats a
      // status that is not OK, and must be listened to, or it would be thrown.
      let status = null;
      let ended = false;
      const over = () => {
        if (status === null || !ended) return;
        clearTimeout(timer);
        if (opened) {
          this._streamEnded(status);
          return;
        }
        this._stub.close();
        reject(
            status.code === grpc.status.CANCELLED ?
                new MpigateError(
                    grpc.status.UNAVAILABLE,
                    `the mpigate service at ${this._target} did not answer \`open\` in time`) :
                new MpigateError(
                    status.code === grpc.status.OK ? grpc.status.INTERNAL : status.code,
                    `opening a session at ${this._target}: ${status.details}`));
      };
      this._call.on('error', () => {});
      this._call.on('status', (callStatus) => {
        status = callStatus;
        over();
      });
      this._call.on('end', () => {
        ended = true;
        over();
      });
      this._call.write({
        open: {
          clientName: this._clientName,
          maxMessageBytes: this._maxMessageBytes,
          env: this._taskEnv,
          maxRunningTasks: this._maxRunningTasks,
        },
      });
    });
  }

  _adopt(opened) {
    this.sessionId = opened.sessionId;
    this.workers = opened.workers;
    if (opened.pool) this._poolChanged(opened.pool);
    if (opened.maxMessageBytes > 0) {
      this._sendLimit = Math.min(this._sendLimit, opened.maxMessageBytes);
    }
  }

  _poolChanged(change) {
    this.poolState = change.state;
    this.poolReason = change.reason;
    if (change.workers > 0) this.workers = change.workers;
  }

  _handle(event) {
    switch (event.event) {
      case 'updates':
        for (const outcome of event.updates.outcomes) {
          // Every outcome is acknowledged, also one that finds no Promise (none should).
          this._acks.push(outcome.taskId);
          const waiter = this._pending.get(outcome.taskId);
          if (waiter === undefined) continue;
          this._pending.delete(outcome.taskId);
          settleOutcome(outcome, waiter.resolve, waiter.reject, waiter.chunk);
        }
        if (this._acks.length > 0) this._scheduleFlush();
        break;
      case 'rejected':
        for (const rejection of event.rejected.rejections) {
          const waiter = this._pending.get(rejection.taskId);
          if (waiter === undefined) continue;
          this._pending.delete(rejection.taskId);
          waiter.reject(new MpigateError(
              rejection.code || grpc.status.UNKNOWN, rejection.message,
              {taskId: rejection.taskId}));
        }
        break;
      case 'cancelResults': {
        const answer = this._cancelsSent.shift();
        if (answer) {
          answer.resolve(event.cancelResults.results.map(
              ({cancelled, interrupted}) => ({cancelled, interrupted})));
        }
        break;
      }
      case 'pool':
        this._poolChanged(event.pool);
        break;
      case 'closed':
        // Every task has its outcome and the service has forgotten the session: nothing more to
        // send, not even acknowledgements. The service ends the stream next; ending ours lets the
        // call finish.
        this._closed = true;
        this._call.end();
        break;
      default:
        // A newer service's event: nothing we need.
        break;
    }
  }

  // The call is over: after `closed`, or because the connection or the session was lost. Whatever
  // is still pending fails with UNAVAILABLE; later submits fail as after shutdown().
  _streamEnded(status) {
    this._streamOver = true;
    this._stub.close();
    const lost = new MpigateError(
        grpc.status.UNAVAILABLE,
        this._closed ? 'the service closed the session before this task ended' :
                       `connection to the mpigate service lost: ${
                           status.code === grpc.status.OK ? 'the service ended the session' :
                                                            status.details}`);
    this._ended = this._closed ?
        new MpigateError(grpc.status.FAILED_PRECONDITION, 'cannot submit after shutdown') :
        lost;
    for (const waiter of this._pending.values()) waiter.reject(lost);
    this._pending.clear();
    // After `closed` no task is left to cancel; otherwise the answer is lost.
    for (const cancel of [...this._cancelsSent, ...this._outgoingCancels]) {
      if (this._closed) {
        cancel.resolve(cancel.request.taskIds.map(() => ({cancelled: false, interrupted: false})));
      } else {
        cancel.reject(lost);
      }
    }
    this._cancelsSent = [];
    this._outgoingCancels = [];
    this._outgoingTasks = [];
    this._acks = [];
    this._over();
  }

  _enqueue(spec) {
    let bytes = TASK_OVERHEAD_BYTES + Buffer.byteLength(spec.function) +
        Buffer.byteLength(spec.payloadType);
    if (spec.payload) bytes += spec.payload.length;
    for (const item of spec.items || []) bytes += item.length + 8;
    let promise;
    if (this._shutdownRequested || this._streamOver) {
      promise = Promise.reject(
          this._shutdownRequested ?
              new MpigateError(grpc.status.FAILED_PRECONDITION, 'cannot submit after shutdown') :
              this._ended);
    } else if (bytes > this._sendLimit) {
      // gRPC would end the whole stream on an oversized message, and every task with it: fail this
      // one alone, before the service hears of it.
      promise = Promise.reject(new MpigateError(
          grpc.status.RESOURCE_EXHAUSTED,
          `the task is about ${bytes} bytes encoded, above the message limit of ${
              this._sendLimit} bytes`));
    } else {
      const taskId = this._nextTaskId++;
      spec.taskId = taskId;
      const chunk = spec.items !== undefined;
      promise =
          new Promise((resolve, reject) => this._pending.set(taskId, {resolve, reject, chunk}));
      this._taskIds.set(promise, taskId);
      this._outgoingTasks.push({spec, bytes});
      this._scheduleFlush();
    }
    return promise;
  }

  _cancelIds(taskIds, interruptRunning, force) {
    if (this._streamOver || this._closed) {
      return Promise.resolve(taskIds.map(() => ({cancelled: false, interrupted: false})));
    }
    return new Promise((resolve, reject) => {
      this._outgoingCancels.push({
        request:
            {taskIds, interruptRunning: Boolean(interruptRunning || force), force: Boolean(force)},
        resolve,
        reject,
      });
      this._scheduleFlush();
    });
  }

  // Everything queued in this turn of the event loop goes out together, after it.
  _scheduleFlush() {
    if (this._flushScheduled) return;
    this._flushScheduled = true;
    queueMicrotask(() => this._flush());
  }

  _flush() {
    this._flushScheduled = false;
    // After `closed` the writing side is ended, and what was queued is moot (see _streamEnded).
    if (this._streamOver || this._closed) return;
    // Tasks first, in id order and in messages within the batch size; then cancels, which may
    // name them; then the shutdown; then acknowledgements.
    const tasks = this._outgoingTasks;
    this._outgoingTasks = [];
    const budget = Math.min(BATCH_BYTES, this._sendLimit);
    for (let next = 0; next < tasks.length;) {
      const batch = [];
      let bytes = 0;
      do {
        bytes += tasks[next].bytes;
        batch.push(tasks[next].spec);
        ++next;
      } while (next < tasks.length && bytes + tasks[next].bytes <= budget);
      this._call.write({submit: {tasks: batch}});
    }
    for (const cancel of this._outgoingCancels) {
      this._cancelsSent.push(cancel);
      this._call.write({cancel: cancel.request});
    }
    this._outgoingCancels = [];
    if (this._shutdownQueued) {
      this._shutdownQueued = false;
      this._call.write({shutdown: {cancelPending: this._cancelPending}});
    }
    if (this._acks.length > 0) {
      this._call.write({ack: {taskIds: this._acks}});
      this._acks = [];
    }
  }
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
