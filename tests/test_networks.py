"""The network zoo: totals against published figures, Caffe's layer names, shape chaining, table contract."""

import numpy as np
import pytest

from dnnpart import networks
from dnnpart.errors import DnnpartError, UnknownNetworkError

# (published MACs, published params, exact params where the literature gives them)
PUBLISHED = {
    "vgg16": (15.47e9, 138.36e6, 138_357_544),  # torchvision / Simonyan & Zisserman config D
    "vgg13": (11.31e9, 133.05e6, 133_047_848),  # config B
    "alexnet": (0.724e9, 60.97e6, 60_965_224),  # Caffe bvlc_alexnet (grouped conv2/4/5)
    "lenet": (2.293e6, 431_080, 431_080),  # Caffe MNIST example
}


# torchvision's model table: parameters (BatchNorm's scale and shift counted, running statistics not) and GMACs
DAG_PUBLISHED = {
    "resnet18": (1.81e9, 11_689_512),
    "resnet50": (4.09e9, 25_557_032),
    "mobilenet_v2": (0.30e9, 3_504_872),
}


def test_names_lists_the_zoo_in_size_order():
    assert networks.names() == ["lenet", "alexnet", "vgg13", "vgg16"]
    assert networks.names(include_dag=True) == [
        "lenet",
        "alexnet",
        "vgg13",
        "vgg16",
        "resnet18",
        "resnet50",
        "mobilenet_v2",
    ]


@pytest.mark.parametrize("name", list(DAG_PUBLISHED))
def test_dag_totals_match_torchvision(name):
    macs, params = DAG_PUBLISHED[name]
    table = networks.get(name)
    assert table["params"].sum() == params
    assert abs(table["macs"].sum() / macs - 1) < 0.005
    assert list(table.columns) == networks.COLUMNS + networks.DAG_COLUMNS


def test_resnet18_blocks_end_where_one_tensor_crosses():
    t = networks.get("resnet18")
    blocks = networks.block_table(t)
    # stem layers each, then per residual block its body + add, then the block's ReLU, then avgpool and fc
    residual = [f"layer{s}.{i}" for s in (1, 2, 3, 4) for i in (0, 1)]
    assert list(blocks["name"]) == ["conv1", "bn1", "relu", "maxpool"] + [
        n for r in residual for n in (f"{r}.add", f"{r}.relu")
    ] + ["avgpool", "fc"]
    assert list(blocks["layers"][4:10]) == [6, 1, 6, 1, 8, 1]  # layer2.0 has a downsample conv + bn
    assert blocks.loc[8, "types"] == "conv+batchnorm+relu+conv+batchnorm+conv+batchnorm+add"
    # the tensor entering a block is the previous block's output; a residual block maps 64x56x56 to itself
    assert blocks["in_bytes"].iloc[0] == 3 * 224 * 224 * 4
    assert (blocks["in_bytes"].to_numpy()[1:] == blocks["out_bytes"].to_numpy()[:-1]).all()
    assert blocks.loc[4, ["in_bytes", "out_bytes"]].tolist() == [64 * 56 * 56 * 4] * 2
    assert blocks["macs"].sum() == t["macs"].sum() and blocks["params"].sum() == t["params"].sum()
    assert t.set_index("name").loc["layer1.0.add", "inputs"] == "layer1.0.bn2,maxpool"
    assert t.set_index("name").loc["layer2.0.add", "inputs"] == "layer2.0.bn2,layer2.0.downsample.1"


def test_mobilenet_v2_depthwise_convs_and_shortcuts():
    t = networks.get("mobilenet_v2").set_index("name")
    dw = t[t["type"] == "dwconv"]
    assert len(dw) == 17 and (dw["groups"] == dw["in_channels"]).all() and (dw["kernel"] == 3).all()
    assert dw.loc["features.2.conv.1.0", ["in_channels", "in_side", "out_side", "macs"]].tolist() == [
        96,
        112,
        56,
        56 * 56 * 96 * 9,
    ]
    assert (t["type"] == "add").sum() == 10  # blocks with stride 1 and unchanged channels
    assert (t["type"] == "clip").sum() == 35 and (t["type"] == "batchnorm").sum() == 52
    blocks = networks.block_table(networks.get("mobilenet_v2"))
    # a block with a shortcut is one subtask; a block without one is cut after every layer
    assert blocks.set_index("name").loc["features.3.add", "layers"] == 9
    assert blocks.set_index("name").loc["features.2.conv.3", "layers"] == 1


