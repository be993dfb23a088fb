"""The docs say what committed runs printed: the README's summary is the file its script saved,
each figure cited below is in the doc and in the results file named beside it, and every path the
docs point at exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DOCS = [ROOT / "README.md", ROOT / "sample_models" / "README.md", ROOT / "benchmarks" / "README.md",
        *sorted((ROOT / "docs").glob("*.md"))]

# (doc, the figure as the doc writes it, results file, the figure as the file prints it)
CITED = [
    ("README.md", "0.89 / 0.87 / 0.67", "speedup.txt", ["e0.89", "e0.87", "e0.67"]),
    ("README.md", "0.89 / 0.91 / 0.66", "speedup.txt", ["e0.89", "e0.91", "e0.66"]),
    ("docs/hardware.md", "ResNet-18 3.1× faster for 3.4× fewer MACs", "speedup.txt", ["3.44x", "3.06x"]),
    ("docs/hardware.md", "ResNet-50 2.9× for 3.3× (0.87 [0.82–0.91] against\n0.91 [0.83–0.95])", "speedup.txt",
     ["3.35x", "2.92x e0.87 [0.82-0.91]", "e0.91 [0.83-0.95]"]),
    ("docs/hardware.md", "MobileNetV2 2.2× for 3.4× (0.67 against 0.66)", "speedup.txt",
     ["3.35x", "2.24x e0.67", "e0.66"]),
    ("docs/hardware.md", "0.88\n/ 0.91 / 0.67 against the peer's 0.78 / 0.82 / 0.66", "speedup-2026-12-02-xeon.txt",
     ["e0.88", "e0.91", "e0.67", "e0.78", "e0.82", "e0.66"]),
    ("docs/hardware.md", "reach 0.57\n(`width_mult=0.5`, the same MACs) and 0.41 (0.35)", "mobilenet_ceiling.txt",
     ["e0.57", "e0.41"]),
    ("docs/hardware.md", "reaches 0.74 (and `--round-to 8` 0.67)", "mobilenet_ceiling.txt", ["e0.74", "e0.67"]),
    ("docs/hardware.md", "0.84 (onnxprune) and 0.66 (`width_mult=0.5`)", "mobilenet_ceiling.txt",
     ["e0.84", "e0.66"]),
    ("docs/hardware.md", "12 s in all on ResNet-50", "overhead.txt", []),
    ("docs/models.md", "92.6 % held-out accuracy without the added BatchNorm, 98.5 % with\n  it, 97.0 %",
     "folded_bn.txt", ["0.926", "0.985", "0.970"]),
    ("docs/quality.md", "51.5 % of the images", "tasks.txt", ["51.5"]),
    ("docs/quality.md", "keeps 0.964", "tasks.txt", ["0.964"]),
    ("docs/quality.md", "IoU 0.975", "tasks.txt", ["0.975"]),
    ("docs/quality.md", "| reader | strings | 22.5 / 17.5", "tasks-2026-12-06-before.txt", ["22.5", "17.5"]),
    ("docs/quality.md", "| 6.5 / 11.5 | 13.0 / 9.0 | 15.0 / 18.5 |", "tasks.txt", ["6.5", "11.5", "13.0", "9.0", "15.0", "18.5"]),
    ("docs/quality.md", "96.1 / 94.8 / 82.1 %", "recovery.txt", ["96.1", "94.8", "82.1"]),
    ("docs/quality.md", "95.5 / 93.3 / 70.7 %", "recovery.txt", ["95.5", "93.3", "70.7", "[-13.5,-9.4]", "-11.4", "-3.6",
                                                                  "-3.1"]),
    ("docs/usage.md", "none 97.78 / 97.04 / 99.26 %, shift 98.52 / 99.26 / 100.00 %, crop 98.52 /\n  96.30 / 99.26 %, "
     "crop-flip 97.04 / 90.37 / 99.26 %", "augment.txt", ["97.78%", "97.04%", "99.26%", "98.52%", "100.00%", "96.30%",
                                                          "90.37%"]),
    ("docs/usage.md", "peaks at 4.4 GB (6.6 GB with its loader workers), at\n  1280×1280 with the short schedule at 5.3 GB "
     "(6.0 GB)", "scale_detectors.txt", ["4420", "6625", "5336", "6017"]),
    ("docs/usage.md", "10.7 s into a run on a 104 MB detector", "first_message.txt", ["10.7 s", "104 MB"]),
    ("docs/usage.md", "`taylor-abs-w`", "criteria-taxonomy.txt", ["taylor/mean-abs/l2/×‖w‖ (ρ 0.711, 41.5%)"]),
    ("docs/methods.md", "oracle ρ 0.711 against 0.693, accuracy pruned once to 50 % 41.5 % against 34.6 %",
     "criteria-taxonomy.txt", ["ρ 0.693, acc50 34.6%", "taylor/mean-abs/l2/×‖w‖ (ρ 0.711, 41.5%)"]),
    ("docs/methods.md", "the two-branch file takes 1.47×\nthe plain one's time at batch 1 and 1.38× at batch 8",
     "lccl.txt", ["1.47", "1.38"]),
    ("docs/deployment.md", "kept 15.6 %, 36.1 % and 15.5 % of the FLOPs", "budget.txt", ["15.6", "36.1", "15.5"]),
    ("docs/design.md", "a quarter of a second", "cli_errors.txt", ["missing --data folder"]),
]


def _text(doc: str) -> str:
    return re.sub(r"[ \t]*\n[ \t]*", "\n", (ROOT / doc).read_text())


@pytest.mark.parametrize("doc, figure, results, printed", CITED, ids=[f"{c[0]}:{c[2]}" for c in CITED])
def test_each_cited_figure_is_in_the_doc_and_in_its_results_file(doc: str, figure: str, results: str,
                                                                 printed: list[str]) -> None:
    text = _text(doc)
    assert re.sub(r"[ \t]*\n[ \t]*", "\n", figure) in text, f"{doc} no longer says {figure!r}"
    assert f"results/{results}" in text, f"{doc} does not name results/{results}"
    saved = (RESULTS / results).read_text()
    assert [p for p in printed if p not in saved] == [], f"results/{results} does not print them"


def test_the_readme_summary_is_what_its_script_printed() -> None:
    """benchmarks/readme_sample.py runs the README's first command and saves its stdout."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("The first command prints this on stdout", 1)[1].split("```\n", 2)[1]
    saved = [line for line in (RESULTS / "readme_sample.txt").read_text().splitlines() if not line.startswith("#")]
    assert block.rstrip("\n").splitlines() == saved, "re-run python benchmarks/readme_sample.py and copy its output"


