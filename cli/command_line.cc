#include "cli/command_line.h"

#include <cmath>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace mpigate::cli {
namespace {

struct FlagSpec {
  absl::string_view name;  // Without the dashes.
  bool takes_value;
  // The one command that takes it; kNone: a global flag, taken by every command but serve.
  Command command;
};

constexpr FlagSpec kFlags[] = {
    {"endpoint", true, Command::kNone},   {"connect-timeout", true, Command::kNone},
    {"token-file", true, Command::kNone}, {"tls-ca", true, Command::kNone},
    {"tls-cert", true, Command::kNone},   {"tls-key", true, Command::kNone},
    {"timeout", true, Command::kSubmit},  {"chunksize", true, Command::kMap},
    {"unordered", false, Command::kMap},  {"timeout", true, Command::kMap},
    {"quiet", false, Command::kMap},      {"json", false, Command::kStatus},
    {"reason", true, Command::kShutdown}, {"once", false, Command::kTop},
    {"interval", true, Command::kTop},
};

// A flag as given, before the command that must take it is known.
struct GivenFlag {
  std::string name;
  std::optional<std::string> value;
};

const FlagSpec* FindFlag(absl::string_view name, Command command) {
  const FlagSpec* other_command = nullptr;
  for (const FlagSpec& spec : kFlags) {
    if (spec.name != name) continue;
    if (spec.command == Command::kNone || spec.command == command) return &spec;
    other_command = &spec;
  }
  return other_command;
}

std::optional<Command> CommandNamed(absl::string_view word) {
  for (Command command : {Command::kServe, Command::kSubmit, Command::kMap, Command::kStatus,
                          Command::kShutdown, Command::kTop}) {
    if (CommandName(command) == word) return command;
  }
  return std::nullopt;
}

absl::Status UsageError(Command command, absl::string_view message) {
  if (command == Command::kNone) {
    return absl::InvalidArgumentError(absl::StrCat(message, " (see `mpigate --help`)"));
  }
  const absl::string_view name = CommandName(command);
  return absl::InvalidArgumentError(
      absl::StrCat(name, ": ", message, " (see `mpigate ", name, " --help`)"));
}

bool IsHelpFlag(absl::string_view arg) { return arg == "--help" || arg == "-h"; }

// Everything after `serve`: the server's, but for a help flag before a `--`, after which
// everything is the server's verbatim (`mpigate serve -- --help` shows the server's own flags).
void ParseServeArgs(const std::vector<std::string>& args, size_t first, CommandLine& line) {
  bool verbatim = false;
  for (size_t i = first; i < args.size(); ++i) {
    if (!verbatim && args[i] == "--") {
      verbatim = true;
      continue;
    }
    if (!verbatim && IsHelpFlag(args[i])) line.help = true;
    line.server_args.push_back(args[i]);
  }
}

absl::Status ApplyFlag(const GivenFlag& flag, CommandLine& line) {
  const std::string value = flag.value.value_or("");
  const auto duration = [&]() -> absl::StatusOr<absl::Duration> {
    absl::StatusOr<absl::Duration> parsed = ParseDurationFlag(flag.name, value);
    if (!parsed.ok()) return UsageError(line.command, parsed.status().message());
    return parsed;
  };
  if (flag.name == "endpoint") {
    if (value.empty()) return UsageError(line.command, "--endpoint needs a gRPC target");
    line.endpoint = value;
  } else if (flag.name == "token-file" || flag.name == "tls-ca" || flag.name == "tls-cert" ||
             flag.name == "tls-key") {
    if (value.empty()) {
      return UsageError(line.command, absl::StrCat("--", flag.name, " needs a file's path"));
    }
    std::string& path = flag.name == "token-file" ? line.token_file
                        : flag.name == "tls-ca"   ? line.tls_ca
                        : flag.name == "tls-cert" ? line.tls_cert
                                                  : line.tls_key;
    path = value;
  } else if (flag.name == "connect-timeout") {
    absl::StatusOr<absl::Duration> parsed = duration();
    if (!parsed.ok()) return parsed.status();
    line.connect_timeout = *parsed;
  } else if (flag.name == "timeout") {
    absl::StatusOr<absl::Duration> parsed = duration();
    if (!parsed.ok()) return parsed.status();
    line.timeout = *parsed;
  } else if (flag.name == "chunksize") {
    if (!absl::SimpleAtoi(value, &line.chunksize) || line.chunksize < 1) {
      return UsageError(
          line.command,
          absl::StrCat("--chunksize must be a whole number of at least 1, got '", value, "'"));
    }
  } else if (flag.name == "unordered") {
    line.unordered = true;
  } else if (flag.name == "quiet") {
    line.quiet = true;
  } else if (flag.name == "json") {
    line.json = true;
  } else if (flag.name == "reason") {
    line.reason = value;
  } else if (flag.name == "once") {
    line.once = true;
  } else if (flag.name == "interval") {
    absl::StatusOr<absl::Duration> parsed = duration();
    if (!parsed.ok()) return parsed.status();
    line.interval = *parsed;
  }
  return absl::OkStatus();
}

absl::Status ApplyArguments(const std::vector<std::string>& arguments, CommandLine& line) {
  const auto count_error = [&](absl::string_view expected) {
    return UsageError(line.command, absl::StrCat("expects ", expected, ", got ", arguments.size(),
                                                 " argument", arguments.size() == 1 ? "" : "s"));
  };
  switch (line.command) {
    case Command::kSubmit:
    case Command::kMap:
      if (arguments.empty() || arguments.size() > 2) {
        return count_error(line.command == Command::kSubmit ? "FUNCTION [PAYLOAD|-]"
                                                            : "FUNCTION [FILE|-]");
      }
      if (arguments[0].empty()) return UsageError(line.command, "FUNCTION must not be empty");
      line.function = arguments[0];
      if (line.command == Command::kSubmit) {
        if (arguments.size() == 2 && arguments[1] != "-") line.payload = arguments[1];
      } else if (arguments.size() == 2) {
        if (arguments[1].empty()) return UsageError(line.command, "FILE must not be empty");
        line.input_path = arguments[1];
      }
      return absl::OkStatus();
    case Command::kStatus:
    case Command::kShutdown:
    case Command::kTop:
      if (!arguments.empty()) return count_error("no arguments");
      return absl::OkStatus();
    case Command::kServe:
    case Command::kNone:
      return absl::OkStatus();
  }
  return absl::OkStatus();
}

}  // namespace