def test_cut_points_by_hand():
    """data -> a -> (b, c) -> d = b + c -> e: after a, d and e one tensor crosses; after b two do (a and b)."""
    L = networks.Layer
    layers = [
        L("a", "relu"),
        L("b", "relu"),
        L("c", "relu", inputs=("a",)),
        L("d", "add", inputs=("b", "c")),
        L("e", "relu"),
    ]
    t = networks.build_table("tiny", [1, 2, 4, 4], layers)
    assert list(t["block"]) == [1, 2, 2, 2, 3]
    assert list(t["inputs"]) == ["data", "a", "a", "b,c", "d"]
    assert t.set_index("name").loc["d", ["in_channels", "out_channels", "in_bytes"]].tolist() == [4, 2, 4 * 16 * 4]
    assert networks.cut_points([("data",), ("a",), ("a",), ("b", "c"), ("d",)], list("abcde"), "data") == [1, 4]
    # a layer named after the previous one is still a chain: no extra columns
    chain = networks.build_table("c", [1, 2, 4, 4], [L("a", "relu"), L("b", "relu", inputs=("a",))])
    assert list(chain.columns) == networks.COLUMNS
    # the network input read twice: no cut until both readers are done
    t = networks.build_table(
        "two", [1, 2, 4, 4], [L("a", "relu"), L("b", "relu", inputs=("data",)), networks.concat("c", "a", "b")]
    )
    assert list(t["block"]) == [1, 1, 1] and t["out_channels"].tolist() == [2, 2, 4]


def test_build_table_refuses_impossible_graphs_naming_the_layer():
    L = networks.Layer
    with pytest.raises(DnnpartError, match=r"'d' \(add\): inputs \['a', 'b'\] have unequal shapes"):
        networks.build_table(
            "bad", [1, 2, 4, 4], [L("a", "relu"), networks.conv("b", 3, 1, inputs=("a",)), networks.add("d", "a", "b")]
        )
    with pytest.raises(DnnpartError, match=r"'b' \(relu\): reads 'z', which is neither an earlier layer"):
        networks.build_table("bad", [1, 2, 4, 4], [L("a", "relu"), L("b", "relu", inputs=("z",))])
    with pytest.raises(DnnpartError, match=r"'a' \(relu\): its output is read by no later layer"):
        networks.build_table("bad", [1, 2, 4, 4], [L("a", "relu"), L("b", "relu", inputs=("data",))])
    with pytest.raises(DnnpartError, match="joins two or more inputs"):
        networks.build_table("bad", [1, 2, 4, 4], [L("a", "relu"), L("b", "add", inputs=("a",))])
    with pytest.raises(DnnpartError, match="unique layer names"):
        networks.build_table("bad", [1, 2, 4, 4], [L("a", "relu"), L("a", "relu", inputs=("a",))])
    with pytest.raises(DnnpartError, match="depthwise conv has groups = input channels"):
        networks.build_table("bad", [1, 4, 4, 4], [L("d", "dwconv", out=4, kernel=3, pad=1, groups=2)])


def test_a_conv_with_one_group_per_channel_is_depthwise():
    t = networks.build_table("dw", [1, 8, 6, 6], [networks.conv("c", 8, 3, pad=1, groups=8, bias=False)])
    assert t[["type", "macs", "params"]].iloc[0].tolist() == ["dwconv", 8 * 9 * 36, 8 * 9]


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_totals_match_published_figures(name):
    macs, params, exact_params = PUBLISHED[name]
    table = networks.get(name)
    assert abs(table["macs"].sum() / macs - 1) < 0.01
    assert abs(table["params"].sum() / params - 1) < 0.01
    assert table["params"].sum() == exact_params


def test_lenet_is_exact_layer_by_layer():
    t = networks.get("lenet").set_index("name")
    assert list(t.index) == ["conv1", "pool1", "conv2", "pool2", "ip1", "relu1", "ip2", "prob"]
    assert t["macs"].to_dict() == {
        "conv1": 288_000,
        "pool1": 0,
        "conv2": 1_600_000,
        "pool2": 0,
        "ip1": 400_000,
        "relu1": 0,
        "ip2": 5_000,
        "prob": 0,
    }
    assert t.loc["ip1", "in_channels"] == 800  # 50 x 4 x 4 flattened
    assert list(t["out_side"]) == [24, 12, 8, 4, 1, 1, 1, 1]


