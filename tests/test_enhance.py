from __future__ import annotations

import numpy as np
import pytest

from uwstego.enhance import (
    IDENTITY_PARAMS,
    Enhancer,
    EnhanceSettings,
    apply_params,
    check_rgb_frame,
    clahe_lightness,
)


def _blue_cast(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    """A scene whose red is mostly absorbed, as in clear ocean water a few metres down."""
    rng = np.random.default_rng(seed)
    scene = rng.uniform(0.2, 0.9, size=(h, w, 3))
    cast = np.array([0.25, 0.8, 0.9])
    return (scene * cast * 255).astype(np.uint8)


def test_red_compensation_follows_ancuti_formula():
    img = np.array([[[0.2, 0.6, 0.5]]], dtype=np.float32)
    out = apply_params(img, np.array([0.3, 0.0, 1, 1, 1], np.float32))
    # R' = R + c (1 - R) G
    assert out[0, 0, 0] == pytest.approx(0.2 + 0.3 * 0.8 * 0.6)
    assert out[0, 0, 1:] == pytest.approx([0.6, 0.5])


def test_blue_compensation_and_gains_clip_to_unit_range():
    img = np.array([[[0.5, 0.5, 0.2]]], dtype=np.float32)
    out = apply_params(img, np.array([0.0, 0.5, 3.0, 1.0, 1.0], np.float32))
    assert out[0, 0, 0] == 1.0  # 0.5 * 3 clipped
    assert out[0, 0, 2] == pytest.approx(0.2 + 0.5 * 0.8 * 0.5)


def test_gray_world_balances_channel_means_within_clamp():
    rgb = _blue_cast()
    settings = EnhanceSettings(red_compensation=False, temporal_alpha=1.0)
    out = Enhancer(settings).apply(rgb)
    raw_spread = np.ptp((rgb / 255.0).mean(axis=(0, 1)))
    out_spread = np.ptp(out.mean(axis=(0, 1)))
    assert out_spread < 0.25 * raw_spread


def test_gains_are_clamped():
    rgb = np.full((16, 16, 3), (2, 200, 200), np.uint8)
    settings = EnhanceSettings(red_compensation=False, temporal_alpha=1.0)
    params = Enhancer(settings).frame_params(rgb)
    assert params[2] == pytest.approx(settings.gain_max)


def test_red_compensation_skipped_when_red_is_gone():
    rgb = np.full((16, 16, 3), (1, 150, 160), np.uint8)
    params = Enhancer(EnhanceSettings(gray_world=False)).frame_params(rgb)
    assert params[0] == 0.0


def test_temporal_smoothing_damps_a_sudden_change():
    settings = EnhanceSettings(temporal_alpha=0.1)
    enh = Enhancer(settings)
    dark_red = _blue_cast(seed=1)
    first = enh.frame_params(dark_red)
    neutral = np.full_like(dark_red, 128)
    second = enh.frame_params(neutral)
    fresh = Enhancer(settings).frame_params(neutral)
    # The statistics move a tenth of the way; the gains (a ratio of them) a little more.
    assert abs(second[2] - first[2]) < 0.3 * abs(fresh[2] - first[2])
    enh.reset()
    assert enh.frame_params(neutral) == pytest.approx(fresh)


def test_clahe_changes_lightness_not_hue():
    rng = np.random.default_rng(3)
    low_contrast = (0.4 + 0.1 * rng.random((64, 64, 1))) * np.array([0.3, 0.6, 0.7])
    out = clahe_lightness(low_contrast.astype(np.float32), clip=2.0, tiles=8)
    assert out.dtype == np.uint8
    assert out.std() > (low_contrast * 255).std()
    # The dominant channel stays dominant: hue is untouched.
    assert (out[..., 2] >= out[..., 0]).mean() > 0.95


def test_clahe_moves_the_whole_chain_to_the_host():
    rgb = _blue_cast()
    settings = EnhanceSettings(clahe=True)
    img, params = Enhancer(settings).host_stage(rgb)
    assert np.array_equal(params, IDENTITY_PARAMS)
    assert not np.array_equal(img, rgb)
    assert settings.graph_steps() == ["imagenet_normalisation"]
    assert settings.host_steps()[-1] == "clahe"


def test_without_clahe_the_host_passes_the_frame_through():
    rgb = _blue_cast()
    img, params = Enhancer().host_stage(rgb)
    assert img is rgb
    assert params[0] > 0  # red compensation active for a blue cast
    assert "red_compensation" in EnhanceSettings().graph_steps()


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (np.zeros((8, 8), np.uint8), "grey image"),
        (np.zeros((8, 8, 1), np.uint8), "grey image"),
        (np.zeros((8, 8, 4), np.uint8), "4-channel"),
        (np.zeros((8, 8, 3), np.float32), "dtype uint8"),
        (np.zeros((0, 8, 3), np.uint8), "empty image"),
        ([[1, 2, 3]], "numpy image"),
    ],
)
def test_bad_frames_get_a_clear_error(frame, message):
    with pytest.raises(ValueError, match=message):
        check_rgb_frame(frame)
    with pytest.raises(ValueError, match=message):
        Enhancer().frame_params(frame)


def test_settings_round_trip_and_reject_unknown_keys():
    s = EnhanceSettings(clahe=True, red_alpha=0.7)
    assert EnhanceSettings.from_dict(s.to_dict()) == s
    with pytest.raises(ValueError, match="unknown enhancement settings"):
        EnhanceSettings.from_dict({**s.to_dict(), "sharpen": True})
    with pytest.raises(ValueError, match="temporal_alpha"):
        EnhanceSettings(temporal_alpha=0.0)
