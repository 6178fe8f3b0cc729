// The commands of `mpigate`, each run to its end: what they read (stdin, a file), what they print
// (data on stdout, diagnostics prefixed "mpigate: " on stderr) and the exit code they return
// (cli/exit_codes.h). cli/main.cc parses the command line and calls one of them.
//
// `submit` and `map` go through the C++ client library (//client: one session, submissions
// batched onto its stream); `status` and `shutdown` are one raw Gateway call each, `top` one per
// frame; `serve` execs mpigate-server.
//
// Thread-safety: each is called once, from the main thread, and may start threads of its own
// (the client library's; map's progress redraw) that it joins before returning.
#ifndef MPIGATE_CLI_COMMANDS_H_
#define MPIGATE_CLI_COMMANDS_H_

#include "cli/command_line.h"

namespace mpigate::cli {

// Becomes mpigate-server with `line.server_args`; returns only if it cannot (kExitError).
int RunServe(const CommandLine& line);

int RunSubmit(const CommandLine& line);

int RunMap(const CommandLine& line);

int RunStatus(const CommandLine& line);

int RunShutdown(const CommandLine& line);

// Needs a terminal unless `line.once`.
int RunTop(const CommandLine& line);

}  // namespace mpigate::cli

#endif  // MPIGATE_CLI_COMMANDS_H_
