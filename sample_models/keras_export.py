"""Build ``keras_mobilenetv2.onnx``: a Keras application exported by tf2onnx, as another
framework's users bring it (NHWC input behind a Transpose, BatchNorm folded by tf2onnx's
optimizer, a Softmax head). Random weights (``weights=None``), 10 classes, width 0.35, 96×96,
so it stays small enough to ship.

TensorFlow and tf2onnx are not onnxprune's dependencies; run this with a Python that has them:

    python -m venv /tmp/tf && /tmp/tf/bin/pip install tensorflow-cpu tf2onnx
    /tmp/tf/bin/python sample_models/keras_export.py
"""

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
import tf2onnx

HERE = Path(__file__).resolve().parent

keras.utils.set_random_seed(0)
model = keras.applications.MobileNetV2(weights=None, input_shape=(96, 96, 3), alpha=0.35, classes=10)
rng = np.random.default_rng(0)
for layer in model.layers:  # BatchNorm statistics that are not trivial, so folding them is exercised
    if isinstance(layer, keras.layers.BatchNormalization):
        n = layer.gamma.shape[0]
        layer.set_weights([rng.uniform(0.5, 1.5, n), rng.uniform(0.0, 0.2, n), rng.uniform(-0.1, 0.1, n),
                           rng.uniform(0.5, 1.5, n)])
spec = (tf.TensorSpec((None, 96, 96, 3), tf.float32, name="input"),)
function = tf.function(lambda x: model(x, training=False), input_signature=spec)
tf2onnx.convert.from_function(function, input_signature=spec, opset=13,
                              output_path=str(HERE / "keras_mobilenetv2.onnx"))
print("wrote keras_mobilenetv2.onnx")
