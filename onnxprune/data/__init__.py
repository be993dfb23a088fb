"""The user's images: sources read lazily, labels, splits and the views fine-tuning trains on.
No torch; of onnxprune it reads only ``graph`` (the model's image input) and ``errors``."""
