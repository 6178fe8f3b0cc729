// The Executor: the Node client's Promise API over one Session stream (session.js), as one C++
// mpigate::Executor is, plus the unary calls on its connection (channel.js).
'use strict';

const grpc = require('@grpc/grpc-js');

const {newStub, runOn, unary} = require('./channel');
const {MpigateError, errorOf} = require('./errors');
const {Session} = require('./session');
const {taskOptions, toBuffer} = require('./tasks');

// How long connect() waits for the service, as the C++ client's ExecutorOptions.
const DEFAULT_CONNECT_TIMEOUT_MS = 10000;

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
    const session = new Session(stub, target, options);
    await session.open(deadline);
    return new Executor(session);
  }

  // Use Executor.connect().
  constructor(session) {
    this._session = session;
  }

  // Submits fn(payload): a Promise of the result bytes (a Buffer). Rejects with an MpigateError
  // when the task fails (its function's code, e.g. UNKNOWN), is cancelled (CANCELLED), is rejected
  // (e.g. NOT_FOUND for an unknown function) or after shutdown() (FAILED_PRECONDITION). Options:
  // payloadType, queueTimeoutMs, runTimeoutMs, maxRetries (see TaskOptions in task.proto).
  submit(fn, payload, options = {}) {
    return this._session.enqueue({
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
      const chunk = this._session.enqueue({
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
                {taskId: this._session.taskIdOf(chunk), itemIndex: first + i});
          }
          results.push(item.result);
        });
      }
    } catch (error) {
      // As Python's map iterator: an error ends the map, and chunks not yet started are cancelled.
      const unfinished = chunks.map(({chunk}) => this._session.taskIdOf(chunk))
                             .filter((id) => this._session.isPending(id));
      if (unfinished.length > 0) this._session.cancel(unfinished, false).catch(() => {});
      throw error;
    }
    return results;
  }

  // Cancels a task of submit() (the Promise it returned) that has not started; with
  // {interruptRunning: true} also sets a running task's cancellation flag (a function such as
  // `sleep` then ends CANCELLED), with {force: true} kills it. The task's Promise rejects with
  // CANCELLED if it was cancelled. Resolves to {cancelled, interrupted} once the service answers.
  cancel(task, options = {}) {
    const taskId = this._session.taskIdOf(task);
    if (taskId === undefined) {
      return Promise.reject(
          new MpigateError(grpc.status.INVALID_ARGUMENT, 'not a task of this executor'));
    }
    return this._session.cancel([taskId], options.interruptRunning, options.force)
        .then((results) => results[0]);
  }

  // Stops the session accepting tasks, as concurrent.futures' Executor.shutdown(wait,
  // cancel_futures): with cancelFutures, tasks that have not started are cancelled (their
  // Promises reject with CANCELLED); with wait (the default), resolves once every task has its
  // outcome and the service has closed the session. Then closes the connection. Safe to call more
  // than once; cancelFutures works also after an earlier shutdown() without it.
  async shutdown({wait = true, cancelFutures = false} = {}) {
    this._session.shutdown(cancelFutures);
    if (wait) await this._session.whenOver;
  }

  // Runs one task with the unary Run call, outside the session but on its connection: its result,
  // or a rejection as submit()'s. Options as submit()'s, and timeoutMs (the call's deadline; a task
  // that has not started by then is cancelled). Until shutdown() has closed the connection; then
  // the module's run() opens one of its own.
  run(fn, payload, options = {}) {
    return this._unaryCheck() || runOn(this._session.stub, fn, payload, options);
  }

  // The pool's status (PoolStatus in gateway.proto, with camelCase fields). Besides the pool's
  // size (workers, which stays the same while workers are lost) and load, workersDown (workers
  // out of service: their process was lost and is not replaced yet) and degradedReason (why;
  // '' while the pool is whole) say whether it is degraded. Until shutdown(), as run(); then the
  // module's status().
  status() {
    return this._unaryCheck() || unary(this._session.stub, 'GetPoolStatus', {});
  }

  // The functions the workers can run (FunctionInfo in gateway.proto). Until shutdown(), as run().
  async listFunctions() {
    return (await (this._unaryCheck() || unary(this._session.stub, 'ListFunctions', {}))).functions;
  }

  // A rejection for a unary call once the connection is closed, else null.
  _unaryCheck() {
    if (!this._session.over) return null;
    return Promise.reject(new MpigateError(
        grpc.status.FAILED_PRECONDITION,
        'the executor is shut down and its connection closed: use the module\'s run(), status()'));
  }

  // The target this executor is connected to.
  get endpoint() {
    return this._session.target;
  }

  // The session's id, the pool's size, and its state (PoolState's name) and why, as the service
  // last said.
  get sessionId() {
    return this._session.sessionId;
  }
  get workers() {
    return this._session.workers;
  }
  get poolState() {
    return this._session.poolState;
  }
  get poolReason() {
    return this._session.poolReason;
  }
}

module.exports = {Executor};
