#!/usr/bin/env python3
"""Real gRPC traffic for apitap tests: grpcio server and client, no protoc.

  grpc_pair.py server PORT            serve on 127.0.0.1:PORT (insecure) until killed
  grpc_pair.py client PORT TRUTH      make the calls below, write one truth line per call

Service apitap.test.v1.Inventory, registered with grpc.method_handlers_generic_handler;
messages are raw bytes (identity serializers), JSON text inside for readability.
  GetItem     unary          -> OK, or NOT_FOUND (abort before any message: trailers-only)
  ListItems   server stream  -> N messages then OK; count<0 -> 2 messages then INVALID_ARGUMENT
  PutItems    client stream  -> 1 message, OK
"""
import json
import sys
import time
from concurrent import futures

import grpc

SERVICE = "apitap.test.v1.Inventory"
ident = lambda b: b  # noqa: E731


def get_item(request, context):
    req = json.loads(request)
    if req.get("id") == "missing":
        context.abort(grpc.StatusCode.NOT_FOUND, "item missing not found")
    pad = "x" * int(req.get("pad", 0))
    return json.dumps({"id": req.get("id"), "name": f"item {req.get('id')}", "pad": pad}).encode()


def list_items(request, context):
    req = json.loads(request)
    count = int(req.get("count", 3))
    if count < 0:
        for i in range(2):
            yield json.dumps({"seq": i}).encode()
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "count must be >= 0")
    for i in range(count):
        yield json.dumps({"seq": i, "id": f"sku-{i}"}).encode()


def put_items(request_iterator, context):
    n = sum(1 for _ in request_iterator)
    return json.dumps({"stored": n}).encode()


def serve(port):
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    handler = grpc.method_handlers_generic_handler(SERVICE, {
        "GetItem": grpc.unary_unary_rpc_method_handler(get_item, ident, ident),
        "ListItems": grpc.unary_stream_rpc_method_handler(list_items, ident, ident),
        "PutItems": grpc.stream_unary_rpc_method_handler(put_items, ident, ident),
    })
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    print("grpc server ready", flush=True)
    server.wait_for_termination()


def client(port, truth_path):
    truth = []

    def record(method, req_msgs, resp_msgs, code):
        truth.append({"method": "POST", "target": f"/{SERVICE}/{method}", "status": 200,
                      "grpc_status": code.value[0], "request_messages": req_msgs,
                      "response_messages": resp_msgs})

    for ch_no in range(2):  # two channels = two TCP connections
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            get = ch.unary_unary(f"/{SERVICE}/GetItem", request_serializer=ident, response_deserializer=ident)
            lst = ch.unary_stream(f"/{SERVICE}/ListItems", request_serializer=ident, response_deserializer=ident)
            put = ch.stream_unary(f"/{SERVICE}/PutItems", request_serializer=ident, response_deserializer=ident)

            for i in range(5):
                get(json.dumps({"id": f"{ch_no}-{i}"}).encode(), timeout=5)
                record("GetItem", 1, 1, grpc.StatusCode.OK)
            # a larger unary response (64 KB: spans several DATA frames)
            get(json.dumps({"id": "big", "pad": 64 * 1024}).encode(), timeout=5)
            record("GetItem", 1, 1, grpc.StatusCode.OK)
            # server streaming
            got = list(lst(json.dumps({"count": 5}).encode()))
            record("ListItems", 1, len(got), grpc.StatusCode.OK)
            # client streaming
            put(iter([json.dumps({"id": f"p{k}"}).encode() for k in range(3)]))
            record("PutItems", 3, 1, grpc.StatusCode.OK)
            # error: NOT_FOUND with a message, no response message (trailers-only)
            try:
                get(json.dumps({"id": "missing"}).encode())
                raise SystemExit("expected NOT_FOUND")
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.NOT_FOUND, e
                assert e.details() == "item missing not found", e.details()
                record("GetItem", 1, 0, e.code())
            # error after two streamed messages (grpc-status in trailers after DATA)
            got = []
            try:
                for m in lst(json.dumps({"count": -1}).encode()):
                    got.append(m)
                raise SystemExit("expected INVALID_ARGUMENT")
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e
                record("ListItems", 1, len(got), e.code())
            # concurrent unary calls multiplexed on the one connection
            futs = [get.future(json.dumps({"id": f"c{ch_no}-{k}"}).encode()) for k in range(10)]
            for f in futs:
                f.result()
                record("GetItem", 1, 1, grpc.StatusCode.OK)
        time.sleep(0.2)

    with open(truth_path, "w") as out:
        for t in truth:
            out.write(json.dumps(t) + "\n")
    print(len(truth))


if __name__ == "__main__":
    if sys.argv[1] == "server":
        serve(int(sys.argv[2]))
    else:
        client(int(sys.argv[2]), sys.argv[3])
