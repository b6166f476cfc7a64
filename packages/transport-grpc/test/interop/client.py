"""Calls a Gantry service from Python's grpcio with stubs protoc generated from Gantry's .proto.

argv: target (host:port), stubs dir, the generated module (interop/v1/interop.proto -> "interop/v1/interop").
Prints one JSON object with what it got; interop.test.ts checks it.
"""
import importlib
import json
import os
import queue
import sys

target, stubs, module = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path.insert(0, stubs)

import grpc  # noqa: E402

# The health and reflection stubs live under grpc/ in the stubs dir, beside the real grpc package.
grpc.__path__.append(os.path.join(stubs, "grpc"))
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory  # noqa: E402
from google.protobuf.timestamp_pb2 import Timestamp  # noqa: E402

pb2 = importlib.import_module(module.replace("/", ".") + "_pb2")
pb2_grpc = importlib.import_module(module.replace("/", ".") + "_pb2_grpc")
health_pb2 = importlib.import_module("grpc.health.v1.health_pb2")
health_grpc = importlib.import_module("grpc.health.v1.health_pb2_grpc")
# The stubs by the file they were generated from, to compare with what reflection serves.
STUBS = {
    stub.DESCRIPTOR.name: stub
    for stub in [pb2, health_pb2]
    + [importlib.import_module(f"grpc.reflection.{version}.reflection_pb2") for version in ("v1", "v1alpha")]
}
# google.rpc.Status and its details, for the grpc-status-details-bin trailer; imported so that
# MessageToDict can unpack the Any details.
status_pb2 = importlib.import_module("google.rpc.status_pb2")
importlib.import_module("google.rpc.error_details_pb2")

TIMEOUT = 5


def as_dict(message):
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def timestamp(text):
    at = Timestamp()
    at.FromJsonString(text)
    return at


def typed_calls(channel):
    stub = pb2_grpc.InteropServiceStub(channel)
    out = {}
    request = pb2.InteropRequest(
        id=-9007199254740993,
        big=18446744073709551615,
        scores={"ada": 36, "grace": -85},
        nickname="",
        color=pb2.COLOR_BLUE,
        at=timestamp("1969-07-20T20:17:40.5Z"),
        tags=["x", "y"],
    )
    reply = stub.Echo(request, timeout=TIMEOUT)
    out["reply"] = as_dict(reply)
    out["reply_has_nickname"] = reply.HasField("nickname")
    edges = pb2.InteropRequest(id=2**63 - 2, color=pb2.COLOR_RED, at=timestamp("1969-12-31T23:59:59.999999999Z"))
    out["edges"] = as_dict(stub.Echo(edges, timeout=TIMEOUT))
    bare = stub.Echo(pb2.InteropRequest(), timeout=TIMEOUT)
    out["bare"] = as_dict(bare)
    out["bare_has_nickname"] = bare.HasField("nickname")
    try:
        stub.Echo(pb2.InteropRequest(tags=["a"] * 20), timeout=TIMEOUT)
        out["error"] = None
    except grpc.RpcError as error:
        trailers = dict(error.trailing_metadata())
        out["error"] = {
            "code": error.code().name,
            "details": error.details(),
            "status": as_dict(status_pb2.Status.FromString(trailers["grpc-status-details-bin"])),
        }
    return out


def health(channel):
    stub = health_grpc.HealthStub(channel)
    name = health_pb2.HealthCheckResponse.ServingStatus.Name

    def check(service):
        try:
            return name(stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT).status)
        except grpc.RpcError as error:
            return error.code().name

    return {"server": check(""), "service": check("interop.v1.InteropService"), "unknown": check("nope.v1.Nope")}


def same_as_stubs(served):
    """Whether a file served by reflection is the one protoc compiled into the stubs, for the files there
    are stubs of (None for the others). Python's stubs hold no json_name: it is left out of the check."""
    stub = STUBS.get(served.name)
    if stub is None:
        return None
    served = descriptor_pb2.FileDescriptorProto.FromString(served.SerializeToString())
    messages = list(served.message_type)
    while messages:
        message = messages.pop()
        messages.extend(message.nested_type)
        for field in message.field:
            field.ClearField("json_name")
    return served == descriptor_pb2.FileDescriptorProto.FromString(stub.DESCRIPTOR.serialized_pb)


def files_of(response):
    protos = response.file_descriptor_response.file_descriptor_proto
    return [descriptor_pb2.FileDescriptorProto.FromString(b) for b in protos]


def names(response):
    return [f.name for f in files_of(response)]