def _cited_paths() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        for path in re.findall(r"(?<![\w/.])((?:benchmarks|tests|onnxprune|cli|docs|sample_models)/[\w./-]*\w)",
                               doc.read_text()):
            found.append((str(doc.relative_to(ROOT)), path))
    for match in re.findall(r"results/([\w.-]+\.(?:txt|png))", "\n".join(d.read_text() for d in DOCS)):
        found.append(("docs", f"benchmarks/results/{match}"))
    return found


def test_every_path_the_docs_name_exists() -> None:
    missing = [f"{doc}: {path}" for doc, path in _cited_paths()
               if not (ROOT / path).exists() and ".pruned." not in path]  # what the README's command writes
    assert len(_cited_paths()) > 40 and missing == []


def test_the_tests_name_test_files_that_exist() -> None:
    """Docstrings that tell how to run a test name its real path."""
    missing = [f"{source.relative_to(ROOT)}: {path}" for source in sorted((ROOT / "tests").rglob("*.py"))
               for path in re.findall(r"\b(tests/[\w/]+\.py)", source.read_text()) if not (ROOT / path).exists()]
    assert missing == []


def test_every_benchmark_script_is_in_the_benchmarks_readme() -> None:
    listed = (ROOT / "benchmarks" / "README.md").read_text()
    scripts = [p.name for p in sorted((ROOT / "benchmarks").glob("*.py")) if "__main__" in p.read_text()]
    assert scripts and [s for s in scripts if f"`benchmarks/{s}`" not in listed] == []
