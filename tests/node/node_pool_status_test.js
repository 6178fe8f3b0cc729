// The Node client's status() on a pool that loses a worker (issue 24): PoolStatus's workersDown
// and degradedReason say it is degraded, naming the lost worker's pid, while workers stays the
// pool's size, and whole again once it is. Run by node_pool_status_test.sh, which starts a server
// with 2 workers whose replacements wait before their hello while MPIGATE_STALL_FILE exists (so
// that the degraded pool stays degraded while the test looks), and passes:
//   MPIGATE_ENDPOINT_FILE  the server's endpoint file
//   MPIGATE_SERVER_PID     the server's pid
//   MPIGATE_STALL_FILE     the file that holds replacements before their hello
//   MPIGATE_NODE_CLIENT, MPIGATE_PROTO_DIR  as for node_client_test.js
'use strict';

const assert = require('node:assert/strict');
const fs = require('node:fs');
const {test} = require('node:test');

const {awaitStatus, mpigate, protoDir} = require('./test_support');

const serverPid = Number(process.env.MPIGATE_SERVER_PID);
const stallFile = process.env.MPIGATE_STALL_FILE;

// The mpigate-worker processes among `pid`'s descendants.
function workerPids(pid) {
  const found = [];
  const pending = [pid];
  while (pending.length > 0) {
    const parent = pending.pop();
    // Each thread's children apart: the gateway's MPI thread started Open MPI's daemon.
    let children = [];
    try {
      for (const thread of fs.readdirSync(`/proc/${parent}/task`)) {
        children =
            children.concat(fs.readFileSync(`/proc/${parent}/task/${thread}/children`, 'ascii')
                                .split(/\s+/)
                                .filter((word) => word !== '')
                                .map(Number));
      }
    } catch (error) {
      continue;
    }
    for (const child of children) {
      try {
        if (fs.readFileSync(`/proc/${child}/comm`, 'ascii').trim() === 'mpigate-worker') {
          found.push(child);
        }
      } catch (error) {
        continue;
      }
      pending.push(child);
    }
  }
  return found;
}

test('status() says the pool is degraded while a lost worker is replaced', async () => {
  const ex = await mpigate.Executor.connect(undefined, {clientName: 'pool status', protoDir});
  try {
    let status = await ex.status();
    assert.equal(status.workers, 2);
    assert.equal(status.workersDown, 0);
    assert.equal(status.degradedReason, '');

    fs.writeFileSync(stallFile, 'stall\n');
    const victim = workerPids(serverPid)[0];
    process.kill(victim, 'SIGKILL');
    status = await awaitStatus(() => ex.status(), (s) => s.workersDown === 1);
    assert.equal(status.workers, 2);
    assert.match(
        status.degradedReason,
        new RegExp(
            `^1 of 2 workers out of service; worker [01] on .* \\(pid ${victim}\\) was lost: `));
    assert.equal((await mpigate.status({protoDir})).workersDown, 1);

    fs.unlinkSync(stallFile);
    await awaitStatus(() => ex.status(), (s) => s.workersDown === 0 && s.degradedReason === '');
  } finally {
    await ex.shutdown();
  }
});
