"""The protocol files and the device client's footprint."""

import shutil
import subprocess
import sys

import numpy as np
import pytest

from dnnpart import paths
from dnnpart.runtime import protocol

PROTO = "dnnpart/runtime/proto/runtime.proto"


def test_committed_modules_match_a_fresh_protoc_run(tmp_path):
    """runtime_pb2.py and runtime_pb2_grpc.py are what grpc_tools.protoc makes of runtime.proto today."""
    (tmp_path / "dnnpart/runtime/proto").mkdir(parents=True)
    shutil.copy(paths.PROJ_ROOT / PROTO, tmp_path / PROTO)
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I", ".", "--python_out=.", "--grpc_python_out=.", PROTO],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        timeout=120,
    )
    for name in ("runtime_pb2.py", "runtime_pb2_grpc.py"):
        fresh = (tmp_path / "dnnpart/runtime/proto" / name).read_text()
        committed = (paths.PROJ_ROOT / "dnnpart/runtime/proto" / name).read_text()
        assert fresh == committed, f"{name} is stale: regenerate it (command at the top of runtime.proto)"


def test_the_device_client_loads_no_planner_packages():
    """What `dnnpart device` imports: the client, its CLI entry and a parsed command line, never Pyomo,
    statsmodels, pandas, Jupyter or the onnx builder (a board has only numpy, onnxruntime, grpcio, protobuf)."""
    code = (
        "import sys; import dnnpart.runtime.device, dnnpart.cli as cli; "
        "cli.build_parser().parse_args(['device', '--server', 'h:1', '--name', 'n', '--network', 'lenet', "
        "'--uplink-mbps', '1']); "
        "heavy = ['pyomo', 'statsmodels', 'pandas', 'IPython', 'jupyter_client', 'matplotlib', 'onnx', 'patsy', "
        "'highspy', 'dnnpart.networks', 'dnnpart.optimiser', 'dnnpart.planning', 'dnnpart.delay']; "
        "print(','.join(m for m in heavy if m in sys.modules)); "
        "print('grpc' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.splitlines() == ["", "True"]


def test_tensors_round_trip_and_bad_contents_are_named():
    x = np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4)
    tensor, raw = protocol.tensor_message(x, "conv1")
    assert (tensor.name, tensor.datatype, list(tensor.shape), len(raw)) == ("conv1", "FP32", [1, 2, 3, 4], 96)
    assert np.array_equal(protocol.tensor_from("FP32", tensor.shape, raw), x)
    with pytest.raises(ValueError, match=r"raw contents hold 92 bytes, shape \[1, 2, 3, 4\] of FP32 needs 96"):
        protocol.tensor_from("FP32", [1, 2, 3, 4], raw[:-4])
    with pytest.raises(ValueError, match="datatype 'INT8' not supported; valid: FP32"):
        protocol.tensor_from("INT8", [1], b"\0")


def test_token_comparison():
    assert protocol.token_matches("s", [("authorization", "Bearer s")])
    assert not protocol.token_matches("s", [("authorization", "Bearer t")])
    assert not protocol.token_matches("s", [])
    assert protocol.parse_address("[::1]:50051") == ("::1", 50051)
