// The Node client (client/node/mpigate.js) against a real mpigate-server with 2 workers, run with
// node's built-in test runner by node_client_test.sh, which starts the servers and passes:
//   MPIGATE_ENDPOINT_FILE      the endpoint file of the server on a Unix socket (MPIGATE_ENDPOINT,
//                              MPIGATE_TOKEN and MPIGATE_TLS_* are unset)
//   MPIGATE_TLS_ENDPOINT_FILE  the endpoint file of the server on TCP with TLS, which requires a
//                              client certificate: its target, token=... and tls=1
//   MPIGATE_TEST_CERTS         the directory of tests/shell/make_test_certs.sh's certificates
//                              (ca.pem signed the server's and client.pem; other_ca.pem nothing)
//   MPIGATE_NODE_CLIENT        client/node/mpigate.js in the source tree, next to its node_modules
//   MPIGATE_PROTO_DIR          the test's runfiles' proto/
// The server on the Unix socket runs with --max-tasks-per-worker=1, so that a worker busy with one
// task holds no other: the tasks queued behind two running ones are certain to be cancellable.
//
// The tests of each suite run one after another, in order, on one pool.
'use strict';

const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const {after, before, describe, test} = require('node:test');

const {assertRejects, awaitStatus, mpigate, protoDir} = require('./test_support');

const {Executor, MpigateError, codes} = mpigate;
const endpointFile = process.env.MPIGATE_ENDPOINT_FILE;
const tlsEndpointFile = process.env.MPIGATE_TLS_ENDPOINT_FILE;
const certs = process.env.MPIGATE_TEST_CERTS;

