"""Running a plan for real (issue 12): split execution, the edge server and the device client over gRPC.

- `split`: a network as one ONNX model per layer (the same weights as `networks.to_onnx`);
- `layers`: onnxruntime sessions over those models (numpy + onnxruntime only);
- `protocol`: the gRPC messages (runtime.proto, modelled on the Open Inference Protocol / KServe v2);
- `server`: `dnnpart serve`, the register -> plan -> run loop and its policies (plan, fifo, srpt);
- `device`: `dnnpart device` and its Python API (grpcio, numpy and onnxruntime only).

Nothing is imported here, so that the device client loads no planning code.
"""
