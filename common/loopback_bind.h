// The bind(2) and socket(2) that keep TCP listeners on loopback: the C core of
// loopback_listeners.h, shared by the library our binaries link and by the preload library for
// Open MPI's daemon.
//
// This defines bind() and socket() themselves, so that Open MPI's calls (and every other caller's
// in the process) reach them first; each passes the call on to the next function of its name in
// the lookup order (libc's, or a sanitizer's interceptor), changed only while rewriting is on:
// then a TCP socket bound to 0.0.0.0 is bound to 127.0.0.1 instead (any port), and an IPv6 TCP
// socket cannot be created (EAFNOSUPPORT, as on a host without IPv6). Every other address, socket
// type and family passes through unchanged.
//
// Thread-safety: any thread may call these and MpigateSetLoopbackBind(); a call that runs while
// rewriting is switched on or off may see either setting.
#ifndef MPIGATE_COMMON_LOOPBACK_BIND_H_
#define MPIGATE_COMMON_LOOPBACK_BIND_H_

#ifdef __cplusplus
extern "C" {
#endif

// Switches the rewriting on (nonzero) or off (0); off at start.
void MpigateSetLoopbackBind(int on);

#ifdef __cplusplus
}
#endif

#endif  // MPIGATE_COMMON_LOOPBACK_BIND_H_
