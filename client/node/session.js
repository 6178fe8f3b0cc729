// One Session stream of the Gateway service, as the Executor drives it: tasks, cancels, the
// shutdown and acknowledgements queued in one turn of the event loop go out together after it
// (tasks in `submit` messages of up to about BATCH_BYTES); the events that come back settle the
// tasks' Promises, and every outcome handled is acknowledged so that the service can forget it.
// The Executor owns its Session; nothing else calls it (Node has one thread).
'use strict';

const path = require('node:path');

const grpc = require('@grpc/grpc-js');

const {DEFAULT_MAX_MESSAGE_BYTES} = require('./channel');
const {MpigateError} = require('./errors');
const {settleOutcome} = require('./tasks');

// A `submit` message carries tasks up to about this many bytes (client/internal/session.cc).
const BATCH_BYTES = 4 << 20;
// What a task costs on the wire beyond its payload, items and function name, generously.
const TASK_OVERHEAD_BYTES = 64;

class Session {
  // Over `stub` (channel.js's newStub()), to `target`; Executor.connect()'s options. open() starts
  // it.
  constructor(stub, target, options) {
    this.stub = stub;
    this.target = target;
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
    // Whether the stream is over (its connection closed), and a Promise resolved then.
    this.over = false;
    this.whenOver = new Promise((resolve) => {
      this._resolveOver = resolve;
    });
    this.sessionId = 0;
    this.workers = 0;
    this.poolState = 'POOL_STATE_UNSPECIFIED';
    this.poolReason = '';
  }

  // Opens the Session stream and waits for `opened`, until `deadline`.
  open(deadline) {
    this._call = this.stub.Session();
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
                `the mpigate service at ${this.target} answered \`open\` with ${event.event}`));
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
        this.stub.close();
        reject(
            status.code === grpc.status.CANCELLED ?
                new MpigateError(
                    grpc.status.UNAVAILABLE,
                    `the mpigate service at ${this.target} did not answer \`open\` in time`) :
                new MpigateError(
                    status.code === grpc.status.OK ? grpc.status.INTERNAL : status.code,
                    `opening a session at ${this.target}: ${status.details}`));
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

  // Queues a task (`spec`: a Task of task.proto but its id): a Promise of its result bytes, or of
  // a chunk's ItemOutcomes when it has `items`.
  enqueue(spec) {
    let bytes = TASK_OVERHEAD_BYTES + Buffer.byteLength(spec.function) +
        Buffer.byteLength(spec.payloadType);
    if (spec.payload) bytes += spec.payload.length;
    for (const item of spec.items || []) bytes += item.length + 8;
    let promise;
    if (this._shutdownRequested || this.over) {
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

  // The task id of a Promise enqueue() returned, else undefined.
  taskIdOf(promise) {
    return this._taskIds.get(promise);
  }

  // Whether the task has no outcome yet.
  isPending(taskId) {
    return this._pending.has(taskId);
  }

  // Asks the service to cancel the tasks: resolves to their {cancelled, interrupted} once it
  // answers.
  cancel(taskIds, interruptRunning, force) {
    if (this.over || this._closed) {
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

  // Asks the service to close the session once every task has its outcome (the first call), and
  // with cancelFutures to cancel the tasks that have not started (also on a later call).
  shutdown(cancelFutures) {
    if (this.over) return;
    if (!this._shutdownRequested) {
      this._shutdownRequested = true;
      this._shutdownQueued = true;
      this._cancelPending = cancelFutures;
      this._scheduleFlush();
    } else if (cancelFutures && this._pending.size > 0) {
      this.cancel([...this._pending.keys()], false).catch(() => {});
    }
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
    this.over = true;
    this.stub.close();
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
    this._resolveOver();
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
    if (this.over || this._closed) return;
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

module.exports = {Session};
