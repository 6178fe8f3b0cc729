#!/usr/bin/env node
// An example of mpigate's Node client against a running pool:
//
//   bazel-bin/server/mpigate-server &      # prints a ready line when it serves
//   node client/node/example.js            # finds it through its endpoint file
//   node client/node/example.js unix:/tmp/mpigate-0/gateway.sock   # or at a target
//
// One session: an echo, a map in chunks, a sum over many concurrent tasks, two errors carried
// back, the unary Run and the pool's status, then a clean shutdown.
'use strict';

const {Executor} = require('./mpigate');

async function main() {
  const ex = await Executor.connect(process.argv[2], {clientName: `example.js pid ${process.pid}`});
  console.log(`connected to ${ex.endpoint}: session ${ex.sessionId}, ${ex.workers} workers, ${
      ex.poolState}`);
  try {
    const hello = await ex.submit('echo', Buffer.from('hello from node'));
    console.log(`echo: ${hello}`);

    const squares =
        await ex.map('echo', Array.from({length: 10}, (_, i) => String(i * i)), {chunksize: 4});
    console.log(`map (chunksize 4): ${squares.join(' ')}`);

    const started = process.hrtime.bigint();
    const results =
        await Promise.all(Array.from({length: 1000}, (_, i) => ex.submit('echo', String(i))));
    const sum = results.reduce((total, result) => total + Number(result), 0);
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    console.log(`1000 concurrent submits: sum ${sum} in ${ms.toFixed(1)} ms`);

    for (const [fn, payload] of [['fail', 'a task that fails'], ['no_such_function', '']]) {
      try {
        await ex.submit(fn, payload);
      } catch (error) {
        console.log(`${fn}: rejected with ${error.codeName} (${error.code}): ${error.details}`);
      }
    }

    console.log(`unary Run: ${await ex.run('getcwd', '')}`);
    const status = await ex.status();
    console.log(
        `pool: ${status.state}, ${status.workers} workers, ${status.sessions} sessions, ` +
        `${status.tasksSucceeded} tasks succeeded, ${status.tasksFailed} failed; functions: ` +
        status.functions.map((f) => f.name).join(', '));
  } finally {
    await ex.shutdown();
  }
}

main().catch((error) => {
  console.error(`example.js: ${error.message}`);
  process.exitCode = 1;
});
