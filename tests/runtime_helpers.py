"""Shared by the runtime tests: an in-process edge server on 127.0.0.1 (port 0), always stopped."""

import contextlib
import threading

from dnnpart.runtime.server import ServeConfig, serve


@contextlib.contextmanager
def running_server(out, **settings):
    """Yield (address, service) of a server running in a thread; stop it and join the thread, whatever happens.
    Defaults: the paper's fixed delay models (no fitting), a 5 s optimiser limit."""
    box, ready, stop = {}, threading.Event(), threading.Event()

    def started(service, port):
        box.update(service=service, port=port)
        ready.set()

    config = ServeConfig(out=out, **{"server_profile": "paper", "time_limit_s": 5.0, **settings})
    thread = threading.Thread(
        target=serve,
        args=(config,),
        daemon=True,
        kwargs={"ready": lambda line: None, "stop_event": stop, "started": started},
    )
    try:
        thread.start()
        assert ready.wait(timeout=60), "the server did not start"
        yield f"127.0.0.1:{box['port']}", box["service"]
    finally:
        stop.set()
        thread.join(timeout=30)
        assert not thread.is_alive()


def tiny_onnx_chain(path, seed=0, dag=False, op="Relu"):
    """A hand-built ONNX chain (not from the zoo): input "x" [N, 3, 8, 8] with a dynamic batch, Conv (bias) ->
    `op` -> MaxPool -> Flatten -> Gemm -> Softmax, seeded random weights. With dag=True the conv's output is also
    added to the activation's (a residual join), which the runtime refuses."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper, save

    rng = np.random.default_rng(seed)
    w = {
        "w1": rng.normal(size=(4, 3, 3, 3)).astype(np.float32),
        "b1": rng.normal(size=4).astype(np.float32),
        "w2": rng.normal(size=(10, 64)).astype(np.float32),
        "b2": rng.normal(size=10).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv", pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node(op, ["c1"], ["a1"], name="act"),
    ]
    last = "a1"
    if dag:
        nodes.append(helper.make_node("Add", ["c1", "a1"], ["s1"], name="join"))
        last = "s1"
    nodes += [
        helper.make_node("MaxPool", [last], ["p1"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p1"], ["f1"], name="flat", axis=1),
        helper.make_node("Gemm", ["f1", "w2", "b2"], ["g1"], name="fc", transB=1),
        helper.make_node("Softmax", ["g1"], ["y"], name="prob", axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array(a, k) for k, a in w.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    save(model, str(path))
    return path
