#!/usr/bin/env python3
"""Abuse of the RouteControl API from Python grpcio, as a careless or hostile
local client would do it.

Usage: api_abuse.py SOCKET OWNER TOKEN COUNT

With an event stream it never reads open all along: advertises COUNT host
prefixes (the owner's max_intents) and one more, tries owners that do not
exist, a request over the message size limit and a prefix field of 100 KB,
opens event streams until one is refused, and withdraws everything. Prints
one JSON object per step (codes are gRPC status names).
"""

import json
import sys
import tempfile
import threading
import time

import grpc

from routecontrol_client import load_stubs


def emit(step, **fields):
    print(json.dumps({"step": step, **fields}), flush=True)


def code_of(call):
    try:
        call()
        return "OK", ""
    except grpc.RpcError as e:
        return e.code().name, e.details() or ""


def prefix_of(i):
    return f"10.{96 + i // 65536}.{(i // 256) % 256}.{i % 256}/32"


def main():
    socket, owner, token, count = sys.argv[1:5]
    count = int(count)
    with tempfile.TemporaryDirectory() as out_dir:
        pb, rpc = load_stubs(out_dir)
        # The stream that is never read has a channel of its own whose
        # HTTP/2 window stays small (no BDP growth), as a stuck client's
        # would: what the agent cannot send waits at the agent.
        stuck = [("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 1024)]
        with grpc.insecure_channel(f"unix://{socket}") as channel, \
                grpc.insecure_channel(f"unix://{socket}", options=stuck) as stuck_channel:
            stub = rpc.RouteControlStub(channel)
            run(pb, stub, rpc.RouteControlStub(stuck_channel), owner, token, count)


def run(pb, stub, stuck_stub, owner, token, count):
    stub.Register(pb.RegisterRequest(owner=owner, token=token), timeout=10)

    # A stream that is never read, and one that is.
    never_read = stuck_stub.StreamEvents(pb.StreamEventsRequest(owner_filter=owner))
    never_read.initial_metadata()
    seen = {"advertised": 0}
    reading = stub.StreamEvents(pb.StreamEventsRequest(owner_filter=owner, event_types=["prefix_advertised"]))

    def read():
        try:
            for _ in reading:
                seen["advertised"] += 1
        except grpc.RpcError:
            pass

    threading.Thread(target=read, daemon=True).start()

    started = time.monotonic()
    for i in range(count):
        stub.AdvertisePrefix(pb.AdvertisePrefixRequest(owner=owner, token=token, prefix=prefix_of(i), protocol=pb.PROTOCOL_BGP), timeout=10)
    emit("advertised", count=count, seconds=round(time.monotonic() - started, 2))
    code, details = code_of(lambda: stub.AdvertisePrefix(
        pb.AdvertisePrefixRequest(owner=owner, token=token, prefix=prefix_of(count), protocol=pb.PROTOCOL_BGP), timeout=10))
    emit("one_too_many", code=code, details=details)
    deadline = time.monotonic() + 30
    while seen["advertised"] < count and time.monotonic() < deadline:
        time.sleep(0.05)
    emit("events_read", advertised=seen["advertised"])

    for name, call in [
        ("unknown_owner_register", lambda: stub.Register(pb.RegisterRequest(owner="nobody", token="guess"), timeout=10)),
        ("unknown_owner_advertise", lambda: stub.AdvertisePrefix(
            pb.AdvertisePrefixRequest(owner="nobody", token="guess", prefix="10.200.0.1/32", protocol=pb.PROTOCOL_BGP), timeout=10)),
        ("huge_request", lambda: stub.AdvertisePrefix(
            pb.AdvertisePrefixRequest(owner=owner, token=token, prefix="1" * (5 << 20), protocol=pb.PROTOCOL_BGP), timeout=10)),
        ("long_prefix_field", lambda: stub.AdvertisePrefix(
            pb.AdvertisePrefixRequest(owner=owner, token=token, prefix="10.0.0.1/32" + " " * 100_000, protocol=pb.PROTOCOL_BGP), timeout=10)),
    ]:
        code, details = code_of(call)
        emit(name, code=code, details=details[:300])

    # Streams until one is refused (the first read of a refused stream
    # raises its status).
    streams = []
    refused = None
    for _ in range(400):
        s = stub.StreamEvents(pb.StreamEventsRequest(owner_filter="no-such-owner"))
        streams.append(s)
        # An accepted stream answers with its headers and stays open; a
        # refused one ends with them.
        s.initial_metadata()
        if s.done():
            refused = (len(streams), s.code().name, s.details())
            break
    emit("streams", opened=len(streams), refused_at=refused[0] if refused else None,
         code=refused[1] if refused else "OK", details=refused[2] if refused else "")
    for s in streams:
        s.cancel()
    never_read.cancel()
    reading.cancel()

    started = time.monotonic()
    for i in range(count):
        stub.WithdrawPrefix(pb.WithdrawPrefixRequest(owner=owner, token=token, prefix=prefix_of(i), protocol=pb.PROTOCOL_BGP), timeout=10)
    emit("withdrawn", count=count, seconds=round(time.monotonic() - started, 2))


if __name__ == "__main__":
    main()
