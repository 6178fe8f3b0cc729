#include "worker/death_note.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace mpigate::worker {
namespace {

// Written once by ArmDeathNote, before any handler can run; read by the handlers.
char note_path[4096] = {};
std::atomic<bool> exit_armed{false};

constexpr int kFatalSignals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};

// Only async-signal-safe calls from here on: these run in a signal handler or mid-exit.
const char* SignalName(int signal_number) {
  switch (signal_number) {
    case SIGSEGV:
      return "SIGSEGV";
    case SIGBUS:
      return "SIGBUS";
    case SIGFPE:
      return "SIGFPE";
    case SIGILL:
      return "SIGILL";
    case SIGABRT:
      return "SIGABRT";
    default:
      return "?";
  }
}

// Appends `text` to `buffer` (of `size` bytes, `used` so far), cutting it short if it must.
void Append(char* buffer, size_t size, size_t& used, const char* text) {
  while (*text != '\0' && used + 1 < size) buffer[used++] = *text++;
}

void AppendNumber(char* buffer, size_t size, size_t& used, int value) {
  char digits[16];
  int count = 0;
  unsigned magnitude = value < 0 ? 0u - static_cast<unsigned>(value) : static_cast<unsigned>(value);
  do {
    digits[count++] = static_cast<char>('0' + magnitude % 10);
    magnitude /= 10;
  } while (magnitude > 0 && count < 15);
  if (value < 0) Append(buffer, size, used, "-");
  while (count > 0 && used + 1 < size) buffer[used++] = digits[--count];
}

void WriteNote(const char* text, size_t length) {
  if (note_path[0] == '\0') return;
  const int fd = open(note_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return;
  while (length > 0) {
    const ssize_t written = write(fd, text, length);
    if (written <= 0) break;
    text += written;
    length -= static_cast<size_t>(written);
  }
  close(fd);
}

void OnFatalSignal(int signal_number) {
  char note[128];
  size_t used = 0;
  Append(note, sizeof(note), used, "killed by signal ");
  AppendNumber(note, sizeof(note), used, signal_number);
  Append(note, sizeof(note), used, " (");
  Append(note, sizeof(note), used, SignalName(signal_number));
  Append(note, sizeof(note), used, ")");
  WriteNote(note, used);
  // SA_RESETHAND put the default action back: the process ends by the signal, as it would have.
  raise(signal_number);
}

void OnExit(int status, void*) {
  if (!exit_armed.load(std::memory_order_acquire)) return;
  char note[128];
  size_t used = 0;
  Append(note, sizeof(note), used, "exited with status ");
  AppendNumber(note, sizeof(note), used, status);
  Append(note, sizeof(note), used, " from task code (exit() outside the worker's loop)");
  WriteNote(note, used);
  _exit(status == 0 ? 1 : status);
}

}  // namespace

void ArmDeathNote(const std::string& path) {
  if (path.size() < sizeof(note_path)) std::memcpy(note_path, path.c_str(), path.size() + 1);
  struct sigaction action = {};
  action.sa_handler = OnFatalSignal;
  action.sa_flags = SA_RESETHAND | SA_NODEFER;
  sigemptyset(&action.sa_mask);
  for (const int signal_number : kFatalSignals) sigaction(signal_number, &action, nullptr);
  exit_armed.store(true, std::memory_order_release);
  on_exit(OnExit, nullptr);
}

void DisarmDeathNote() { exit_armed.store(false, std::memory_order_release); }

}  // namespace mpigate::worker
