#!/bin/sh
# An rsh agent for Open MPI (--mca plm_rsh_agent) that "logs in" to a test host made of a network
# namespace: netns_rsh.sh [OPTIONS] HOST COMMAND...
#
# HOST is one of the hosts' addresses; $MPIGATE_NETNS_HOSTS maps them, as "ADDR=NAMESPACE=HOSTNAME"
# words, to a namespace and the host name it has there. The command (a shell command line, as ssh
# would pass it) runs inside the namespace with a UTS namespace of its own named HOSTNAME, so that
# Open MPI and mpigate see distinct hosts. Options before HOST (ssh's) are ignored.
set -eu
while [ $# -gt 0 ]; do
  case "$1" in
    -*) shift ;;
    *) break ;;
  esac
done
[ $# -ge 2 ] || { echo "netns_rsh.sh: usage: netns_rsh.sh HOST COMMAND..." >&2; exit 2; }
host="$1"
shift
for entry in ${MPIGATE_NETNS_HOSTS:-}; do
  addr="${entry%%=*}"
  rest="${entry#*=}"
  if [ "$addr" = "$host" ]; then
    ns="${rest%%=*}"
    name="${rest#*=}"
    # shellcheck disable=SC2016  # expanded by the inner shell
    exec ip netns exec "$ns" unshare --uts /bin/sh -c 'hostname "$1" && shift && eval "$*"' \
      netns_rsh "$name" "$@"
  fi
done
echo "netns_rsh.sh: unknown host ${host} (MPIGATE_NETNS_HOSTS: ${MPIGATE_NETNS_HOSTS:-unset})" >&2
exit 255