absl::string_view CommandName(Command command) {
  switch (command) {
    case Command::kNone:
      return "";
    case Command::kServe:
      return "serve";
    case Command::kSubmit:
      return "submit";
    case Command::kMap:
      return "map";
    case Command::kStatus:
      return "status";
    case Command::kShutdown:
      return "shutdown";
    case Command::kTop:
      return "top";
  }
  return "";
}

absl::StatusOr<absl::Duration> ParseDurationFlag(absl::string_view flag, absl::string_view value) {
  absl::Duration duration;
  double seconds = 0;
  if (absl::SimpleAtod(value, &seconds)) {
    if (std::isnan(seconds)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", flag, " must be a number, got '", value, "'"));
    }
    duration = absl::Seconds(seconds);
  } else if (!absl::ParseDuration(value, &duration)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--", flag, " must be a duration such as 500ms, 30s or 2m, got '", value, "'"));
  }
  if (duration <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, " must be above zero, got '", value, "'"));
  }
  return duration;
}

absl::StatusOr<CommandLine> ParseCommandLine(const std::vector<std::string>& args) {
  CommandLine line;
  bool command_known = false;
  bool flags_ended = false;
  std::vector<GivenFlag> flags;
  std::vector<std::string> arguments;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    const bool is_flag = !flags_ended && absl::StartsWith(arg, "-") && arg != "-";
    if (!is_flag && !command_known) {
      // The command word.
      if (arg == "help") {
        line.help = true;
        if (i + 1 < args.size()) {
          std::optional<Command> topic = CommandNamed(args[i + 1]);
          if (!topic.has_value()) {
            return UsageError(Command::kNone, absl::StrCat("no such command '", args[i + 1], "'"));
          }
          line.command = *topic;
        }
        if (i + 2 < args.size()) return UsageError(Command::kNone, "help takes one COMMAND");
        return line;
      }
      std::optional<Command> command = CommandNamed(arg);
      if (!command.has_value()) {
        return UsageError(Command::kNone, absl::StrCat("no such command '", arg, "'"));
      }
      line.command = *command;
      command_known = true;
      if (line.command == Command::kServe) {
        ParseServeArgs(args, i + 1, line);
        break;
      }
      continue;
    }
    if (!is_flag) {
      arguments.push_back(arg);
      continue;
    }
    if (arg == "--") {
      flags_ended = true;
      continue;
    }
    if (IsHelpFlag(arg)) {
      line.help = true;
      continue;
    }
    if (arg == "-q") {
      flags.push_back({"quiet", std::nullopt});
      continue;
    }
    if (!absl::StartsWith(arg, "--")) {
      return UsageError(line.command, absl::StrCat("no such flag '", arg, "'"));
    }
    GivenFlag flag;
    const absl::string_view body = absl::string_view(arg).substr(2);
    const size_t equals = body.find('=');
    flag.name = std::string(body.substr(0, equals));
    if (equals != absl::string_view::npos) flag.value = std::string(body.substr(equals + 1));
    // Whether it takes a value does not depend on the command: every flag of a name agrees.
    const FlagSpec* spec = FindFlag(flag.name, Command::kNone);
    if (spec == nullptr) {
      return UsageError(line.command, absl::StrCat("no such flag '--", flag.name, "'"));
    }
    if (spec->takes_value && !flag.value.has_value()) {
      if (i + 1 == args.size()) {
        return UsageError(line.command, absl::StrCat("--", flag.name, " needs a value"));
      }
      flag.value = args[++i];
    } else if (!spec->takes_value && flag.value.has_value()) {
      return UsageError(line.command, absl::StrCat("--", flag.name, " takes no value"));
    }
    flags.push_back(std::move(flag));
  }
  // Help wins over everything but an unknown command: `mpigate map --help` needs no FUNCTION.
  if (line.help) return line;
  if (line.command == Command::kNone) return UsageError(Command::kNone, "no command given");
  for (const GivenFlag& flag : flags) {
    const FlagSpec* spec = FindFlag(flag.name, line.command);
    const bool global = spec->command == Command::kNone;
    if (line.command == Command::kServe) {
      // Only flags before the word reach here; after it they are the server's.
      return UsageError(line.command, absl::StrCat("--", flag.name,
                                                   " is a client flag; put the server's flags "
                                                   "after `serve`"));
    }
    if (!global && spec->command != line.command) {
      return UsageError(line.command, absl::StrCat("takes no --", flag.name));
    }
    if (absl::Status status = ApplyFlag(flag, line); !status.ok()) return status;
  }
  if (absl::Status status = ApplyArguments(arguments, line); !status.ok()) return status;
  return line;
}

