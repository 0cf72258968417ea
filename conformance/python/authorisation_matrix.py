#!/usr/bin/env python3
"""Every RouteControl RPC as each owner, from Python grpcio.

Usage: authorisation_matrix.py SOCKET PLAN_JSON

PLAN_JSON: {"bgp": {"local_as", "router_id"}, "owners": [{"name", "token",
"prefix", "peer", "peer_as", "bfd", "ospf"}], "extra": [{"owner", "token",
"rpc", "request"}]}. For each owner, in order: StreamEvents (the first
event it sees), Register, ConfigureBGP, ApplyPeer, RemovePeer,
AdvertisePrefix, WithdrawPrefix, EnableBFD, DisableBFD, EnableOSPF,
DisableOSPF, GetStatus, Deregister; then the extra calls (request fields as
in the .proto). Prints one JSON object per call: owner, rpc, code (gRPC
status name), details.
"""

import json
import sys
import tempfile

import grpc

from routecontrol_client import load_stubs


def emit(owner, rpc, code, details=""):
    print(json.dumps({"owner": owner, "rpc": rpc, "code": code, "details": details}), flush=True)


def call(owner, rpc, fn):
    try:
        fn()
        emit(owner, rpc, "OK")
    except grpc.RpcError as e:
        emit(owner, rpc, e.code().name, e.details() or "")


def for_owner(pb, stub, plan, o):
    name, token = o["name"], o["token"]
    auth = {"owner": name, "token": token}
    # A read RPC: the stream's first event is this owner's registration.
    events = stub.StreamEvents(pb.StreamEventsRequest(owner_filter=name), timeout=10)
    # The agent subscribes before it answers with headers: once they are
    # here, the registration below cannot pass the stream by.
    events.initial_metadata()
    call(name, "Register", lambda: stub.Register(pb.RegisterRequest(**auth), timeout=10))
    try:
        first = next(events)
        emit(name, "StreamEvents", "OK", pb.EventType.Name(first.type))
    except grpc.RpcError as e:
        emit(name, "StreamEvents", e.code().name, e.details() or "")
    events.cancel()
    bgp = plan["bgp"]
    call(name, "ConfigureBGP", lambda: stub.ConfigureBGP(
        pb.ConfigureBGPRequest(local_as=bgp["local_as"], router_id=bgp["router_id"], **auth), timeout=10))
    peer = pb.BGPPeer(neighbor_address=o["peer"], remote_as=o["peer_as"])
    call(name, "ApplyPeer", lambda: stub.ApplyPeer(pb.ApplyPeerRequest(peer=peer, **auth), timeout=10))
    call(name, "RemovePeer", lambda: stub.RemovePeer(
        pb.RemovePeerRequest(neighbor_address=o["peer"], **auth), timeout=10))
    call(name, "AdvertisePrefix", lambda: stub.AdvertisePrefix(
        pb.AdvertisePrefixRequest(prefix=o["prefix"], protocol=pb.PROTOCOL_BGP, **auth), timeout=10))
    call(name, "WithdrawPrefix", lambda: stub.WithdrawPrefix(
        pb.WithdrawPrefixRequest(prefix=o["prefix"], protocol=pb.PROTOCOL_BGP, **auth), timeout=10))
    call(name, "EnableBFD", lambda: stub.EnableBFD(pb.EnableBFDRequest(peer_address=o["bfd"], **auth), timeout=10))
    call(name, "DisableBFD", lambda: stub.DisableBFD(pb.DisableBFDRequest(peer_address=o["bfd"], **auth), timeout=10))
    call(name, "EnableOSPF", lambda: stub.EnableOSPF(
        pb.EnableOSPFRequest(interface_name=o["ospf"], area_id="0.0.0.0", **auth), timeout=10))
    call(name, "DisableOSPF", lambda: stub.DisableOSPF(
        pb.DisableOSPFRequest(interface_name=o["ospf"], **auth), timeout=10))
    call(name, "GetStatus", lambda: stub.GetStatus(pb.GetStatusRequest(owner_filter=name), timeout=10))
    call(name, "Deregister", lambda: stub.Deregister(pb.DeregisterRequest(withdraw_all=True, **auth), timeout=10))


def extra(pb, stub, e):
    rpc = e["rpc"]
    request = getattr(pb, rpc + "Request")
    fields = dict(e["request"])
    if "peer" in fields:
        fields["peer"] = pb.BGPPeer(**fields["peer"])
    req = request(owner=e["owner"], token=e["token"], **fields)
    call(e["owner"], rpc, lambda: getattr(stub, rpc)(req, timeout=10))


def main():
    socket, plan = sys.argv[1], json.loads(sys.argv[2])
    with tempfile.TemporaryDirectory() as out_dir:
        pb, rpc = load_stubs(out_dir)
        with grpc.insecure_channel(f"unix://{socket}") as channel:
            stub = rpc.RouteControlStub(channel)
            for o in plan["owners"]:
                for_owner(pb, stub, plan, o)
            for e in plan.get("extra", []):
                extra(pb, stub, e)


if __name__ == "__main__":
    main()
