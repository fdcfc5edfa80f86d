"""Instance loading and validation: every malformed input names the device and the field, in one line."""

import json
import math

import numpy as np
import pytest

from dnnpart import cli
from dnnpart.errors import InstanceError
from dnnpart.input_files import MAX_FILE_BYTES
from dnnpart.optimiser.instance import Device, Instance, load_instance, scale_server
from dnnpart.paths import PROJ_ROOT

EXAMPLE = PROJ_ROOT / "tests" / "data" / "interleaving-example.json"


def _dev(**kw):
    base = {"name": "d0", "local_ms": [1, 2], "server_ms": [0.5, 0.5], "upload_ms": [3, 1], "download_ms": 0.0}
    base.update(kw)
    return base


def test_example_loads_with_annotations_and_round_trips(tmp_path):
    inst = load_instance(EXAMPLE)
    assert inst.names == ["A", "B"]
    assert [d.n_layers for d in inst.devices] == [4, 3]
    b = inst.devices[1]
    assert b.release_ms(2) == 51.0 and b.server_work_ms(2) == 1.0 and b.alone_ms(3) == 80.0
    out = inst.to_json(tmp_path / "x.json")
    assert load_instance(out) == inst


@pytest.mark.parametrize(
    "device, words",
    [
        ({"name": "d0", "local_ms": [1], "server_ms": [1]}, ["'d0'", "upload_ms", "missing"]),
        (_dev(local_ms=[1, 2, 3]), ["'d0'", "lengths"]),
        (_dev(server_ms=[1, -2]), ["'d0'", "server_ms[1]", "non-negative"]),
        (_dev(upload_ms=[1, float("nan")]), ["'d0'", "upload_ms[1]", "finite"]),
        (_dev(local_ms=[1, "2"]), ["'d0'", "local_ms[1]", "number"]),
        (_dev(local_ms=[1, True]), ["'d0'", "local_ms[1]", "number"]),
        (_dev(download_ms=-1), ["'d0'", "download_ms"]),
        (_dev(colour="red"), ["'d0'", "unknown key 'colour'", "keys starting with '_' are comments"]),
        (_dev(local_ms=[], server_ms=[], upload_ms=[]), ["'d0'", "at least one layer"]),
    ],
)
def test_malformed_device_is_named(device, words):
    with pytest.raises(InstanceError) as err:
        Instance.from_dict({"devices": [device]})
    for w in words:
        assert w in str(err.value)


def test_comment_keys_allowed_and_instance_level_errors(tmp_path):
    assert Instance.from_dict({"devices": [_dev(_note="hi")]}).devices[0].local_ms == (1.0, 2.0)
    with pytest.raises(InstanceError, match="at least one device"):
        Instance.from_dict({"devices": []})
    with pytest.raises(InstanceError, match="unique"):
        Instance.from_dict({"devices": [_dev(), _dev()]})
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InstanceError, match="not valid JSON"):
        load_instance(bad)
    inf = tmp_path / "inf.json"
    inf.write_text(json.dumps({"devices": [_dev(local_ms=[1, math.inf])]}))
    with pytest.raises(
        InstanceError, match=r"inf.json: devices\[0\]\.local_ms\[1\]: must be finite, got inf \(device 'd0'\)"
    ):
        load_instance(inf)


def test_scale_server_models_load():
    inst = Instance((Device("a", [1.0], [3.0], [2.0]),))
    assert scale_server(inst, 0.75).devices[0].server_ms == (12.0,)
    assert scale_server(inst, 0.75).devices[0].local_ms == (1.0,)
    for bad in (1.0, -0.1, float("nan")):
        with pytest.raises(InstanceError, match=r"\[0, 1\)"):
            scale_server(inst, bad)


def test_messages_name_the_place_and_the_device_in_one_line():
    with pytest.raises(InstanceError) as err:
        Instance.from_dict({"devices": [_dev(), _dev(name="cam", server_ms=[1, -2], upload_ms=[1, "x"])]})
    assert (
        str(err.value) == "devices[1].server_ms[1]: must be non-negative, got -2.0 (device 'cam') (and 1 more problem)"
    )
    with pytest.raises(InstanceError) as err:
        Instance.from_dict({"devices": [_dev(name="x" * 10_000, local_ms=[1, -1])]})
    message = str(err.value)
    assert message.startswith("devices[0].local_ms[1]: must be non-negative, got -1.0 (device 'xxx")
    assert len(message) < 200  # the 10,000-character name is cut in the message


def test_devices_built_in_code_are_checked_by_the_same_schema():
    with pytest.raises(InstanceError, match=r"^device 'a': local_ms\[1\]: must be non-negative, got -1.0$"):
        Device("a", [1, -1], [1, 1], [1, 1])
    with pytest.raises(InstanceError, match=r"^device 'a': server_ms: needs at least one layer"):
        Device("a", [1], [], [1])
    # numpy scalars and tuples are numbers and lists; the stored times are plain float tuples
    dev = Device("a", (np.float32(1.5), np.int64(2)), np.array([1.0, 2.0]).tolist(), [0, 1])
    assert dev.local_ms == (1.5, 2.0) and type(dev.local_ms[1]) is float and dev.upload_ms == (0.0, 1.0)


def test_too_many_devices_are_refused():
    one = {"name": "d", "local_ms": [1], "server_ms": [1], "upload_ms": [1]}
    with pytest.raises(InstanceError, match=r"^devices: has more than the limit of 10000 items"):
        Instance.from_dict({"devices": [one] * 10_001})


def _deep(path):
    path.write_text("[" * 100_000 + "]" * 100_000)


def _digits(n):
    def write(path):
        path.write_text(
            '{"devices": [{"name": "a", "local_ms": [' + "9" * n + '], "server_ms": [1], "upload_ms": [1]}]}'
        )

    return write


@pytest.mark.parametrize(
    "write, message",
    [
        (
            lambda p: p.write_bytes(b'{"devices": [{"name": "caf\xe9"}]}'),
            r"instance file .*bad\.json: not UTF-8 text: invalid continuation byte at byte 26$",
        ),
        (
            _digits(400),
            (
                r"bad\.json: devices\[0\]\.local_ms\[0\]: is too large for a number of ms, got 9{18}\.\.\.9{19} "
                r"\(device 'a'\)$"
            ),
        ),
        (_digits(5000), r"instance file .*bad\.json: not readable: Exceeds the limit \(4300 digits\)"),
        (_deep, r"instance file .*bad\.json: not readable: nested too deeply$"),
        (
            lambda p: p.write_bytes(b" " * (MAX_FILE_BYTES + 1)),
            r"instance file .*bad\.json: the file is larger than the limit of 16,777,216 bytes for input files$",
        ),
    ],
)
def test_hostile_files_are_refused_in_one_line(tmp_path, capsys, write, message):
    path = tmp_path / "bad.json"
    write(path)
    with pytest.raises(InstanceError, match=message) as err:
        load_instance(path)
    assert "\n" not in str(err.value) and len(str(err.value)) < 250
    assert cli.main(["solve", "--instance", str(path)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0] == f"dnnpart solve: error: {err.value}"
