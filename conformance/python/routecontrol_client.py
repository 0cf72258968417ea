#!/usr/bin/env python3
"""A RouteControl client in Python grpcio, as an operator would write one.

Stubs are generated at run time from the project's reference .proto with
grpcio-tools. The channel is opened on the agent's Unix socket exactly as the
grpcio documentation shows (``unix://PATH``, default options), or with the
socket path as the authority the way grpc-java and other clients send it
(``--authority path``).

Usage: routecontrol_client.py SOCKET OWNER TOKEN PREFIX [--authority path] [--peer ADDRESS]

Registers OWNER, opens an event stream, advertises PREFIX, reads the status,
tries an OSPF interface name carrying a command, asks for a BGP peer (with
BFD, timers left to the node) at PEER if given and reads its state until it
settles, removes it, withdraws PREFIX and prints one JSON object per step on
stdout. Exits 1 with
the gRPC error on stderr when any call fails.
"""

import json
import os
import sys
import tempfile
import threading

import grpc
from grpc_tools import protoc

PROTO_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "proto", "proto")


def compile_stubs(out_dir, proto):
    """Generates the Python stubs of one of the project's .proto files
    (a path under proto/proto) into out_dir, importable from there."""
    rc = protoc.main([
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        proto,
    ])
    if rc != 0:
        sys.exit(f"protoc failed with {rc}")
    sys.path.insert(0, out_dir)


def load_stubs(out_dir):
    compile_stubs(out_dir, "novaroute/v1/novaroute.proto")
    from novaroute.v1 import novaroute_pb2, novaroute_pb2_grpc  # noqa: E402
    return novaroute_pb2, novaroute_pb2_grpc


def emit(step, **fields):
    print(json.dumps({"step": step, **fields}), flush=True)


def main():
    args = sys.argv[1:]
    authority_path = "--authority" in args and args[args.index("--authority") + 1] == "path"
    peer = args[args.index("--peer") + 1] if "--peer" in args else None
    socket, owner, token, prefix = args[:4]
    with tempfile.TemporaryDirectory() as out_dir:
        pb, rpc = load_stubs(out_dir)
        options = [("grpc.default_authority", socket)] if authority_path else []
        with grpc.insecure_channel(f"unix://{socket}", options=options) as channel:
            stub = rpc.RouteControlStub(channel)
            try:
                run(pb, stub, owner, token, prefix, peer)
            except grpc.RpcError as e:
                print(f"{e.code().name}: {e.details()}", file=sys.stderr)
                sys.exit(1)


def run(pb, stub, owner, token, prefix, peer):
    reg = stub.Register(pb.RegisterRequest(owner=owner, token=token), timeout=10)
    emit("register", session_id=reg.session_id)

    events = stub.StreamEvents(pb.StreamEventsRequest(owner_filter=owner, event_types=["prefix_advertised"]))
    # Subscribed once the headers are here: the advertisement cannot pass
    # the stream by.
    events.initial_metadata()
    seen = threading.Event()
    got = {}

    def read_events():
        try:
            for ev in events:
                if ev.metadata.get("prefix") == prefix or prefix in ev.detail:
                    got["event"] = pb.EventType.Name(ev.type)
                    seen.set()
                    return
        except grpc.RpcError:
            seen.set()

    reader = threading.Thread(target=read_events, daemon=True)
    reader.start()

    stub.AdvertisePrefix(pb.AdvertisePrefixRequest(owner=owner, token=token, prefix=prefix, protocol=pb.PROTOCOL_BGP), timeout=10)
    emit("advertise", prefix=prefix)
    if not seen.wait(40):
        sys.exit("no PREFIX_ADVERTISED event within 40 s")
    emit("event", type=got.get("event", ""))
    events.cancel()

    status = stub.GetStatus(pb.GetStatusRequest(owner_filter=owner), timeout=10)
    emit("status", prefixes=[{"prefix": p.prefix, "state": p.state, "owner": p.owner} for p in status.prefixes])

    try:
        stub.AdvertisePrefix(pb.AdvertisePrefixRequest(owner=owner, token="not-the-token", prefix=prefix, protocol=pb.PROTOCOL_BGP), timeout=10)
        emit("bad_token", code="OK")
    except grpc.RpcError as e:
        emit("bad_token", code=e.code().name)

    # A command smuggled into an OSPF interface name never gets through.
    try:
        stub.EnableOSPF(pb.EnableOSPFRequest(owner=owner, token=token, interface_name="eth0\nrouter bgp 1", area_id="0"), timeout=10)
        emit("smuggled", code="OK")
    except grpc.RpcError as e:
        emit("smuggled", code=e.code().name, details=e.details())

    if peer:
        stub.ApplyPeer(pb.ApplyPeerRequest(owner=owner, token=token, peer=pb.BGPPeer(
            neighbor_address=peer, remote_as=65000, bfd_enabled=True)), timeout=10)
        # Applied asynchronously: read the state until it is no longer
        # "configured" (bounded).
        state, bfd = "", []
        for _ in range(200):
            status = stub.GetStatus(pb.GetStatusRequest(owner_filter=owner), timeout=10)
            mine = [p for p in status.peers if p.neighbor_address == peer and p.owner == owner]
            state = mine[0].state if mine else ""
            bfd = [(b.min_rx_ms, b.min_tx_ms, b.detect_multiplier) for b in status.bfd_sessions
                   if b.peer_address == peer and b.owner == owner]
            if state and state != "configured":
                break
            threading.Event().wait(0.1)
        emit("peer", state=state, bfd=bfd)
        stub.RemovePeer(pb.RemovePeerRequest(owner=owner, token=token, neighbor_address=peer), timeout=10)
        status = stub.GetStatus(pb.GetStatusRequest(owner_filter=owner), timeout=10)
        emit("peer_removed", left=[p.neighbor_address for p in status.peers if p.owner == owner])

    stub.WithdrawPrefix(pb.WithdrawPrefixRequest(owner=owner, token=token, prefix=prefix, protocol=pb.PROTOCOL_BGP), timeout=10)
    emit("withdraw", prefix=prefix)


if __name__ == "__main__":
    main()
