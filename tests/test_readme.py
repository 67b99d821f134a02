"""The README's recipes, run as written at a tiny size, so that a recipe that stops working fails.

The shell commands are read from the ``bash`` blocks of the README's "Recipes" section, in order,
into one temporary folder that first gets the user's data the recipes name (``dive_images/``,
``dive.mp4``, ``dive_bag/``, ``suim/``; made from a synthetic dive). Each command then runs with
only these changes, all visible in :func:`tiny`:

- ``[optional]`` parts are included (``a|b`` alternatives: the first);
- ``--weights FILE`` becomes ``--random-weights`` (no official weights offline);
- size options are appended (argparse keeps the last value): few steps, frames and pixels.

Commands that need hardware or a ROS graph (``build-engine``: TensorRT; ``ros2 launch``; ``play``:
DDS, covered by ``tests/ros/``) are skipped with that reason; ``$EDITOR`` is an edit of the file.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("torch")

from tests.support.commands import REPO, Outcome, run_tool
from tests.support.media import write_bag
from uwstego.training.masks import SUIM_CLASSES
from uwstego.training.synth.settings import DiveSettings
from uwstego.training.synth.writer import write_dive

FRAMES = 8  # KNN positives are ranks 1..7: at least 8 frames per training set
TINY = {
    "train": ["--steps", "2", "--batch-size", "2", "--resolution", "32", "--crop-type", "full",
              "--checkpoint-every", "2"],
    "clusters": ["--per-cluster", "2", "--max-images", "8"],
    "evaluate": ["--resolution", "32"],
    "synth": ["--frames", str(FRAMES), "--size", "96x72"],
    "pretrain": ["--backbone", "tiny_vit8", "--epochs", "1", "--batch-size", "8",
                 "--global-size", "32", "--local-size", "16", "--local-crops", "2",
                 "--out-dim", "32", "--warmup-epochs", "0", "--frame-size", "40"],
    "export-trt": ["--network-size", "64x40", "--frames", "1"],
}
SKIP = {"build-engine": "needs TensorRT on an NVIDIA GPU (tests/test_trt_engine.py)",
        "ros2": "needs a ROS 2 installation with launch_ros (not on PyPI)",
        "play": "publishes over DDS: runs under tools/run_isolated.sh in tests/ros/"}
def recipe_commands(readme: Path = REPO / "README.md") -> list[str]:
    """Shell lines of the ```bash blocks under '## Recipes', comments removed."""
    text = readme.read_text()
    section = text.split("\n## Recipes", 1)[1].split("\n## ", 1)[0]
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S):
        for line in block.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line:
                lines.append(line)
    return lines


def tiny(line: str) -> list[str]:
    def optional(match: re.Match) -> str:
        return " ".join(word.split("|")[0] for word in match.group(1).split())

    argv = shlex.split(re.sub(r"\[([^\]]*)\]", optional, line))
    out: list[str] = []
    words = iter(argv)
    for word in words:
        if word == "--weights":
            next(words)
            out.append("--random-weights")
        else:
            out.append(word)
    command = out[0] if out[0] != "uwstego" else out[1]
    return out + TINY.get(command, [])


def _user_data(root: Path) -> None:
    """The footage the recipes name, made from a synthetic dive."""
    source = root / ".footage"
    write_dive(DiveSettings(seed=7, frames=FRAMES, width=96, height=72), source, folders=True,
               bag=False, progress=False)
    images = sorted((source / "images").glob("*.png"))
    rgb = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in images]
    (root / "dive_images").mkdir()
    for p, frame in zip(images, rgb, strict=True):
        cv2.imwrite(str(root / "dive_images" / p.name), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    video = cv2.VideoWriter(str(root / "dive.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10.0,
                            (96, 72))
    for frame in rgb * 5:  # --video-stride 5 keeps every 5th of 40 frames
        video.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    video.release()
    write_bag(root / "dive_bag", rgb)
    palette = np.array([c.color for c in SUIM_CLASSES], np.uint8)
    for d in ("suim/images", "suim/masks_rgb"):
        (root / d).mkdir(parents=True)
    for p, frame in zip(images, rgb, strict=True):
        cv2.imwrite(str(root / "suim" / "images" / f"{p.stem}.jpg"),
                    cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        labels = cv2.imread(str(source / "labels" / p.name), cv2.IMREAD_UNCHANGED)
        mask = palette[np.where(labels == 255, 0, labels) % len(palette)]
        cv2.imwrite(str(root / "suim" / "masks_rgb" / f"{p.stem}.bmp"),
                    cv2.cvtColor(mask, cv2.COLOR_RGB2BGR))


def _run(line: str, root: Path) -> Outcome | str:
    argv = tiny(line)
    key = argv[0] if argv[0] != "uwstego" else argv[1]
    if key in SKIP:
        return f"skipped: {SKIP[key]}"
    if argv[0] == "$EDITOR":  # the user renames a cluster
        names = root / argv[1]
        names.write_text(names.read_text().replace("cluster_0", "reef", 1))
        return "edited"
    return run_tool(argv[0], *argv[1:], cwd=root, timeout=600)


@pytest.fixture(scope="module")
def readme_run(tmp_path_factory) -> tuple[Path, list[tuple[str, Outcome | str]]]:
    root = tmp_path_factory.mktemp("readme")
    _user_data(root)
    results = []
    for line in recipe_commands():
        if line.startswith("uwstego replay"):
            break
        results.append((line, _run(line, root)))
        outcome = results[-1][1]
        if isinstance(outcome, Outcome) and outcome.returncode:
            break
    return root, results


def test_the_recipes_are_found():
    lines = recipe_commands()
    assert any(line.startswith("uwstego train dive_images/") for line in lines)
    assert any(line.startswith("export-trt ") for line in lines)
    assert any(line.startswith("uwstego replay dive/") for line in lines)


def test_readme_recipes_up_to_the_export_work_as_written(readme_run):
    root, results = readme_run
    failed = [(line, o.stderr[-1500:]) for line, o in results
              if isinstance(o, Outcome) and o.returncode]
    assert failed == []
    assert (root / "runs" / "reef" / "model.pt").is_file()
    assert (root / "runs" / "reef" / "gallery" / "index.html").is_file()
    assert (root / "runs" / "reef" / "eval").is_dir()
    assert (root / "dive" / "dive.json").is_file()
    assert (root / "bundle" / "bundle.json").is_file()
    from uwstego.training.artifact import load_trained_model

    assert load_trained_model(root / "runs" / "reef" / "model.pt").classes[0].name == "reef"


def test_readme_replay_recipes_work_as_written(readme_run):
    root, results = readme_run
    if not (root / "bundle" / "bundle.json").is_file():
        pytest.skip("the export recipe failed (see the test before)")
    # The compare recipe's second bundle: another export, as its comment says.
    export = next(line for line, _ in results if line.startswith("export-trt"))
    other = run_tool(*tiny(export.replace("runs/reef/", "runs/bag/")
                           .replace("bundle/", "bundle_new/")), cwd=root)
    assert other.returncode == 0, other.stderr[-1500:]
    for line in recipe_commands():
        if not line.startswith(("uwstego replay", "uwstego play", "uwstego survey")):
            continue
        outcome = _run(line, root)
        if isinstance(outcome, str):
            continue
        assert outcome.returncode == 0, (line, outcome.stderr[-1500:])
    assert (root / "report" / "index.html").is_file()
    assert (root / "cmp" / "index.html").is_file()
    assert (root / "dive_report" / "survey" / "survey.csv").is_file()
    assert (root / "campaign" / "index.html").is_file()
