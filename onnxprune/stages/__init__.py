"""The stages ``pipeline.prune`` runs, as passes (``passes.Pass``: what each requires and ensures
of the state they hand on; ``passes.PassManager`` runs, checks, times, checkpoints and resumes
them), each reading the run's frozen context (``context.Run``): blocks, the lossless pass, the
rounds (score → choose → slice → fine-tune) or the budget search, latency correction, the final
fine-tuning, verification, the judge, INT8 and the report. May read every wing and ``options``
and ``report``; only ``pipeline`` reads the stages."""
