"""MSE, MAE, PSNR and SSIM on [0, 1] frames, batched in torch, per frame and per horizon.

SSIM follows Wang et al. (2004) as scikit-image computes it with ``gaussian_weights=True,
sigma=1.5, use_sample_covariance=False, data_range=1``: an 11-tap gaussian window, and the mean
over the positions where the window fits inside the frame. (OpenSTL leaves out ``data_range`` and
so reports inflated SSIM; we don't.) The literature's "MSE per frame" is the per-pixel MSE times the
number of pixels (×4096 at 64×64); both are reported.

Whole-frame MSE is dominated by the background, which every predictor gets nearly right. The
*motion metric* asks whether the figure moved: MSE over the pixels that move, those where the truth
differs from the last context frame by more than ``MOTION_THRESHOLD`` (0.1, about 26 grey levels:
well above the sensor noise, well below a limb on the background). It is pooled over every moving
pixel of the dataset (per horizon: of that predicted frame), so a window where little moves counts
little. Copying the last frame scores badly on it by construction; a model scores well only by
putting the limbs where they will be.
"""

from __future__ import annotations

import torch

SSIM_WINDOW, SSIM_SIGMA = 11, 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03
METRICS = ("mse", "mae", "psnr", "ssim")
MOTION_THRESHOLD = 0.1  # |truth − last context frame| above this marks a moving pixel


def _frames(x: torch.Tensor) -> torch.Tensor:
    """(B, T, C, H, W) or (T, H, W) or (H, W) -> (N, C, H, W) float64-safe view for metrics."""
    if x.dim() == 2:
        x = x[None, None]
    elif x.dim() == 3:
        x = x[:, None]
    elif x.dim() == 5:
        x = x.flatten(0, 1)
    return x.float()


def _check(prediction: torch.Tensor, target: torch.Tensor) -> None:
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ in shape")


def mse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-pixel MSE of each frame: (B, T) for (B, T, C, H, W) inputs."""
    _check(prediction, target)
    return ((prediction.float() - target.float()) ** 2).flatten(-3).mean(-1)


def mae(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    _check(prediction, target)
    return (prediction.float() - target.float()).abs().flatten(-3).mean(-1)


def psnr(prediction: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """PSNR in dB of each frame (identical frames are capped at 100 dB)."""
    error = mse(prediction, target).clamp_min(1e-10)
    return (10 * torch.log10(data_range**2 / error)).clamp_max(100.0)


def gaussian_taps(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """The normalised 1-D gaussian; the 11×11 window is its outer product, so blurring is separable."""
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


def band_matrix(n: int, size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """(n − size + 1, n) float64: row i holds the gaussian taps at columns i … i + size − 1, so ``band @ z``
    is the gaussian blur along z's rows at the positions where the window fits (a 'valid' convolution)."""
    if n < size:
        raise ValueError(f"SSIM needs frames of at least {size}×{size} pixels, not {n} along one side")
    taps = gaussian_taps(size, sigma)
    band = torch.zeros(n - size + 1, n, dtype=torch.float64)
    for i in range(n - size + 1):
        band[i, i:i + size] = taps
    return band


def ssim(prediction: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """SSIM of each frame, shape of the inputs minus (C, H, W); channels are averaged."""
    _check(prediction, target)
    lead = prediction.shape[:-3] if prediction.dim() >= 4 else prediction.shape[:-2]
    x, y = _frames(prediction).double(), _frames(target).double()
    rows = band_matrix(x.shape[-2]).to(x.device)
    cols = band_matrix(x.shape[-1]).to(x.device).T

    def blur(z: torch.Tensor) -> torch.Tensor:  # valid positions only, as scikit-image crops them
        # the separable gaussian as two banded matrix products: the same sums as a convolution, and a BLAS
        # matmul in float64 runs about 20 times faster than a float64 conv2d on a CPU
        return rows @ z @ cols

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.mean(dim=(-3, -2, -1)).float().reshape(lead)


def frame_metrics(prediction: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every metric per frame: each (B, T) for (B, T, 1, H, W) inputs."""
    return {"mse": mse(prediction, target), "mae": mae(prediction, target),
            "psnr": psnr(prediction, target), "ssim": ssim(prediction, target)}


def motion_mask(target: torch.Tensor, last_context: torch.Tensor,
                threshold: float = MOTION_THRESHOLD) -> torch.Tensor:
    """Moving pixels: (B, T, 1, H, W) bool, where |truth − last context frame| > ``threshold``.

    ``last_context`` is (B, 1, 1, H, W) (or (B, 1, H, W)) and is broadcast over the horizon.
    """
    if last_context.dim() == target.dim() - 1:
        last_context = last_context.unsqueeze(1)
    return (target.float() - last_context.float()).abs() > threshold


def moving_sums(prediction: torch.Tensor, target: torch.Tensor,
                last_context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per horizon, the summed squared error over moving pixels and their count: (T,), (T,)."""
    _check(prediction, target)
    mask = motion_mask(target, last_context)
    error = (prediction.float() - target.float()) ** 2 * mask
    return error.double().sum(dim=(0, 2, 3, 4)), mask.double().sum(dim=(0, 2, 3, 4))


def moving_mse(prediction: torch.Tensor, target: torch.Tensor, last_context: torch.Tensor) -> float:
    """MSE over the moving pixels of a batch (pooled over all of them)."""
    error, count = moving_sums(prediction, target, last_context)
    return float(error.sum() / count.sum().clamp_min(1))


class MetricAccumulator:
    """Sums per-horizon metrics over batches; ``result()`` gives means overall and per horizon, and each window's
    MSE over its predicted frames (``window_mse``, in the order added: results by exercise come from it,
    :func:`vidpred.evaluate.by_label`).

    Given the last context frame, it also pools the moving-pixel MSE (see :func:`motion_mask`).
    """

    def __init__(self):
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0
        self.pixels = 0
        self.moving_error: torch.Tensor | None = None
        self.moving_count: torch.Tensor | None = None
        self.window_mse: list[float] = []

    def update(self, prediction: torch.Tensor, target: torch.Tensor,
               last_context: torch.Tensor | None = None) -> None:
        for name, values in frame_metrics(prediction, target).items():
            total = values.double().sum(0).cpu()  # (T,)
            self.sums[name] = self.sums[name] + total if name in self.sums else total
            if name == "mse":
                self.window_mse += values.double().mean(1).cpu().tolist()
        if last_context is not None:
            error, count = (x.cpu() for x in moving_sums(prediction, target, last_context))
            if self.moving_error is None:
                self.moving_error, self.moving_count = error, count
            else:
                self.moving_error, self.moving_count = self.moving_error + error, self.moving_count + count
        self.count += prediction.shape[0]
        self.pixels = prediction.shape[-1] * prediction.shape[-2]

    def result(self) -> dict:
        if self.count == 0:
            raise ValueError("no batch was added")
        out: dict = {}
        for name, total in self.sums.items():
            per_horizon = (total / self.count).tolist()
            out[name] = sum(per_horizon) / len(per_horizon)
            out[f"{name}_per_horizon"] = per_horizon
        out["mse_per_frame_sum"] = out["mse"] * self.pixels  # the literature's scale
        out["window_mse"] = list(self.window_mse)
        if self.moving_error is not None:
            out["moving_mse"] = float(self.moving_error.sum() / self.moving_count.sum().clamp_min(1))
            out["moving_mse_per_horizon"] = (self.moving_error / self.moving_count.clamp_min(1)).tolist()
            out["moving_fraction"] = float(self.moving_count.sum()) / (self.count * self.pixels * len(self.moving_count))
        return out

