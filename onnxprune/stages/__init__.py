"""The stages ``pipeline.prune`` runs, each taking the run's frozen context: calibration, the
lossless pass, the rounds (score → select → slice → fine-tune), the budget search, recovery,
verification, INT8 and checkpoints. May read every wing and ``options`` and ``report``;
only ``pipeline`` reads the stages."""
