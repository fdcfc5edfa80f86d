"""Helpers shared by the server and the device client: tensors to and from the Open Inference Protocol's
raw contents, request parameters, the token and channel/TLS set-up. Imports numpy and grpc only."""

from __future__ import annotations

import hmac
import math
import re

import numpy as np

from dnnpart.errors import RuntimeConfigError
from dnnpart.runtime.proto import runtime_pb2 as pb

DATATYPES = {"FP32": np.float32}  # Open Inference Protocol datatype names -> numpy
TOKEN_HEADER = "authorization"
CHUNK_BYTES = 1 << 20  # FetchLayers sends layer models in pieces of this size
DEVICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# Clients receive whole layer models and results; the server's own limit is set by --max-message-mb.
CLIENT_MESSAGE_BYTES = 1 << 30


def read_token(path) -> str:
    """The shared secret in a token file (surrounding whitespace ignored); refuses an empty file."""
    try:
        with open(path, encoding="utf-8") as fh:
            token = fh.read().strip()
    except OSError as exc:
        raise RuntimeConfigError(f"cannot read token file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise RuntimeConfigError(f"token file {path} is not UTF-8 text") from None
    if not token:
        raise RuntimeConfigError(f"token file {path} is empty")
    return token


def token_matches(expected: str, metadata) -> bool:
    """Whether the call carries 'authorization: Bearer <expected>' (compared in constant time)."""
    given = dict(metadata or ()).get(TOKEN_HEADER, "")
    return hmac.compare_digest(given.encode("utf-8"), f"Bearer {expected}".encode())


def call_metadata(token: str | None):
    return ((TOKEN_HEADER, f"Bearer {token}"),) if token else ()


def check_device_name(name: str) -> str:
    if not isinstance(name, str) or not DEVICE_NAME.match(name):
        raise RuntimeConfigError(
            f"device name {name!r} must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"
        )
    return name


def tensor_message(array: np.ndarray, name: str):
    """(InferInputTensor, raw bytes) of a float32 array."""
    array = np.ascontiguousarray(array, dtype=np.float32)
    return pb.ModelInferRequest.InferInputTensor(name=name, datatype="FP32", shape=list(array.shape)), array.tobytes()


def tensor_from(datatype: str, shape, raw: bytes) -> np.ndarray:
    """A numpy array from a tensor's datatype, shape and raw contents; ValueError naming what is wrong."""
    if datatype not in DATATYPES:
        raise ValueError(f"datatype {datatype!r} not supported; valid: {', '.join(DATATYPES)}")
    shape = tuple(int(s) for s in shape)
    if any(s < 0 for s in shape):
        raise ValueError(f"negative dimension in shape {list(shape)}")
    dtype = np.dtype(DATATYPES[datatype])
    want = dtype.itemsize * math.prod(shape)  # not np.prod: 10 us per call on a small tuple, on every request
    if len(raw) != want:
        raise ValueError(f"raw contents hold {len(raw)} bytes, shape {list(shape)} of {datatype} needs {want}")
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def param(value):
    """An InferParameter from a Python bool, int, float or str."""
    if isinstance(value, bool):
        return pb.InferParameter(bool_param=value)
    if isinstance(value, int):
        return pb.InferParameter(int64_param=value)
    if isinstance(value, float):
        return pb.InferParameter(double_param=value)
    return pb.InferParameter(string_param=str(value))


def param_value(parameters, key: str, default=None):
    if key not in parameters:
        return default
    p = parameters[key]
    kind = p.WhichOneof("parameter_choice")
    return default if kind is None else getattr(p, kind)


def parse_address(address: str) -> tuple[str, int]:
    """'HOST:PORT' -> (host, port); RuntimeConfigError naming the expected form."""
    host, sep, port = str(address).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise RuntimeConfigError(f"server address {address!r} must be HOST:PORT with a port in 1..65535")
    return host.strip("[]"), int(port)


def channel(address: str, tls_ca: str | None = None):
    """A gRPC channel to the server (TLS when given the CA certificate or the server's self-signed one)."""
    import grpc

    parse_address(address)
    options = [
        ("grpc.max_receive_message_length", CLIENT_MESSAGE_BYTES),
        ("grpc.max_send_message_length", CLIENT_MESSAGE_BYTES),
    ]
    if tls_ca is None:
        return grpc.insecure_channel(address, options=options)
    try:
        with open(tls_ca, "rb") as fh:
            root = fh.read()
    except OSError as exc:
        raise RuntimeConfigError(f"cannot read TLS certificate {tls_ca}: {exc.strerror or exc}") from None
    return grpc.secure_channel(address, grpc.ssl_channel_credentials(root_certificates=root), options=options)
