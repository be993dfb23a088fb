"""What a model costs and how good it is: onnxruntime timing, latency tables, the task's
measures, quality drops and their intervals. No torch at import (a CUDA device's name is asked
of it lazily); reads ``graph``, ``data`` and ``errors``."""