describe('the Node client against a real pool', () => {
  let ex;

  before(async () => {
    ex = await Executor.connect(undefined, {clientName: 'node_client_test main', protoDir});
  });

  after(async () => {
    // A test that failed before the last one: still leave no session behind.
    if (ex) await ex.shutdown({cancelFutures: true});
  });

  test(
      'the endpoint comes from the argument, then $MPIGATE_ENDPOINT, then the endpoint file',
      () => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mpigate-node-endpoint-'));
        try {
          const file = path.join(dir, 'endpoint');
          fs.writeFileSync(file, 'unix:/from/the/file.sock\n');
          fs.mkdirSync(path.join(dir, 'run'));
          fs.writeFileSync(path.join(dir, 'run', 'endpoint'), 'unix:/from/the/run/dir.sock\n');
          const env = {MPIGATE_ENDPOINT: 'unix:/from/env.sock', MPIGATE_ENDPOINT_FILE: file};
          assert.equal(mpigate.resolveEndpoint('unix:/explicit.sock', env), 'unix:/explicit.sock');
          assert.equal(mpigate.resolveEndpoint(undefined, env), 'unix:/from/env.sock');
          assert.equal(
              mpigate.resolveEndpoint('', {MPIGATE_ENDPOINT_FILE: file}),
              'unix:/from/the/file.sock');
          assert.equal(
              mpigate.resolveEndpoint(undefined, {MPIGATE_RUN_DIR: path.join(dir, 'run')}),
              'unix:/from/the/run/dir.sock');
          assert.equal(mpigate.defaultRunDir({}), `/tmp/mpigate-${os.userInfo().uid}`);
          assert.throws(
              () => mpigate.resolveEndpoint(
                  undefined, {MPIGATE_ENDPOINT_FILE: path.join(dir, 'none')}),
              (error) => error.code === codes.NOT_FOUND &&
                  /no endpoint file at .*none\b/.test(error.message) &&
                  error.message.includes('MPIGATE_ENDPOINT'));
          fs.writeFileSync(file, '\n');
          assert.throws(
              () => mpigate.resolveEndpoint(undefined, {MPIGATE_ENDPOINT_FILE: file}),
              (error) => error.code === codes.NOT_FOUND && error.message.includes('is empty'));
        } finally {
          fs.rmSync(dir, {recursive: true, force: true});
        }
      });

  test('a TCP endpoint file gives the target on its first line and the token', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mpigate-node-endpoint-'));
    try {
      const file = path.join(dir, 'endpoint');
      fs.writeFileSync(file, 'node7:50051\ntoken=abc123\ntls=1\n');
      const env = {MPIGATE_ENDPOINT_FILE: file};
      assert.equal(mpigate.resolveEndpoint(undefined, env), 'node7:50051');
      assert.deepEqual(
          mpigate.resolveAccess(undefined, {env}),
          {target: 'node7:50051', token: 'abc123', tls: true, tlsCa: '', tlsCert: '', tlsKey: ''});
      // $MPIGATE_TOKEN, then an explicit token, win; an explicit target takes no file token.
      assert.equal(
          mpigate.resolveAccess(undefined, {env: {...env, MPIGATE_TOKEN: 'e'}}).token, 'e');
      assert.equal(mpigate.resolveAccess(undefined, {token: 'x', env}).token, 'x');
      assert.equal(mpigate.resolveAccess('node8:1', {env}).token, '');
    } finally {
      fs.rmSync(dir, {recursive: true, force: true});
    }
  });

  test('connect() finds the pool through $MPIGATE_ENDPOINT_FILE and opens a session', () => {
    assert.equal(ex.endpoint, fs.readFileSync(endpointFile, 'utf8').trim());
    assert.match(ex.endpoint, /^unix:\/.*\/s\.sock$/);
    assert.ok(ex.sessionId > 0);
    assert.equal(ex.workers, 2);
    assert.equal(ex.poolState, 'POOL_STATE_READY');
  });

  test('submit() carries bytes both ways through echo', async () => {
    const everyByte = Buffer.from(Array.from({length: 256}, (_, i) => i));
    const large = crypto.randomBytes(1 << 20);
    const [bytes, empty, text, big] = await Promise.all([
      ex.submit('echo', everyByte),
      ex.submit('echo', Buffer.alloc(0)),
      ex.submit('echo', 'héllo'),
      ex.submit('echo', large),
    ]);
    assert.ok(Buffer.isBuffer(bytes));
    assert.deepEqual(bytes, everyByte);
    assert.equal(empty.length, 0);
    assert.equal(text.toString('utf8'), 'héllo');
    assert.ok(big.equals(large), 'the 1 MiB echo differs');
  });

  test('map() with a chunksize sends one task per chunk and keeps input order', async () => {
    const items = Array.from({length: 100}, (_, i) => `item ${i}`);
    const before = await ex.status();
    const results = await ex.map('echo', items, {chunksize: 7});
    const afterwards = await ex.status();
    assert.deepEqual(results.map(String), items);
    // 100 items in chunks of 7: 15 tasks, the last of 2 items.
    assert.equal(afterwards.tasksSucceeded - before.tasksSucceeded, 15);
    assert.deepEqual(await ex.map('echo', []), []);
    assert.deepEqual((await ex.map('echo', ['a', 'b', 'c'])).map(String), ['a', 'b', 'c']);
    await assertRejects(ex.map('echo', items, {chunksize: 0}), codes.INVALID_ARGUMENT, 'chunksize');
  });

  test('an unknown function is rejected with NOT_FOUND', async () => {
    await assertRejects(
        ex.submit('no_such_function', 'x'), codes.NOT_FOUND, '\'no_such_function\'');
    await assertRejects(
        ex.map('no_such_function', ['x', 'y'], {chunksize: 1}), codes.NOT_FOUND,
        'no_such_function');
    // The session goes on.
    assert.equal(String(await ex.submit('echo', 'still here')), 'still here');
  });

  test('a built-in that fails carries its code and message back', async () => {
    const failed = ex.submit('fail', 'it went wrong on purpose');
    await assertRejects(failed, codes.UNKNOWN, 'it went wrong on purpose');
    await failed.catch((error) => assert.ok(error.taskId > 0));
    await assertRejects(
        ex.submit('getenv', 'MPIGATE_NODE_TEST_UNSET_VARIABLE'), codes.NOT_FOUND,
        'MPIGATE_NODE_TEST_UNSET_VARIABLE');
    assert.ok((await ex.submit('getenv', 'PATH')).length > 0, 'the workers have no PATH');
    // The first failed item of a map, in input order, rejects the map and says which it was.
    const map = ex.map('fail', ['first', 'second', 'third'], {chunksize: 2});
    await assertRejects(map, codes.UNKNOWN, 'first');
    await map.catch((error) => assert.equal(error.itemIndex, 0));
    const mixed = ex.map(
        'getenv', ['PATH', 'PATH', 'PATH', 'MPIGATE_NODE_TEST_UNSET_VARIABLE'], {chunksize: 2});
    await assertRejects(mixed, codes.NOT_FOUND, 'MPIGATE_NODE_TEST_UNSET_VARIABLE');
    await mixed.catch((error) => assert.equal(error.itemIndex, 3));
  });

  test('an executor\'s taskEnv reaches its tasks and no others', async () => {
    const withEnv = await Executor.connect(
        undefined,
        {clientName: 'node env', protoDir, taskEnv: {MPIGATE_NODE_TEST_VAR: 'from env'}});
    try {
      for (let i = 0; i < 4; ++i) {
        assert.equal(
            String(await withEnv.submit('getenv', 'MPIGATE_NODE_TEST_VAR')), 'from env');
        await assertRejects(
            ex.submit('getenv', 'MPIGATE_NODE_TEST_VAR'), codes.NOT_FOUND,
            'MPIGATE_NODE_TEST_VAR');
      }
    } finally {
      await withEnv.shutdown();
    }
  });

  test('an executor\'s maxRunningTasks caps its session, as the pool status shows', async () => {
    const capped = await Executor.connect(
        undefined, {clientName: 'node capped', protoDir, maxRunningTasks: 1});
    try {
      const sessions = (await ex.status()).sessionList;
      assert.equal(
          sessions.find((session) => session.sessionId === capped.sessionId).maxRunningTasks, 1);
      assert.equal(
          sessions.find((session) => session.sessionId === ex.sessionId).maxRunningTasks, 0);
      assert.deepEqual(
          (await Promise.all([capped.submit('echo', 'a'), capped.submit('echo', 'b')])).map(String),
          ['a', 'b']);
    } finally {
      await capped.shutdown();
    }
  });

  test('run() goes through the unary Run call', async () => {
    assert.equal(String(await ex.run('echo', 'one call')), 'one call');
    await assertRejects(ex.run('fail', 'unary failure'), codes.UNKNOWN, 'unary failure');
    await assertRejects(ex.run('no_such_function', ''), codes.NOT_FOUND, 'no_such_function');
    // And on a connection of its own, found through the endpoint file.
    assert.equal(
        String(await mpigate.run('echo', Buffer.from('standalone'), {protoDir})), 'standalone');
  });

  test('status() is the pool status of GetPoolStatus', async () => {
    const status = await ex.status();
    assert.equal(status.workers, 2);
    assert.equal(status.state, 'POOL_STATE_READY');
    assert.equal(status.draining, false);
    assert.ok(status.uptimeMs > 0);
    assert.ok(status.tasksSucceeded >= 15);
    assert.ok(status.tasksFailed >= 2);
    const names = status.functions.map((f) => f.name);
    for (const name of ['echo', 'fail', 'getenv', 'sleep', 'spin']) {
      assert.ok(names.includes(name), name);
    }
    const ours = status.sessionList.find((session) => session.sessionId === ex.sessionId);
    assert.ok(ours, 'our session is not in the status');
    assert.equal(ours.clientName, 'node_client_test main');
    assert.deepEqual((await ex.listFunctions()).map((f) => f.name), names);
    assert.equal((await mpigate.status({protoDir})).workers, 2);
  });

  test('concurrent submits from one executor and from two', async () => {
    const other =
        await Executor.connect(undefined, {clientName: 'node_client_test other', protoDir});
    try {
      assert.notEqual(other.sessionId, ex.sessionId);
      const count = 500;
      const mine = Array.from({length: count}, (_, i) => ex.submit('echo', `mine ${i}`));
      const theirs = Array.from({length: count}, (_, i) => other.submit('echo', `theirs ${i}`));
      const maps =
          [ex.map('echo', ['m0', 'm1', 'm2'], {chunksize: 2}), other.map('echo', ['t0', 't1'])];
      const [a, b, c] =
          await Promise.all([Promise.all(mine), Promise.all(theirs), Promise.all(maps)]);
      a.forEach((result, i) => assert.equal(String(result), `mine ${i}`));
      b.forEach((result, i) => assert.equal(String(result), `theirs ${i}`));
      assert.deepEqual(c.map((results) => results.map(String)), [['m0', 'm1', 'm2'], ['t0', 't1']]);
    } finally {
      await other.shutdown();
    }
  });

  test(
      'shutdown({cancelFutures}) cancels queued tasks; cancel() interrupts running ones',
      async () => {
        const session =
            await Executor.connect(undefined, {clientName: 'node_client_test cancel', protoDir});
        // Both workers busy for a minute each, one task apiece (--max-tasks-per-worker=1)...
        const sleeps = [session.submit('sleep', '60000'), session.submit('sleep', '60000')];
        sleeps.forEach((sleep) => sleep.catch(() => {}));
        await awaitStatus(() => session.status(), (status) => status.busyWorkers === 2);
        // ...so these wait in the queue, until the shutdown cancels them.
        const queued =
            [session.submit('echo', 'q0'), session.map('echo', ['q1', 'q2'], {chunksize: 2})];
        queued.forEach((task) => task.catch(() => {}));
        const shutdown = session.shutdown({cancelFutures: true});
        for (const task of queued) await assertRejects(task, codes.CANCELLED);
        // Running tasks are not cancelled by a shutdown; interrupting makes `sleep` end CANCELLED.
        for (const sleep of sleeps) {
          assert.deepEqual(
              await session.cancel(sleep, {interruptRunning: true}),
              {cancelled: false, interrupted: true});
        }
        for (const sleep of sleeps) await assertRejects(sleep, codes.CANCELLED);
        await shutdown;
        await assertRejects(
            session.submit('echo', 'late'), codes.FAILED_PRECONDITION, 'after shutdown');
      });

  test(
      'shutdown() waits for every task, is safe to repeat, and refuses later submits', async () => {
        const settled = [];
        const tasks =
            Array.from({length: 20}, (_, i) => ex.submit('echo', `last ${i}`).then((result) => {
              settled.push(String(result));
            }));
        await ex.shutdown();
        assert.equal(settled.length, 20, 'shutdown() resolved before every task had its outcome');
        await Promise.all(tasks);
        await ex.shutdown();
        await ex.shutdown({cancelFutures: true});
        await assertRejects(ex.submit('echo', 'late'), codes.FAILED_PRECONDITION, 'after shutdown');
        await assertRejects(ex.map('echo', ['late']), codes.FAILED_PRECONDITION, 'after shutdown');
        // The connection is closed: unary calls go through the module's own.
        await assertRejects(ex.status(), codes.FAILED_PRECONDITION, 'module\'s run(), status()');
        // The session is gone from the service; the service goes on.
        assert.equal(String(await mpigate.run('echo', 'after', {protoDir})), 'after');
        const status = await mpigate.status({protoDir});
        assert.equal(
            status.sessionList.find((session) => session.sessionId === ex.sessionId), undefined);
      });
});