std::string UsageText(Command command) {
  constexpr absl::string_view kDurations =
      "\nD is a duration such as 500ms, 30s or 2m, or a number of seconds; inf: no limit.\n";
  switch (command) {
    case Command::kNone:
      return absl::StrCat(
          "Usage: mpigate [--endpoint=TARGET] [--connect-timeout=D] [ACCESS FLAGS] COMMAND "
          "[ARGS...]\n"
          "\n"
          "The command line of mpigate, a persistent pool of MPI workers behind a gRPC gateway.\n"
          "\n"
          "Commands:\n"
          "  serve [SERVER FLAGS...]    run the service (mpigate-server) in this process\n"
          "  submit FUNCTION [PAYLOAD]  run one task; its result bytes go to stdout\n"
          "  map FUNCTION [FILE|-]      run FUNCTION on every line of FILE or stdin; results one\n"
          "                             per line, progress on stderr\n"
          "  status                     workers, queues, sessions, tasks/s, uptime, functions\n"
          "  top                        the pool live: workers, sessions, tasks/s, failures\n"
          "  shutdown                   drain and stop the service\n"
          "  help [COMMAND]             this text, or a command's (as COMMAND --help)\n"
          "\n"
          "Global flags (before or after the command; not for serve):\n"
          "  --endpoint=TARGET    the service's gRPC target, e.g. unix:/tmp/mpigate-1000/"
          "gateway.sock\n"
          "                       or node12:50051; default $MPIGATE_ENDPOINT, else the "
          "endpoint file\n"
          "                       ($MPIGATE_ENDPOINT_FILE, else $MPIGATE_RUN_DIR/endpoint)\n"
          "  --connect-timeout=D  how long to wait for the service to answer (default 10s)\n"
          "  -h, --help           print usage and exit 0\n"
          "\n"
          "Access flags (global), for a service on TCP; each defaults to its variable:\n"
          "  --token-file=FILE    the bearer token ($MPIGATE_TOKEN, else the endpoint file's)\n"
          "  --tls-ca=FILE        speak TLS, trusting this CA ($MPIGATE_TLS_CA; without it, TLS\n"
          "                       when the endpoint file says tls=1, with the system's roots)\n"
          "  --tls-cert=FILE      a client certificate, for a service that asks for one\n"
          "  --tls-key=FILE       its key ($MPIGATE_TLS_CERT, $MPIGATE_TLS_KEY)\n",
          kDurations,
          "\n"
          "Exit codes:\n"
          "  0  success\n"
          "  1  the task, or at least one item of a map, failed\n"
          "  2  usage error\n"
          "  3  service unavailable: no endpoint known, nothing listening, no answer in time,\n"
          "     draining, or the connection lost\n"
          "  4  any other error: unreadable input, unwritable output, no mpigate-server found\n"
          "  130  interrupted by SIGINT or SIGTERM (submit, map): the tasks not started were\n"
          "       cancelled and the running ones killed\n");
    case Command::kServe:
      return "Usage: mpigate serve [SERVER FLAGS...] [-- SERVER ARGS...]\n"
             "\n"
             "Runs the service: this process becomes mpigate-server (exec), with the flags given,\n"
             "e.g. `mpigate serve --workers=4 --listen=:50051`. Every flag after `serve` is the\n"
             "server's (see README.md, or `mpigate serve -- --help` for the server's own list);\n"
             "everything after `--` goes to it verbatim.\n"
             "\n"
             "The server binary is $MPIGATE_SERVER, else mpigate-server next to this program\n"
             "(installed side by side, or Bazel's bazel-bin/server/mpigate-server).\n"
             "\n"
             "Exit codes: those of mpigate-server; 4 if it cannot be found or started.\n";
    case Command::kSubmit:
      return absl::StrCat(
          "Usage: mpigate submit [--timeout=D] FUNCTION [PAYLOAD|-]\n"
          "\n"
          "Runs FUNCTION once on PAYLOAD (read from stdin when absent or -) and writes its\n"
          "result bytes to stdout as they are, with no newline added. A failure is reported on\n"
          "stderr as `mpigate: FUNCTION failed: CODE: message`.\n"
          "\n"
          "Flags:\n"
          "  --timeout=D  stop waiting after D: the task is cancelled, or killed if it runs,\n"
          "               and fails with DEADLINE_EXCEEDED\n",
          kDurations,
          "\n"
          "SIGINT (Ctrl-C) or SIGTERM while the task runs cancels it, or kills it if it runs,\n"
          "prints `mpigate: interrupted: 0 of 1 items done` on stderr and exits 130; a second\n"
          "signal exits at once, without waiting for the task to end.\n"
          "\n"
          "Exit codes: 0 the task succeeded; 1 it failed; 2 usage error; 3 service unavailable\n"
          "(also a task that failed UNAVAILABLE); 4 other error; 130 interrupted.\n");
    case Command::kMap:
      return absl::StrCat(
          "Usage: mpigate map [--chunksize=N] [--unordered] [--timeout=D] [--quiet]\n"
          "                   FUNCTION [FILE|-]\n"
          "\n"
          "Runs FUNCTION on every line of FILE (stdin when absent or -), each line without its\n"
          "newline one item, and writes every result to stdout followed by a newline. All of\n"
          "the input is read before the first task is submitted.\n"
          "\n"
          "Results come in input order: a failed item leaves an empty line, so that line N of\n"
          "the output answers line N of the input. With --unordered they come as they complete\n"
          "(a chunk's together, in order) and a failed item leaves none. Each failure is\n"
          "reported on stderr as `mpigate: line N: CODE: message`, and the map goes on: every\n"
          "item, of any chunk, is run and answered.\n"
          "\n"
          "Progress goes to stderr: on a terminal (with stdout elsewhere), a bar redrawn in\n"
          "place at most 10 times a second (done/total, failed, items/s, ETA); otherwise a\n"
          "plain line every 10 seconds. A summary line ends the run.\n"
          "\n"
          "SIGINT (Ctrl-C) or SIGTERM while the items run cancels the tasks not started and\n"
          "kills the running ones, then prints `mpigate: interrupted: N of M items done` on\n"
          "stderr (N: the items already reported) and exits 130; a second signal exits at\n"
          "once, without waiting for the tasks to end.\n"
          "\n"
          "Flags:\n"
          "  --chunksize=N  items per task (default 1): fewer round trips for small items\n"
          "  --unordered    write results as they complete\n"
          "  --timeout=D    the whole map's time limit, from the submission: items not done by\n"
          "                 then fail with DEADLINE_EXCEEDED and their tasks are cancelled\n"
          "                 (running ones killed)\n"
          "  -q, --quiet    no progress and no summary\n",
          kDurations,
          "\n"
          "Exit codes: 0 every item succeeded; 1 at least one failed; 2 usage error; 3 service\n"
          "unavailable (also an item that failed UNAVAILABLE); 4 other error; 130 interrupted.\n");
    case Command::kStatus:
      return "Usage: mpigate status [--json]\n"
             "\n"
             "Prints the pool's state (and why, when broken or draining), workers busy and idle,\n"
             "queued tasks, each open session's queued and running tasks, tasks ended per second\n"
             "over the last 10 s, uptime, tasks succeeded, failed and cancelled, and the\n"
             "registered functions.\n"
             "\n"
             "Flags:\n"
             "  --json  print the PoolStatus message (proto/mpigate/v1/gateway.proto) as JSON\n"
             "\n"
             "Exit codes: 0 printed; 2 usage error; 3 service unavailable; 4 other error.\n";
    case Command::kTop:
      return absl::StrCat(
          "Usage: mpigate top [--once] [--interval=D]\n"
          "\n"
          "The pool live, redrawn in place on the terminal: its state (and why), workers busy,\n"
          "idle and down, queued tasks, tasks/s with the last minute as a sparkline; each\n"
          "worker (host, pid, runner pid, the function and session of its task and for how\n"
          "long, tasks done and failed), busiest first; each session (client, queued,\n"
          "running, done, failed, tasks/s), busiest first; run time quantiles by function;\n"
          "the latest failures with their messages. Rows that do not fit are left out.\n"
          "Press q (or Ctrl-C) to quit.\n"
          "\n"
          "Flags:\n"
          "  --once        print one frame to stdout, without terminal control, and exit\n"
          "  --interval=D  how often to ask the service (default 1s)\n",
          kDurations,
          "\n"
          "Exit codes: 0 quit (or printed); 2 usage error; 3 service unavailable (also when it\n"
          "goes away while watched); 4 other error (e.g. no terminal without --once).\n");
    case Command::kShutdown:
      return "Usage: mpigate shutdown [--reason=TEXT]\n"
             "\n"
             "Stops the service as SIGTERM does: it accepts no new tasks, cancels queued ones,\n"
             "lets running ones finish within its drain grace period, and exits. Returns once\n"
             "the drain has begun.\n"
             "\n"
             "Flags:\n"
             "  --reason=TEXT  why: in the service's log and its clients' cancellation messages\n"
             "\n"
             "Exit codes: 0 the service is stopping; 2 usage error; 3 service unavailable;\n"
             "4 other error.\n";
  }
  return "";
}

}  // namespace mpigate::cli
