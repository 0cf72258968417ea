#!/usr/bin/env python3
"""A NodeLifecycle client in Python grpcio, as an operator would write one.

Stubs are generated at run time from the project's .proto with grpcio-tools
(as the RouteControl client does);
the channel is opened on the agent's Unix socket (``unix://PATH``, default
options).

Usage: lifecycle_client.py SOCKET (get | drain | undo)

Prints the LifecycleStatus the call returns as one JSON object on stdout.
Exits 1 with the gRPC error on stderr when the call fails.
"""

import json
import sys
import tempfile

import grpc

from routecontrol_client import compile_stubs


def load_stubs(out_dir):
    compile_stubs(out_dir, "novanet/routing/v1/lifecycle.proto")
    from novanet.routing.v1 import lifecycle_pb2, lifecycle_pb2_grpc  # noqa: E402
    return lifecycle_pb2, lifecycle_pb2_grpc


def main():
    socket, what = sys.argv[1:3]
    with tempfile.TemporaryDirectory() as out_dir:
        pb, rpc = load_stubs(out_dir)
        with grpc.insecure_channel(f"unix://{socket}") as channel:
            stub = rpc.NodeLifecycleStub(channel)
            try:
                if what == "get":
                    status = stub.GetLifecycle(pb.GetLifecycleRequest(), timeout=10)
                else:
                    status = stub.Drain(pb.DrainRequest(undo=(what == "undo")), timeout=10)
            except grpc.RpcError as e:
                sys.exit(f"{what}: {e.code()} {e.details()}")
    print(json.dumps({
        "draining": status.draining,
        "drain_cause": status.drain_cause,
        "draining_since": status.draining_since,
        "on_sigterm": status.on_sigterm,
        "on_sigterm_reason": status.on_sigterm_reason,
    }), flush=True)


if __name__ == "__main__":
    main()