describe('the Node client over TLS', () => {
  const caFile = () => path.join(certs, 'ca.pem');
  // Reaches the TLS server through its endpoint file alone, as a user's script on another node
  // would: the target, the token and tls=1 come from it.
  const viaTlsFile = (options) =>
      ({protoDir, env: {MPIGATE_ENDPOINT_FILE: tlsEndpointFile}, ...options});
  const clientCert = () =>
      ({tlsCert: path.join(certs, 'client.pem'), tlsKey: path.join(certs, 'client.key')});

  test('resolveAccess() speaks TLS when the endpoint file says tls=1 or a CA is given', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mpigate-node-endpoint-'));
    try {
      const tlsFile = path.join(dir, 'tls_endpoint');
      const plainFile = path.join(dir, 'plain_endpoint');
      fs.writeFileSync(tlsFile, 'node7:50051\ntoken=abc123\ntls=1\n');
      fs.writeFileSync(plainFile, 'node7:50051\ntoken=abc123\n');
      const tlsEnv = {MPIGATE_ENDPOINT_FILE: tlsFile};
      const plainEnv = {MPIGATE_ENDPOINT_FILE: plainFile};
      assert.equal(mpigate.resolveAccess(undefined, {env: tlsEnv}).tls, true);
      assert.equal(mpigate.resolveAccess(undefined, {env: plainEnv}).tls, false);
      assert.equal(mpigate.resolveAccess('node8:1', {env: plainEnv}).tls, false);
      // The file's tls=1 holds for the file's target only.
      assert.equal(mpigate.resolveAccess('node8:1', {env: tlsEnv}).tls, false);
      assert.equal(
          mpigate.resolveAccess(undefined, {env: {...tlsEnv, MPIGATE_ENDPOINT: 'node8:1'}}).tls,
          false);
      // A CA, given or from $MPIGATE_TLS_CA, means TLS whatever the target.
      assert.equal(mpigate.resolveAccess(undefined, {tlsCa: 'ca.pem', env: plainEnv}).tls, true);
      const fromEnv = mpigate.resolveAccess(
          'node8:1', {env: {MPIGATE_TLS_CA: 'e.pem', MPIGATE_TLS_CERT: 'c', MPIGATE_TLS_KEY: 'k'}});
      assert.deepEqual(
          fromEnv,
          {target: 'node8:1', token: '', tls: true, tlsCa: 'e.pem', tlsCert: 'c', tlsKey: 'k'});
      // Options win over the environment.
      const given = mpigate.resolveAccess('node8:1', {
        tlsCa: 'o.pem',
        tlsCert: 'oc',
        tlsKey: 'ok',
        env: {MPIGATE_TLS_CA: 'e.pem', MPIGATE_TLS_CERT: 'c', MPIGATE_TLS_KEY: 'k'},
      });
      assert.deepEqual([given.tlsCa, given.tlsCert, given.tlsKey], ['o.pem', 'oc', 'ok']);
    } finally {
      fs.rmSync(dir, {recursive: true, force: true});
    }
  });

  test('channelCredentials() reads the PEM it is given and says which it cannot', () => {
    const access = {target: 'node8:1', token: '', tlsCa: '', tlsCert: '', tlsKey: ''};
    assert.equal(mpigate.channelCredentials({...access, tls: false})._isSecure(), false);
    // TLS without a CA: verified against the system's roots.
    assert.equal(mpigate.channelCredentials({...access, tls: true})._isSecure(), true);
    // PEM as text works as a path does.
    const caText = fs.readFileSync(caFile(), 'utf8');
    assert.equal(
        mpigate.channelCredentials({...access, tls: true, tlsCa: caText})._isSecure(), true);
    const missing = path.join(certs, 'no_such.pem');
    assert.throws(
        () => mpigate.channelCredentials({...access, tls: true, tlsCa: missing}),
        (error) => error instanceof MpigateError && error.code === codes.NOT_FOUND &&
            error.details.startsWith(`cannot read TLS CA certificate ${missing}: `));
    assert.throws(
        () => mpigate.channelCredentials(
            {...access, tls: true, tlsCa: caFile(), ...clientCert(), tlsKey: missing}),
        (error) => error.code === codes.NOT_FOUND &&
            error.details.startsWith(`cannot read TLS client key ${missing}: `));
    const notPem = path.join(certs, 'server.ext');
    assert.throws(
        () => mpigate.channelCredentials({...access, tls: true, tlsCa: notPem}),
        (error) => error.code === codes.INVALID_ARGUMENT &&
            error.details === `TLS CA certificate ${notPem} holds no PEM`);
  });

  test(
      'with the CA and a client certificate, tasks run over TLS with the file\'s token',
      async () => {
        const ex = await Executor.connect(
            undefined,
            viaTlsFile({clientName: 'node_client_test tls', tlsCa: caFile(), ...clientCert()}));
        try {
          const lines = fs.readFileSync(tlsEndpointFile, 'utf8').split('\n');
          assert.match(lines[0], /^127\.0\.0\.1:[1-9][0-9]*$/);
          assert.ok(lines.includes('tls=1'), 'the TLS server\'s endpoint file has no tls=1');
          // The target as the endpoint file gives it.
          assert.equal(ex.endpoint, lines[0]);
          assert.equal(ex.workers, 1);
          assert.equal(String(await ex.submit('echo', 'over TLS')), 'over TLS');
          assert.deepEqual((await ex.map('echo', ['a', 'b'])).map(String), ['a', 'b']);
        } finally {
          await ex.shutdown();
        }
        // The unary calls on connections of their own, with the certificates as PEM text.
        const asText = {
          tlsCa: fs.readFileSync(caFile(), 'utf8'),
          tlsCert: fs.readFileSync(clientCert().tlsCert, 'utf8'),
          tlsKey: fs.readFileSync(clientCert().tlsKey, 'utf8'),
        };
        assert.equal(String(await mpigate.run('echo', 'unary', viaTlsFile(asText))), 'unary');
        assert.equal((await mpigate.status(viaTlsFile(asText))).workers, 1);
      });

  test('the token still counts over TLS: a wrong one is UNAUTHENTICATED', async () => {
    await assertRejects(
        mpigate.run(
            'echo', 'x', viaTlsFile({tlsCa: caFile(), ...clientCert(), token: 'not-the-token'})),
        codes.UNAUTHENTICATED, 'wrong token');
  });

  test('a CA that did not sign the server\'s certificate fails with UNAVAILABLE', async () => {
    await assertRejects(
        Executor.connect(undefined, viaTlsFile({
                           tlsCa: path.join(certs, 'other_ca.pem'),
                           ...clientCert(),
                           connectTimeoutMs: 1000,
                         })),
        codes.UNAVAILABLE);
  });

  test('without a client certificate the server refuses: UNAVAILABLE', async () => {
    await assertRejects(
        Executor.connect(undefined, viaTlsFile({tlsCa: caFile(), connectTimeoutMs: 1000})),
        codes.UNAVAILABLE);
  });

  test(
      'a client certificate without its key, or a key without its certificate, is refused',
      async () => {
        const {tlsCert, tlsKey} = clientCert();
        await assertRejects(
            Executor.connect(undefined, viaTlsFile({tlsCa: caFile(), tlsCert})),
            codes.INVALID_ARGUMENT, 'needs its key, and a key its certificate (tlsCert/tlsKey');
        await assertRejects(
            mpigate.run('echo', 'x', viaTlsFile({
                          tlsCa: caFile(),
                          env: {
                            MPIGATE_ENDPOINT_FILE: tlsEndpointFile,
                            MPIGATE_TLS_KEY: tlsKey,
                          }
                        })),
            codes.INVALID_ARGUMENT, 'MPIGATE_TLS_CERT/MPIGATE_TLS_KEY');
      });
});
