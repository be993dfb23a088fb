"""The ONNX side: read a model, trace how its channels flow, count what it costs, slice it,
run it in onnxruntime and write it. No torch (``devices`` asks torch, lazily, whether a GPU
exists); imports nothing of onnxprune outside this wing but ``errors``."""
