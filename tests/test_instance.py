"""Instance loading and validation: every malformed input names the device and the field."""
import json
import math

import pytest

from dnnpart.errors import InstanceError
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


@pytest.mark.parametrize("device, words", [
    ({"name": "d0", "local_ms": [1], "server_ms": [1]}, ["'d0'", "upload_ms", "missing"]),
    (_dev(local_ms=[1, 2, 3]), ["'d0'", "lengths"]),
    (_dev(server_ms=[1, -2]), ["'d0'", "server_ms[1]", "non-negative"]),
    (_dev(upload_ms=[1, float("nan")]), ["'d0'", "upload_ms[1]", "finite"]),
    (_dev(local_ms=[1, "2"]), ["'d0'", "local_ms[1]", "number"]),
    (_dev(local_ms=[1, True]), ["'d0'", "local_ms[1]", "number"]),
    (_dev(download_ms=-1), ["'d0'", "download_ms"]),
    (_dev(colour="red"), ["'d0'", "unknown keys", "colour"]),
    (_dev(local_ms=[], server_ms=[], upload_ms=[]), ["'d0'", "at least one layer"]),
])
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
    with pytest.raises(InstanceError, match=r"inf.json: device 'd0': local_ms\[1\] must be finite"):
        load_instance(inf)


def test_scale_server_models_load():
    inst = Instance((Device("a", [1.0], [3.0], [2.0]),))
    assert scale_server(inst, 0.75).devices[0].server_ms == (12.0,)
    assert scale_server(inst, 0.75).devices[0].local_ms == (1.0,)
    for bad in (1.0, -0.1, float("nan")):
        with pytest.raises(InstanceError, match=r"\[0, 1\)"):
            scale_server(inst, bad)
