// `mpigate top`: the pool live in a terminal, or one frame for scripts (--once). It asks the
// service for its PoolStatus (one GetPoolStatus call per frame, on one channel) and draws
// TopFrame (cli/top_view.h).
//
// On a terminal it draws on the alternate screen, each frame over the last from the top left
// corner (each line cleared to its end, then the rest of the screen), with the terminal's
// echo and line editing off so that one key is read at once: q (or Ctrl-C, which arrives as a
// key, or Ctrl-D) quits. SIGINT, SIGTERM and SIGHUP quit too, and SIGWINCH redraws at the new
// size: they are blocked and read from a signalfd, polled with the keyboard, so the terminal is
// always put back as it was.
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "cli/command_support.h"
#include "cli/commands.h"
#include "cli/exit_codes.h"
#include "cli/top_view.h"
#include "common/access.h"
#include "common/grpc_status.h"

namespace mpigate::cli {
namespace {

// Writes all of `text` to stdout; false if it cannot.
bool WriteOut(const std::string& text) {
  size_t written = 0;
  while (written < text.size()) {
    const ssize_t wrote = write(STDOUT_FILENO, text.data() + written, text.size() - written);
    if (wrote < 0 && errno == EINTR) continue;
    if (wrote <= 0) return false;
    written += static_cast<size_t>(wrote);
  }
  return true;
}

// The terminal's size; without one, $COLUMNS (else 1000) columns and 24 lines (--once: every
// line).
TopSize TerminalSize(bool once) {
  TopSize size;
  winsize window = {};
  if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &window) == 0 && window.ws_col > 0) {
    size.width = window.ws_col;
    if (!once && window.ws_row > 0) size.height = window.ws_row;
  } else {
    const char* columns = std::getenv("COLUMNS");
    int parsed = 0;
    // Not a terminal: a script's, whose lines are not cut unless $COLUMNS says so.
    size.width =
        columns != nullptr && absl::SimpleAtoi(columns, &parsed) && parsed > 0 ? parsed : 1000;
    if (!once) size.height = 24;
  }
  return size;
}

absl::StatusOr<v1::PoolStatus> GetStatus(const ServiceStub& service, absl::Duration timeout) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  AttachToken(context, service.token);
  v1::PoolStatus status;
  const absl::Status called =
      FromGrpcStatus(service.stub->GetPoolStatus(&context, v1::GetPoolStatusRequest(), &status));
  if (!called.ok()) return called;
  return status;
}

// One frame as the terminal draws it: from the top left, each line cleared to its end.
std::string Screen(const std::vector<std::string>& lines) {
  std::string screen = "\x1b[H";
  for (size_t i = 0; i < lines.size(); ++i) {
    absl::StrAppend(&screen, lines[i], "\x1b[K", i + 1 < lines.size() ? "\r\n" : "");
  }
  screen += "\x1b[J";
  return screen;
}

}  // namespace

int RunTop(const CommandLine& line) {
  const bool interactive = !line.once;
  if (interactive && (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO))) {
    PrintDiagnostic("top: needs a terminal (stdin and stdout); --once prints one frame");
    return kExitError;
  }
  // Blocked before any thread starts (gRPC's inherit the mask), and read from a signalfd.
  sigset_t signals;
  sigemptyset(&signals);
  for (const int signal_number : {SIGINT, SIGTERM, SIGHUP, SIGWINCH}) {
    sigaddset(&signals, signal_number);
  }
  int signal_fd = -1;
  if (interactive) {
    if (sigprocmask(SIG_BLOCK, &signals, nullptr) != 0 ||
        (signal_fd = signalfd(-1, &signals, SFD_CLOEXEC)) < 0) {
      PrintDiagnostic(absl::StrCat("top: cannot watch signals: ", std::strerror(errno)));
      return kExitError;
    }
  }
  const absl::Cleanup close_signals = [signal_fd] {
    if (signal_fd >= 0) close(signal_fd);
  };
  absl::StatusOr<ServiceStub> service = MakeServiceStub(line);
  if (!service.ok()) {
    PrintDiagnostic(absl::StrCat("cannot reach the service: ", StatusText(service.status())));
    return ExitCodeForServiceError(service.status());
  }
  if (!interactive) {
    absl::StatusOr<v1::PoolStatus> status = GetStatus(*service, line.connect_timeout);
    if (!status.ok()) {
      PrintDiagnostic(absl::StrCat("cannot get the status of ", service->target, ": ",
                                   StatusText(status.status())));
      return ExitCodeForServiceError(status.status());
    }
    std::string text;
    for (const std::string& frame_line :
         TopFrame(*status, service->target, TerminalSize(/*once=*/true), absl::Now())) {
      absl::StrAppend(&text, frame_line, "\n");
    }
    if (!WriteOut(text)) {
      PrintDiagnostic("top: cannot write to stdout");
      return kExitError;
    }
    return kExitSuccess;
  }

  termios saved = {};
  if (tcgetattr(STDIN_FILENO, &saved) != 0) {
    PrintDiagnostic(absl::StrCat("top: cannot read the terminal's mode: ", std::strerror(errno)));
    return kExitError;
  }
  termios raw = saved;
  // Keys one at a time, unechoed; Ctrl-C arrives as a key rather than as SIGINT.
  raw.c_lflag &= ~static_cast<tcflag_t>(ICANON | ECHO | ISIG);
  raw.c_cc[VMIN] = 1;
  raw.c_cc[VTIME] = 0;
  tcsetattr(STDIN_FILENO, TCSAFLUSH, &raw);
  // The alternate screen, without a cursor; all put back on the way out.
  WriteOut("\x1b[?1049h\x1b[?25l");
  absl::Cleanup restore = [&saved] {
    WriteOut("\x1b[?25h\x1b[?1049l");
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
  };

  absl::Status failure;
  while (true) {
    absl::StatusOr<v1::PoolStatus> status = GetStatus(*service, line.connect_timeout);
    if (!status.ok()) {
      failure = status.status();
      break;
    }
    const absl::Time drawn = absl::Now();
    WriteOut(Screen(TopFrame(*status, service->target, TerminalSize(/*once=*/false), drawn)));
    // Waits for the next frame's time, a key or a signal.
    bool redraw = false;
    while (!redraw) {
      const int64_t wait_ms =
          std::max<int64_t>(absl::ToInt64Milliseconds(drawn + line.interval - absl::Now()), 0);
      pollfd fds[2] = {{STDIN_FILENO, POLLIN, 0}, {signal_fd, POLLIN, 0}};
      const int ready =
          poll(fds, 2, line.interval == absl::InfiniteDuration() ? -1 : static_cast<int>(wait_ms));
      if (ready < 0 && errno == EINTR) continue;
      if (ready <= 0) break;
      if (fds[1].revents != 0) {
        signalfd_siginfo info = {};
        if (read(signal_fd, &info, sizeof(info)) == sizeof(info) && info.ssi_signo == SIGWINCH) {
          redraw = true;
          continue;
        }
        return kExitSuccess;
      }
      if (fds[0].revents != 0) {
        char key = 0;
        const ssize_t got = read(STDIN_FILENO, &key, 1);
        // q, Ctrl-C, Ctrl-D, or the terminal gone.
        if (got <= 0 || key == 'q' || key == 'Q' || key == 0x03 || key == 0x04) return kExitSuccess;
        redraw = true;
      }
    }
  }
  std::move(restore).Invoke();
  PrintDiagnostic(
      absl::StrCat("cannot get the status of ", service->target, ": ", StatusText(failure)));
  return ExitCodeForServiceError(failure);
}

}  // namespace mpigate::cli
