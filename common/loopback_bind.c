// C rather than C++: the preload library built from this file goes into orted, a C program, and
// brings no C++ runtime with it.
#define _GNU_SOURCE
#include "common/loopback_bind.h"

#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>

typedef int (*BindFunction)(int, const struct sockaddr*, socklen_t);
typedef int (*SocketFunction)(int, int, int);

static atomic_int rewrite_wildcards;

void MpigateSetLoopbackBind(int on) { atomic_store(&rewrite_wildcards, on != 0); }

// The function of this name that this file stands in front of. Looked up on each call until
// found: the dynamic linker has every library of the process loaded by the first call, whichever
// constructor or thread makes it (a race only looks it up twice, with the same result).
static void* Next(const char* name, void* _Atomic* cache) {
  void* found = atomic_load_explicit(cache, memory_order_acquire);
  if (found == NULL) {
    found = dlsym(RTLD_NEXT, name);
    atomic_store_explicit(cache, found, memory_order_release);
  }
  return found;
}

static BindFunction NextBind(void) {
  static void* _Atomic cache;
  return (BindFunction)Next("bind", &cache);
}

static SocketFunction NextSocket(void) {
  static void* _Atomic cache;
  return (SocketFunction)Next("socket", &cache);
}

static int IsStreamSocket(int fd) {
  int type = 0;
  socklen_t length = sizeof(type);
  return getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &length) == 0 && type == SOCK_STREAM;
}

int socket(int domain, int type, int protocol) {
  SocketFunction next = NextSocket();
  if (next == NULL) {
    errno = ENOSYS;
    return -1;
  }
  // IPv6 TCP is refused, as on a host without IPv6, rather than bound to ::1: Open MPI's
  // point-to-point layer gives up TCP altogether when its IPv6 listener cannot be bound (on a host
  // whose loopback has no ::1, say), but carries on without one when IPv6 is missing.
  if (atomic_load_explicit(&rewrite_wildcards, memory_order_relaxed) && domain == AF_INET6 &&
      (type & 0xf) == SOCK_STREAM) {
    errno = EAFNOSUPPORT;
    return -1;
  }
  return next(domain, type, protocol);
}

int bind(int fd, const struct sockaddr* address, socklen_t length) {
  BindFunction next = NextBind();
  if (next == NULL) {
    errno = ENOSYS;
    return -1;
  }
  if (atomic_load_explicit(&rewrite_wildcards, memory_order_relaxed) && address != NULL &&
      address->sa_family == AF_INET && length >= sizeof(struct sockaddr_in)) {
    struct sockaddr_in v4;
    memcpy(&v4, address, sizeof(v4));
    if (v4.sin_addr.s_addr == htonl(INADDR_ANY) && IsStreamSocket(fd)) {
      v4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      return next(fd, (const struct sockaddr*)&v4, sizeof(v4));
    }
  }
  return next(fd, address, length);
}
