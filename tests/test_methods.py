"""The methods issue 25 added: partial labels, DSD recovery, KCP, the channel bandit — each
checked where it could go wrong, and all of them together through the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from cli_run import run_cli
from conftest import SAMPLES

from onnxprune.criteria import get
from onnxprune.data.sources import UNLABELLED
from onnxprune.graph.groups import analyze_groups
from onnxprune.graph.load import load
from onnxprune.graph.runtime import run_batched
from onnxprune.graph.slice import zero_channels
from onnxprune.stages.bandit import ChannelBandit
from onnxprune.stages.recover import MagnitudeMask
from onnxprune.torchview.finetune import labelled_nll
from onnxprune.torchview.view import TorchView


def test_cross_entropy_skips_unlabelled_images_and_weighs_by_their_share() -> None:
    log_probs = torch.log_softmax(torch.randn(4, 5), 1)
    labels = torch.tensor([1, UNLABELLED, 3, UNLABELLED])
    expected = torch.nn.functional.nll_loss(log_probs[[0, 2]], labels[[0, 2]]) * 0.5
    assert torch.allclose(labelled_nll(log_probs, labels), expected)
    assert float(labelled_nll(log_probs, torch.full((4,), UNLABELLED))) == 0.0


def test_dsd_mask_zeroes_the_smallest_share_of_each_weight_tensor_and_holds_it() -> None:
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Flatten(), torch.nn.LazyLinear(4))
    module(torch.zeros(1, 3, 6, 6))
    mask = MagnitudeMask(module, 0.3)
    conv = module[0].weight
    assert abs(float((conv == 0).float().mean()) - 0.3) < 0.01 and abs(mask.sparsity - 0.3) < 0.01
    assert module[0].bias.count_nonzero() == 8  # biases are left alone
    with torch.no_grad():
        conv.add_(1.0)  # what an optimizer step does to every weight
    mask(module, torch.tensor(0.0))
    assert abs(float((conv == 0).float().mean()) - 0.3) < 0.01


def test_kcp_drops_the_copies_a_cluster_repeats_first_but_keeps_one_to_represent_it() -> None:
    rng = np.random.default_rng(0)
    filters = np.concatenate([np.tile(rng.normal(size=(1, 9)), (3, 1)) + rng.normal(0, 0.01, (3, 9)),
                              rng.normal(size=(3, 9)) * 3])
    stats = SimpleNamespace(producer_filters=lambda g: filters, rng=np.random.default_rng(0))
    scores = get("kcp").score(SimpleNamespace(channels=6), stats)
    copies = np.sort(scores[:3])
    assert copies[1] < scores[3:].min()  # two of the three copies go before any distinct filter
    assert copies[2] == scores.max()  # the third represents them


def test_the_bandit_masks_exactly_the_channels_it_does_not_run() -> None:
    loaded = load(SAMPLES / "digits_resnet.onnx")
    analysis = analyze_groups(loaded)
    view = TorchView.of(loaded.model, loaded.image)
    widths = {g.id: g.channels // 2 for g in analysis.prunable}
    bandit = ChannelBandit(view.imported.module, view.model, analysis, view.imported.module_of, widths, 0)
    x = np.random.default_rng(0).normal(size=(4, 3, 32, 32)).astype(np.float32)
    try:
        with torch.no_grad():
            masked = view.run(view.imported.module.eval(), torch.from_numpy(x))[0].numpy()
    finally:
        bandit.close()
    running = {gid: np.flatnonzero(ran) for gid, ran in bandit.running.items()}
    assert all(len(running[g]) == widths[g] for g in running)
    zeroed = run_batched(zero_channels(loaded.model, analysis, running), loaded.image.name, x)[0]
    assert np.allclose(masked, zeroed, atol=1e-4)
    # and with the hooks gone the module is whole again
    with torch.no_grad():
        whole = view.run(view.imported.module, torch.from_numpy(x))[0].numpy()
    assert np.allclose(whole, run_batched(loaded.model, loaded.image.name, x)[0], atol=1e-4)


def test_the_bandit_keeps_the_channels_that_earned_most() -> None:
    loaded = load(SAMPLES / "digits_vgg.onnx")
    analysis = analyze_groups(loaded)
    view = TorchView.of(loaded.model, loaded.image)
    group = analysis.prunable[0]
    bandit = ChannelBandit(view.imported.module, view.model, analysis, view.imported.module_of,
                           {group.id: group.channels - 4}, 0)
    bandit.close()
    bad = np.arange(4) * 5  # every one of these that runs raises the step's loss
    for _ in range(300):
        running = bandit.running[group.id]
        bandit(view.imported.module, torch.tensor(1.0 + running[bad].sum()))
    assert not set(bad) & set(bandit.keep()[group.id])


@pytest.mark.slow  # an end-to-end run of a path off by default: CI runs it (--all)
def test_every_new_method_together_writes_a_verified_model_through_the_cli(tmp_path: Path) -> None:
    """Partial labels (one image in ten), KCP, the bandit's rounds and DSD recovery in one run;
    the written model computes what onnxruntime says it does."""
    images = sorted(p.relative_to(SAMPLES / "digits") for p in (SAMPLES / "digits").rglob("*.png"))
    rows = [f"{p},{p.parts[0]}" for p in images[::10]]
    (tmp_path / "labels.csv").write_text("file,label\n" + "\n".join(rows) + "\n")
    out = tmp_path / "out.onnx"
    result = run_cli(str(SAMPLES / "digits_resnet.onnx"), "--data", str(SAMPLES / "digits"), "--labels",
                     str(tmp_path / "labels.csv"), "--criterion", "kcp", "--schedule", "cucb", "--recover", "dsd",
                     "--target-flops", "0.6", "--rounds", "2", "--round-steps", "4",
                     "--epochs", "0.2", "--round-to", "8", "--no-bench", "--max-drop", "100", "-o", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "out.report" / "report.json").read_text())
    assert 0 < report["data"]["labelled"] < report["data"]["train"] / 5
    after = report["quality"]["after"]
    assert report["quality"]["drop"]["metric"] == "top1_agreement" and 0 < after["labelled"] < 50
    assert "accuracy" in after and report["flops"]["after"] <= 0.6 * report["flops"]["before"]
    assert "DSD: sparse phase" in result.stderr
    assert f"training ({report['data']['labelled']} labelled)" in result.stdout
    assert out.is_file() and report["verification"]["max_abs_error"] < 1e-3
