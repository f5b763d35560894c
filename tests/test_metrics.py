"""Metrics on known inputs and against scikit-image."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from vidpred.metrics import MetricAccumulator, frame_metrics, mae, mse, psnr, ssim


def test_known_values():
    a = torch.zeros(1, 2, 1, 8, 8)
    b = torch.full((1, 2, 1, 8, 8), 0.1)
    assert torch.allclose(mse(a, b), torch.full((1, 2), 0.01))
    assert torch.allclose(mae(a, b), torch.full((1, 2), 0.1))
    assert torch.allclose(psnr(a, b), torch.full((1, 2), 20.0))
    assert torch.equal(psnr(a, a), torch.full((1, 2), 100.0))  # identical frames: capped, not inf
    x = torch.rand(1, 1, 1, 32, 32)
    assert torch.allclose(ssim(x, x), torch.ones(1, 1), atol=1e-6)
    with pytest.raises(ValueError, match="differ in shape"):
        mse(a, b[:, :1])


@pytest.mark.parametrize("seed", range(4))
def test_ssim_and_psnr_match_scikit_image(seed):
    g = torch.Generator().manual_seed(seed)
    truth = torch.rand(2, 3, 1, 64, 64, generator=g)
    kinds = [truth + 0.1 * torch.randn(truth.shape, generator=g), truth.roll(3, dims=-1), torch.rand(truth.shape, generator=g)]
    prediction = kinds[seed % 3].clamp(0, 1)
    ours_ssim, ours_psnr = ssim(prediction, truth).numpy(), psnr(prediction, truth).numpy()
    for b in range(2):
        for t in range(3):
            p, q = prediction[b, t, 0].double().numpy(), truth[b, t, 0].double().numpy()
            reference = structural_similarity(p, q, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                              use_sample_covariance=False)
            assert ours_ssim[b, t] == pytest.approx(reference, abs=1e-4)
            assert ours_psnr[b, t] == pytest.approx(peak_signal_noise_ratio(q, p, data_range=1.0), abs=1e-3)


def test_ssim_on_frames_that_are_not_square_matches_scikit_image_and_tiny_frames_are_refused():
    g = torch.Generator().manual_seed(7)
    truth = torch.rand(1, 2, 1, 40, 72, generator=g)
    prediction = (truth + 0.2 * torch.randn(truth.shape, generator=g)).clamp(0, 1)
    ours = ssim(prediction, truth)
    for t in range(2):  # the banded blur's rows and columns are each the frame's own size
        reference = structural_similarity(prediction[0, t, 0].double().numpy(), truth[0, t, 0].double().numpy(),
                                          data_range=1.0, gaussian_weights=True, sigma=1.5,
                                          use_sample_covariance=False)
        assert float(ours[0, t]) == pytest.approx(reference, abs=1e-6)
    with pytest.raises(ValueError, match="at least 11×11 pixels, not 8"):
        ssim(torch.rand(1, 1, 1, 8, 8), torch.rand(1, 1, 1, 8, 8))


def test_ssim_penalises_blur_more_than_mse_does():
    truth = torch.zeros(1, 1, 1, 64, 64)
    truth[..., ::4, :] = 1.0  # stripes
    blurred = torch.full_like(truth, truth.mean().item())
    shifted = truth.roll(1, dims=-2)
    assert mse(blurred, truth) < mse(shifted, truth)  # MSE prefers the blur ...
    assert ssim(blurred, truth) < 0.1  # ... SSIM sees it has no structure


def test_accumulator_per_horizon():
    acc = MetricAccumulator()
    truth = torch.zeros(3, 4, 1, 16, 16)
    prediction = torch.zeros(3, 4, 1, 16, 16)
    for t in range(4):
        prediction[:, t] = 0.1 * (t + 1)
    acc.update(prediction[:2], truth[:2])
    acc.update(prediction[2:], truth[2:])
    result = acc.result()
    assert result["mse_per_horizon"] == pytest.approx([0.01, 0.04, 0.09, 0.16])
    assert result["mse"] == pytest.approx(0.075)
    assert result["mse_per_frame_sum"] == pytest.approx(0.075 * 256)
    assert result["psnr_per_horizon"][0] == pytest.approx(20.0)
    assert set(frame_metrics(prediction, truth)) == {"mse", "mae", "psnr", "ssim"}
    assert math.isfinite(result["ssim"])
    assert np.all(np.diff(result["mse_per_horizon"]) > 0)