class Session:
    """One reflection stream held open, each request answered before the next is sent, as grpcurl uses it."""

    def __init__(self, stub):
        self._requests = queue.Queue()
        self._responses = stub.ServerReflectionInfo(iter(self._requests.get, None), timeout=TIMEOUT)

    def ask(self, request):
        self._requests.put(request)
        return next(self._responses)

    def close(self):
        """Half-closes the stream; the rest of the answers (none expected), then the server's OK."""
        self._requests.put(None)
        return list(self._responses)


def call_from_descriptors(channel, files, method_name, request):
    """A unary call with types built from reflected descriptors alone, in proto3 JSON both ways: each
    file added to a fresh pool after the files it imports, as grpcurl does."""
    pool = descriptor_pool.DescriptorPool()
    added = []
    while len(added) < len(files):
        ready = [f for f in files if f.name not in added and all(d in added for d in f.dependency)]
        if not ready:
            raise RuntimeError(f"unresolvable imports among {[f.name for f in files]}")
        for proto in ready:
            pool.Add(proto)
            added.append(proto.name)
    method = pool.FindMethodByName(method_name)
    # GetMessageClass is protobuf >= 4.22; Debian's 4.21 has the factory only.
    message_class = getattr(message_factory, "GetMessageClass", None) or message_factory.MessageFactory(pool).GetPrototype
    request_class, reply_class = message_class(method.input_type), message_class(method.output_type)
    call = channel.unary_unary(
        f"/{method.containing_service.full_name}/{method.name}",
        request_serializer=request_class.SerializeToString,
        response_deserializer=reply_class.FromString,
    )
    return as_dict(call(json_format.ParseDict(request, request_class()), timeout=TIMEOUT))


def reflection(channel, version):
    """Server reflection as grpcurl uses it: list the services, describe each, fetch the file of a
    symbol, build its types from the descriptors alone, and call the method with them."""
    reflection_pb2 = importlib.import_module(f"grpc.reflection.{version}.reflection_pb2")
    reflection_grpc = importlib.import_module(f"grpc.reflection.{version}.reflection_pb2_grpc")
    Request = reflection_pb2.ServerReflectionRequest
    session = Session(reflection_grpc.ServerReflectionStub(channel))
    listed = session.ask(Request(host=target, list_services="*"))
    services = sorted(s.name for s in listed.list_services_response.service)
    # grpcurl describe: every listed service resolved by its name, each a service of the file it gets.
    described = {}
    for name in services:
        response = session.ask(Request(file_containing_symbol=name))
        if response.HasField("error_response"):
            described[name] = response.error_response.error_code
            continue
        first = files_of(response)[0]
        assert name in [f"{first.package}.{service.name}" for service in first.service], name
        described[name] = {"files": names(response), "same_as_protoc": same_as_stubs(first)}
    by_symbol = {
        symbol: names(session.ask(Request(file_containing_symbol=symbol)))
        for symbol in ("interop.v1.InteropService.Echo", "interop.v1.InteropReply", "interop.v1.Color")
    }
    by_name = session.ask(Request(file_by_filename="interop/v1/interop.proto"))
    unknown = session.ask(Request(file_containing_symbol="nope.v1.Nope"))
    interop_files = files_of(session.ask(Request(file_containing_symbol="interop.v1.InteropService")))
    health_files = files_of(session.ask(Request(file_containing_symbol="grpc.health.v1.Health")))
    left = session.close()
    echo = {
        "id": "9007199254740993",
        "big": "9007199254740993",
        "scores": {"linus": 21},
        "nickname": "Ada",
        "color": "COLOR_RED",
        "at": "1900-01-01T00:00:00.250Z",
        "tags": ["dynamic"],
    }
    return {
        "valid_host": listed.valid_host,
        "services": services,
        "described": described,
        "files_by_symbol": by_symbol,
        "files_by_name": names(by_name),
        "unknown_symbol": {
            "error_code": unknown.error_response.error_code,
            "error_message": unknown.error_response.error_message,
        },
        "left_after_close": len(left),
        "dynamic_echo": call_from_descriptors(channel, interop_files, "interop.v1.InteropService.Echo", echo),
        "dynamic_health": call_from_descriptors(
            channel, health_files, "grpc.health.v1.Health.Check", {"service": "interop.v1.InteropService"}
        ),
    }


out = {}
with grpc.insecure_channel(target, options=[("grpc.enable_http_proxy", 0)]) as channel:
    out.update(typed_calls(channel))
    out["health"] = health(channel)
    for version in ("v1", "v1alpha"):
        out[f"reflection_{version}"] = reflection(channel, version)

print(json.dumps(out))