def test_alexnet_layers_follow_caffe_deploy_prototxt():
    t = networks.get("alexnet")
    assert list(t["name"]) == [
        "conv1",
        "relu1",
        "norm1",
        "pool1",
        "conv2",
        "relu2",
        "norm2",
        "pool2",
        "conv3",
        "relu3",
        "conv4",
        "relu4",
        "conv5",
        "relu5",
        "pool5",
        "fc6",
        "relu6",
        "drop6",
        "fc7",
        "relu7",
        "drop7",
        "fc8",
        "prob",
    ]
    t = t.set_index("name")
    assert t["groups"].to_dict() == {n: (2 if n in ("conv2", "conv4", "conv5") else 1) for n in t.index}
    assert t.loc[["conv1", "pool1", "conv2", "pool2", "conv3", "pool5"], "out_side"].tolist() == [55, 27, 27, 13, 13, 6]
    assert t.loc["norm1", "kernel"] == 5 and t.loc["norm1", "type"] == "lrn"
    assert t.loc["fc6", "in_channels"] == 256 * 6 * 6
    # grouped conv2: each of 256 filters sees 96/2 input channels
    assert t.loc["conv2", "params"] == 256 * 48 * 5 * 5 + 256
    assert t.loc["conv2", "macs"] == 27 * 27 * 256 * 48 * 25


@pytest.mark.parametrize("name, convs", [("vgg13", 10), ("vgg16", 13)])
def test_vgg_structure(name, convs):
    t = networks.get(name)
    counts = t["type"].value_counts().to_dict()
    assert counts == {"conv": convs, "relu": convs + 2, "pool": 5, "fc": 3, "dropout": 2, "softmax": 1}
    assert list(t["name"][:5]) == ["conv1_1", "relu1_1", "conv1_2", "relu1_2", "pool1"]
    assert list(t["name"][-8:]) == ["fc6", "relu6", "drop6", "fc7", "relu7", "drop7", "fc8", "prob"]
    convs_ = t[t["type"] == "conv"]
    assert (convs_["kernel"] == 3).all() and (convs_["pad"] == 1).all()
    assert (convs_["out_side"] == convs_["in_side"]).all()
    assert list(t.loc[t["type"] == "pool", "out_side"]) == [112, 56, 28, 14, 7]


@pytest.mark.parametrize("name", networks.names())
def test_table_contract(name):
    t = networks.get(name)
    assert list(t.columns) == networks.COLUMNS
    assert t["name"].map(type).eq(str).all() and t["type"].isin(networks.LAYER_TYPES).all()
    assert all(t[c].dtype == np.int64 for c in networks.NUMERIC_COLUMNS)
    assert t["name"].is_unique
    assert t.attrs["network"] == name
    c, h, w = t.attrs["input_shape"][1:]
    assert t.attrs["input_shape"][0] == 1 and h == w
    # shapes chain: what a layer emits is what the next one takes in
    assert t["in_elements"].iloc[0] == c * h * w
    assert (t["out_elements"].to_numpy()[:-1] == t["in_elements"].to_numpy()[1:]).all()
    assert (t["out_elements"] == t["out_channels"] * t["out_side"] ** 2).all()
    assert (t["in_elements"] == t["in_channels"] * t["in_side"] ** 2).all()
    spatial_next = t["type"].shift(-1).isin(["conv", "pool", "lrn", "relu", "dropout", "softmax"])
    prev, nxt = t.iloc[:-1], t.iloc[1:]
    same = spatial_next.to_numpy()[:-1]
    assert (prev["out_channels"].to_numpy()[same] == nxt["in_channels"].to_numpy()[same]).all()
    assert (prev["out_side"].to_numpy()[same] == nxt["in_side"].to_numpy()[same]).all()
    assert (t["in_bytes"] == 4 * t["in_elements"]).all() and (t["out_bytes"] == 4 * t["out_elements"]).all()
    # only conv and fc compute MACs or hold parameters; fc and softmax have side 1
    weighted = t["type"].isin(["conv", "fc"])
    assert (t.loc[weighted, "macs"] > 0).all() and (t.loc[~weighted, ["macs", "params"]] == 0).all().all()
    assert (t.loc[t["type"].isin(["fc", "softmax"]), ["in_side", "out_side"]] == 1).all().all()
    assert t["type"].iloc[-1] == "softmax" and t["name"].iloc[-1] == "prob"


def test_get_returns_a_fresh_copy():
    t = networks.get("lenet")
    t.loc[0, "macs"] = -1
    t.attrs["input_shape"][1] = 99
    again = networks.get("lenet")
    assert again.loc[0, "macs"] == 288_000 and again.attrs["input_shape"] == [1, 1, 28, 28]


def test_get_accepts_any_case_and_refuses_unknown_names():
    assert networks.get("AlexNet").attrs["network"] == "alexnet"
    with pytest.raises(UnknownNetworkError) as err:
        networks.get("resnet101")
    assert "'resnet101'" in str(err.value)
    assert all(n in str(err.value) for n in networks.names(include_dag=True))
    assert isinstance(err.value, DnnpartError)


