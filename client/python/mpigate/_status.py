"""The pool's status (GetPoolStatus), on a connection of its own.

PoolStatus (proto/mpigate/v1/gateway.proto) says, besides the pool's size and load, whether it
is degraded: workers_down (workers out of service: their process was lost and is not replaced
yet) and degraded_reason (why, e.g. "1 of 2 workers out of service; worker 1 on node7 (pid 4711)
was lost: ...; replacements are starting"; empty while the pool is whole).
"""

import grpc

from mpigate.v1 import gateway_pb2
from mpigate.v1 import gateway_pb2_grpc


def pool_status(access, timeout):
    """The PoolStatus of the service `access` (an _endpoint.Access) names, within `timeout`
    seconds. Raises ConnectionError if the service cannot be asked (with gRPC's code and
    message)."""
    if access.tls:
        credentials = grpc.ssl_channel_credentials(
            access.root_certificates, access.private_key, access.certificate_chain)
        channel = grpc.secure_channel(access.target, credentials)
    else:
        channel = grpc.insecure_channel(access.target)
    metadata = [("authorization", f"Bearer {access.token}")] if access.token else None
    with channel:
        try:
            return gateway_pb2_grpc.GatewayStub(channel).GetPoolStatus(
                gateway_pb2.GetPoolStatusRequest(), timeout=timeout, metadata=metadata)
        except grpc.RpcError as error:
            raise ConnectionError(f"cannot ask {access.target} for the pool's status: "
                                  f"{error.code().name}: {error.details()}") from None
