"""The layer cache (dnnpart.runtime.layer_cache): content-addressed files, zoo splits read back byte for byte,
and a device that is sent only the layers it lacks, with outputs unchanged."""

import hashlib

import numpy as np
import pytest
from runtime_helpers import running_server

from dnnpart.errors import RuntimeConfigError
from dnnpart.runtime import split as split_module
from dnnpart.runtime.device import DeviceClient
from dnnpart.runtime.layer_cache import LayerCache
from dnnpart.runtime.layers import LayerRunner, random_input
from dnnpart.runtime.split import cached_split_network, split_network


def test_a_file_is_used_only_if_its_bytes_hash_to_its_name(tmp_path):
    cache = LayerCache(tmp_path)
    sha = cache.put(b"layer one")
    assert sha == hashlib.sha256(b"layer one").hexdigest()
    assert cache.get(sha) == b"layer one"
    (tmp_path / f"{'0' * 64}.onnx").write_bytes(b"not what its name says")
    (tmp_path / "notes.onnx").write_bytes(b"x")
    assert cache.digests() == sorted([sha, "0" * 64])  # names are listed; contents are checked when read
    assert cache.get("0" * 64) is None
    cache.path(sha).write_bytes(b"layer one, altered")
    assert cache.get(sha) is None
    assert cache.put(b"layer one") == sha and cache.get(sha) == b"layer one"  # an altered copy is replaced
    with pytest.raises(RuntimeConfigError, match="not a sha256"):
        cache.path("../../etc/passwd")
    with pytest.raises(RuntimeConfigError, match="not a folder"):
        LayerCache(tmp_path / "missing")


def test_a_cached_split_is_the_built_split_and_an_altered_layer_is_rebuilt(tmp_path, monkeypatch):
    cache = LayerCache(tmp_path)
    built = split_network("lenet", 3)
    first = cached_split_network("lenet", 3, cache)
    assert (first.models, first.sha256, first.shapes, first.layer_names) == (
        built.models,
        built.sha256,
        built.shapes,
        built.layer_names,
    )
    assert len(list(tmp_path.glob("lenet-seed3-*.json"))) == 1
    assert sorted(cache.digests()) == sorted(set(built.layer_sha256))

    def no_build(*args):
        raise AssertionError("built again")

    with monkeypatch.context() as m:
        m.setattr(split_module, "split_network", no_build)
        again = cached_split_network("lenet", 3, cache)  # read, not built
    assert (again.models, again.sha256, again.shapes) == (built.models, built.sha256, built.shapes)
    assert cached_split_network("lenet", 4, cache).sha256 == split_network("lenet", 4).sha256  # a seed of its own

    cache.path(built.layer_sha256[2]).write_bytes(b"truncated")
    calls = []
    real = split_module.split_network
    monkeypatch.setattr(split_module, "split_network", lambda *a: calls.append(a) or real(*a))
    rebuilt = cached_split_network("lenet", 3, cache)
    assert len(calls) == 1 and rebuilt.models == built.models
    assert cache.get(built.layer_sha256[2]) == built.models[2]


def run_device(address, cache, cut=8, name="a"):
    with DeviceClient(address, name, "lenet", 100.0, local_ms=[0.5] * 8, cut=cut, layer_cache=cache) as client:
        return client.run(1, input_seed=5)[0]


def test_a_device_is_sent_only_the_layers_its_cache_lacks(tmp_path, monkeypatch):
    server_cache, device_cache = tmp_path / "server-cache", tmp_path / "device-cache"
    server_cache.mkdir()
    device_cache.mkdir()
    x = random_input([1, 1, 28, 28], 5)
    want = LayerRunner(split_network("lenet").models).run_range(x, 1, 8)[0]
    layers = split_network("lenet").layer_sha256
    cached_split_network("lenet", 0, LayerCache(server_cache))  # the server's build, before the spy
    sent = []
    real_put = LayerCache.put
    monkeypatch.setattr(LayerCache, "put", lambda self, data: sent.append(data) or real_put(self, data))

    for k, (cut, expect) in enumerate([(3, layers[:3]), (8, layers[3:]), (8, ())]):  # the cache fills up
        with running_server(tmp_path / f"out{k}", expected=1, layer_cache=LayerCache(server_cache)) as (address, _):
            result = run_device(address, device_cache, cut)
        assert tuple(hashlib.sha256(d).hexdigest() for d in sent) == expect
        assert np.allclose(result.output, want, rtol=1e-4, atol=1e-5)
        sent.clear()
    assert set(layers) <= set(LayerCache(device_cache).digests())

    LayerCache(device_cache).path(layers[0]).write_bytes(b"altered")  # announced, but no longer intact
    with running_server(tmp_path / "out3", expected=1, layer_cache=LayerCache(server_cache)) as (address, _):
        result = run_device(address, device_cache, 8)
    assert np.allclose(result.output, want, rtol=1e-4, atol=1e-5)
    assert LayerCache(device_cache).get(layers[0]) is not None  # fetched again and kept


def test_a_folder_that_cannot_be_written_works_as_no_cache(tmp_path):
    cache = LayerCache(tmp_path)
    squat = hashlib.sha256(b"y").hexdigest()
    (tmp_path / f"{squat}.onnx").mkdir()  # a directory where the file should go: the write fails, even for root
    assert cache.put(b"y") == squat and cache.get(squat) is None  # not kept, and no error
