"""Cost of the enhancement chain at 640x480 and 1920x1080 (host stage and full chain)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from uwstego.enhance import Enhancer, EnhanceSettings, apply_params, clahe_lightness

from timing import emit, time_ms


def _frame(w: int, h: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    scene = rng.uniform(0.1, 0.9, size=(h // 8, w // 8, 3))
    scene = np.kron(scene, np.ones((8, 8, 1)))  # blocky texture, more image-like than noise
    return (scene * np.array([0.3, 0.8, 0.9]) * 255).astype(np.uint8)


def measure(w: int, h: int, repeats: int) -> dict[str, dict[str, float]]:
    rgb = _frame(w, h)
    img01 = rgb.astype(np.float32) / 255.0
    enh = Enhancer(EnhanceSettings())
    params = enh.frame_params(rgb)
    full = Enhancer(EnhanceSettings(clahe=True))
    return {
        "statistics_ms": time_ms(lambda: enh.frame_params(rgb), repeats),
        "graph_stage_numpy_ms": time_ms(lambda: apply_params(img01, params), repeats),
        "clahe_ms": time_ms(lambda: clahe_lightness(img01, 2.0, 8), repeats),
        "host_stage_default_ms": time_ms(lambda: enh.host_stage(rgb), repeats),
        "host_stage_with_clahe_ms": time_ms(lambda: full.host_stage(rgb), repeats),
        "full_chain_numpy_ms": time_ms(lambda: full.apply(rgb), repeats),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    repeats = 5 if args.quick else 20
    emit({
        "benchmark": "enhancement",
        "note": "host_stage_default is what the vehicle runs per frame on the CPU when CLAHE is "
                "off; the colour maths then runs inside the fused graph.",
        "640x480": measure(640, 480, repeats),
        "1920x1080": measure(1920, 1080, repeats),
    })


if __name__ == "__main__":
    main()
