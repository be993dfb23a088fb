"""The trainable torch view of an ONNX model: import through onnx2torch and its missing
converters, the view itself, fine-tuning, the teacher, the loader and distributed training.
The one wing built on torch; reads ``graph``, ``data``, ``measure``, ``criteria`` and ``errors``."""