def test_pooling_rounds_up_like_caffe():
    assert networks.pooled_side(6, 3, 2, 0, ceil=True) == 3  # floor mode would give 2
    assert networks.pooled_side(6, 3, 2, 0, ceil=False) == 2
    # Caffe/PyTorch clip: a last window that would start in the padding is dropped
    assert networks.pooled_side(5, 2, 2, 1, ceil=True) == 3
    t = networks.build_table("tiny", [1, 2, 6, 6], [networks.pool("p", 3, 2)])
    assert t["out_side"].tolist() == [3]


def test_build_table_refuses_impossible_specs_naming_the_layer():
    with pytest.raises(DnnpartError, match="'c2'.*groups=3"):
        networks.build_table("bad", [1, 4, 8, 8], [networks.conv("c1", 8, 3), networks.conv("c2", 8, 3, groups=3)])
    with pytest.raises(DnnpartError, match="'p'.*flattened"):
        networks.build_table("bad", [1, 4, 8, 8], [networks.fc("f", 10), networks.pool("p", 2, 2)])
    with pytest.raises(DnnpartError, match="'c'.*larger"):
        networks.build_table("bad", [1, 4, 8, 8], [networks.conv("c", 8, 11)])
    with pytest.raises(DnnpartError, match="input shape"):
        networks.build_table("bad", [1, 3, 8, 9], [networks.relu("r")])
    with pytest.raises(DnnpartError, match="valid types"):
        networks.build_table("bad", [1, 3, 8, 8], [networks.Layer("x", "sigmoid")])


@pytest.mark.parametrize("name", networks.names(include_dag=True))
def test_layers_from_table_inverts_build_table(name):
    t = networks.get(name)
    rebuilt = networks.build_table(name, t.attrs["input_shape"], networks.layers_from_table(t))
    assert rebuilt.equals(t)


def test_layers_from_table_refuses_an_inconsistent_table():
    t = networks.get("lenet")
    t.loc[2, "macs"] += 1
    with pytest.raises(DnnpartError, match="'conv2'.*macs"):
        networks.layers_from_table(t)
    with pytest.raises(DnnpartError, match="missing columns"):
        networks.layers_from_table(networks.get("lenet").drop(columns="macs"))


@pytest.mark.parametrize("name", list(DAG_PUBLISHED))
def test_dag_table_contract(name):
    t = networks.get(name)
    assert t["name"].is_unique and t["type"].isin(networks.LAYER_TYPES).all()
    assert (t["in_elements"] == t["in_channels"] * t["in_side"] ** 2).all()
    assert (t["out_elements"] == t["out_channels"] * t["out_side"] ** 2).all()
    out = dict(zip(t["name"], zip(t["out_channels"], t["out_side"])))
    out["data"] = (3, 224)
    for row in t.itertuples():  # a layer takes in what its inputs emit (a join: all of it)
        srcs = row.inputs.split(",")
        assert sum(out[s][0] for s in srcs) == (row.in_channels if row.type != "fc" else out[srcs[0]][0])
    blocks = t["block"].to_numpy()
    assert blocks[0] == 1 and set(np.diff(blocks)) <= {0, 1}
    weighted = t["type"].isin(["conv", "dwconv", "fc"])
    assert (t.loc[weighted, "macs"] > 0).all() and (t.loc[~weighted, "macs"] == 0).all()
    assert (t.loc[t["type"] == "batchnorm", "params"] == 2 * t.loc[t["type"] == "batchnorm", "in_channels"]).all()


def test_zoo_summary():
    s = networks.zoo_summary().set_index("network")
    assert list(s.index) == networks.names(include_dag=True)
    assert s.loc["resnet18", "blocks"] == 22 and s.loc["vgg16", "blocks"] == s.loc["vgg16", "layers"] == 39
    assert s.loc["alexnet", "layers"] == 23 and s.loc["alexnet", "input_shape"] == "1x3x227x227"
    assert s.loc["vgg16", "gmacs"] == pytest.approx(15.47, rel=0.01)
    assert s.loc["lenet", "output_shape"] == "1x10"


def test_a_network_longer_than_the_limit_is_refused():
    from dnnpart.limits import MAX_LAYERS

    relus = [networks.relu(f"r{i}") for i in range(MAX_LAYERS + 1)]
    with pytest.raises(DnnpartError, match="5,001 layers; at most 5,000"):
        networks.build_table("long", [1, 1, 2, 2], relus)
    assert len(networks.build_table("ok", [1, 1, 2, 2], relus[:MAX_LAYERS])) == MAX_LAYERS
