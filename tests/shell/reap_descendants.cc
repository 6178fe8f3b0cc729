// reap_descendants: runs a command as a child subreaper and, once it has exited, waits for every
// process it left behind.
//
//   reap_descendants COMMAND [ARG...]
//
// A shell test that starts mpigate-server cannot wait for the server's own descendants (the MPI
// singleton's daemon, the workers): when the server exits they are reparented, and the shell
// never hears of them. Under this program they are reparented to it instead
// (PR_SET_CHILD_SUBREAPER, which the command's execve keeps for this process), so "no process left
// behind" is checked by waiting for each of them to exit on its own, as tests/server_process.cc
// does, not by polling. A descendant that never exits keeps this waiting until the test's timeout.
//
// Exits with the command's exit status (128 + the signal if a signal killed it).
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: reap_descendants COMMAND [ARG...]\n");
    return 2;
  }
  if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
    std::fprintf(stderr, "reap_descendants: prctl: %s\n", std::strerror(errno));
    return 1;
  }
  const pid_t command = fork();
  if (command < 0) {
    std::fprintf(stderr, "reap_descendants: fork: %s\n", std::strerror(errno));
    return 1;
  }
  if (command == 0) {
    execvp(argv[1], argv + 1);
    std::fprintf(stderr, "reap_descendants: cannot run %s: %s\n", argv[1], std::strerror(errno));
    _exit(127);
  }
  int exit_code = 1;
  int reaped = 0;
  int wait_status = 0;
  // Every child, the command and whatever was reparented to us, until there are none.
  for (;;) {
    const pid_t pid = waitpid(-1, &wait_status, 0);
    if (pid < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (pid != command) {
      ++reaped;
      continue;
    }
    if (WIFEXITED(wait_status)) exit_code = WEXITSTATUS(wait_status);
    if (WIFSIGNALED(wait_status)) exit_code = 128 + WTERMSIG(wait_status);
  }
  if (reaped > 0) {
    std::fprintf(stderr,
                 "reap_descendants: waited for %d process%s the command left behind, until %s\n",
                 reaped, reaped == 1 ? "" : "es", reaped == 1 ? "it exited" : "they exited");
  }
  return exit_code;
}
