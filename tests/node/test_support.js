// What the Node client's tests share: the client under test (MPIGATE_NODE_CLIENT), the proto
// directory (MPIGATE_PROTO_DIR), both set by node_test_lib.sh's run_node_test, and assertions.
'use strict';

const assert = require('node:assert/strict');

const mpigate = require(process.env.MPIGATE_NODE_CLIENT);

// Asserts that `promise` rejects with an MpigateError of `code` whose message contains `text`.
async function assertRejects(promise, code, text = '') {
  await assert.rejects(promise, (error) => {
    assert.ok(error instanceof mpigate.MpigateError, `not an MpigateError: ${error}`);
    assert.equal(error.code, code, error.message);
    assert.equal(
        error.codeName, Object.keys(mpigate.codes).find((name) => mpigate.codes[name] === code));
    assert.ok(error.details.includes(text), `"${error.details}" does not contain "${text}"`);
    return true;
  });
}

// Asks for the pool's status (`ask()`, e.g. () => executor.status()) until `done` holds for it,
// as tests/server_process.cc's AwaitPoolStatus: each answer is a round trip to the scheduler, no
// sleep in between. Returns that status.
async function awaitStatus(ask, done, attempts = 100000) {
  let status;
  for (let attempt = 0; attempt < attempts; ++attempt) {
    status = await ask();
    if (done(status)) return status;
  }
  assert.fail(`the pool status never showed what the test waited for: ${JSON.stringify(status)}`);
}

module.exports = {
  mpigate,
  protoDir : process.env.MPIGATE_PROTO_DIR, assertRejects, awaitStatus
};
