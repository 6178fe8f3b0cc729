// The `mpigate` command line: its commands, their flags and arguments, and their usage texts.
//
//   absl::StatusOr<CommandLine> parsed = ParseCommandLine({"map", "echo", "--chunksize=8", "-"});
//   if (!parsed.ok()) { /* INVALID_ARGUMENT, its message naming the command's --help */ }
//   if (parsed->help) std::fputs(UsageText(parsed->command).c_str(), stdout);
//
// Parsing is pure: it reads no file, no environment and no terminal, so every rule here is unit
// tested. Flags take `--flag=VALUE` or `--flag VALUE`; `--` ends the flags (so a payload may start
// with a dash); a lone `-` is an argument (stdin). The global flags (--endpoint,
// --connect-timeout) may come before or after the command word. `serve` passes everything after
// it to mpigate-server untouched, but for --help/-h.
//
// Thread-safety: pure functions.
#ifndef MPIGATE_CLI_COMMAND_LINE_H_
#define MPIGATE_CLI_COMMAND_LINE_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace mpigate::cli {

enum class Command {
  kNone,  // No command word: only `mpigate --help` is valid.
  kServe,
  kSubmit,
  kMap,
  kStatus,
  kShutdown,
  kTop,
};

// The command's name as typed ("map"); "" for kNone.
absl::string_view CommandName(Command command);

// How long to wait for the service to answer when nothing says otherwise.
inline constexpr absl::Duration kDefaultConnectTimeout = absl::Seconds(10);

// What the user asked for. Fields a command does not take keep their defaults.
struct CommandLine {
  Command command = Command::kNone;
  // --help or -h (anywhere before `--`), or `mpigate help [COMMAND]`: print UsageText(command) to
  // stdout and do nothing else.
  bool help = false;

  // Global: the service's gRPC target; empty: $MPIGATE_ENDPOINT, else the endpoint file.
  std::string endpoint;
  // Global: how long to wait for the service to answer (connect, status, shutdown).
  absl::Duration connect_timeout = kDefaultConnectTimeout;
  // Global: the file holding the bearer token of a service on TCP (a file rather than the token
  // itself, which every user of the machine could read in the process list). Empty:
  // $MPIGATE_TOKEN, else the endpoint file's.
  std::string token_file;
  // Global: TLS, as ClientAccessOptions of common/access.h: the CA to trust, and a client
  // certificate and its key (PEM files). Empty: $MPIGATE_TLS_CA, _CERT, _KEY.
  std::string tls_ca;
  std::string tls_cert;
  std::string tls_key;

  // submit, map: the registered function to run.
  std::string function;
  // submit: the payload; nullopt (no argument, or `-`): read from stdin.
  std::optional<std::string> payload;
  // map: the file whose lines are the items; "-": stdin.
  std::string input_path = "-";
  // map: items per task (mpi4py's chunksize).
  int chunksize = 1;
  // map: write results as they complete instead of in input order.
  bool unordered = false;
  // submit, map: how long to wait for the result(s), counted from the submission.
  absl::Duration timeout = absl::InfiniteDuration();
  // map: no progress and no summary on stderr (failed items are still reported).
  bool quiet = false;

  // status: print PoolStatus as JSON instead of a table.
  bool json = false;

  // top: print one frame, without terminal control, and exit.
  bool once = false;
  // top: how often to redraw.
  absl::Duration interval = absl::Seconds(1);

  // shutdown: why, for the service's log and for the cancellation messages of its clients.
  std::string reason;

  // serve: the arguments for mpigate-server, as given.
  std::vector<std::string> server_args;
};

// Parses the arguments after the program name. INVALID_ARGUMENT, with a message that says what is
// wrong and which --help to read, for anything that is not a valid command line.
absl::StatusOr<CommandLine> ParseCommandLine(const std::vector<std::string>& args);

// A duration flag's value: an absl duration ("30s", "500ms", "1m30s") or a bare number of
// seconds ("2.5"); "inf" is no limit. INVALID_ARGUMENT for anything else, and for a value that is
// not above zero.
absl::StatusOr<absl::Duration> ParseDurationFlag(absl::string_view flag, absl::string_view value);

// The usage text of `command` (kNone: the whole program), ending with a newline.
std::string UsageText(Command command);

}  // namespace mpigate::cli

#endif  // MPIGATE_CLI_COMMAND_LINE_H_
