// The bind(2) that keeps wildcard TCP listeners on loopback: the C core of loopback_listeners.h,
// shared by the library our binaries link and by the preload library for Open MPI's daemon.
//
// This defines bind() itself, so that Open MPI's calls (and every other caller's in the process)
// reach it first; it passes each call on to the next bind in the lookup order (libc's, or a
// sanitizer's interceptor), changed only while rewriting is on: then a SOCK_STREAM socket bound to
// 0.0.0.0 is bound to 127.0.0.1 instead, and one bound to :: to ::1. Any port, and every other
// address, socket type and family pass through unchanged.
//
// Thread-safety: any thread may call bind() and MpigateSetLoopbackBind(); a bind() that runs
// while rewriting is switched on or off may see either setting.
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
