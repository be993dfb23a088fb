"""``python -m onnxprune …`` (and ``torchrun --nproc-per-node N -m onnxprune …``): the CLI."""

from onnxprune_cli.main import main

if __name__ == "__main__":
    main()
