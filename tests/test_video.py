"""Videos written to disk and read back; comparison grids; the figures and the widget viewer."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch

from vidpred.video import comparison_grid, error_map, read_video, to_uint8, write_video
from vidpred.viz import animation_html, compare, plot_bars, plot_horizon, plot_learning_curves, show_frames, table


def moving_square(n=15, size=64):
    frames = np.zeros((n, size, size), np.uint8)
    for t in range(n):
        frames[t, 20:36, 2 * t : 2 * t + 16] = 255
    return frames


@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_round_trip_keeps_every_frame(tmp_path, suffix):
    frames = moving_square()
    path = write_video(tmp_path / f"square{suffix}", frames, fps=5)
    back = read_video(path)
    assert back.shape == (15, 64, 64, 3)  # every frame kept, the last one too
    gray = back.mean(-1)
    for t in (0, 7, 14):  # the square is where it was written (lossy codecs: compare coarsely)
        assert gray[t, 20:36, 2 * t + 3 : 2 * t + 13].mean() > 200
        assert gray[t, 40:, :].mean() < 30


def test_mp4_is_h264(tmp_path):
    import cv2

    path = write_video(tmp_path / "a.mp4", moving_square(9, 33), fps=5)  # odd size is padded to even
    capture = cv2.VideoCapture(str(path))
    fourcc = int(capture.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode()
    assert fourcc.lower() in ("avc1", "h264")
    assert int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)) == 34
    capture.release()
    with pytest.raises(ValueError, match="write .mp4 or .gif"):
        write_video(tmp_path / "a.avi", moving_square(), fps=5)


def test_grid_layout_labels_and_errors():
    truth = moving_square()
    shifted = np.roll(truth, 4, axis=2)
    grid = comparison_grid(truth, {"copy": truth, "shifted": shifted}, context=truth[:5], scale=2)
    assert grid.shape[0] == 20 and grid.shape[-1] == 3
    assert grid.shape[2] == 5 * (128 + 2)  # truth, 2 models, 2 error maps

    def panel(i, t):
        return grid[t, 14 : 14 + 128, i * 130 : i * 130 + 128]

    assert panel(3, 10).max() < 10  # copy is exact: a black (inferno 0) error map
    assert panel(4, 10).max() > 100  # the shifted one is not
    assert grid[0, :14].max() > 0  # labels drawn
    errors = error_map(shifted, truth)
    assert errors.shape == (15, 64, 64, 3)


def test_grid_wraps_into_rows_and_grows_its_labels():
    truth = moving_square()
    grid = comparison_grid(truth, {"copy": truth, "shifted": np.roll(truth, 4, axis=2)}, scale=2, columns=2)
    assert grid.shape[1:3] == (3 * (14 + 128) + 2 * 2 + 14, 2 * 130)  # 5 panels in 3 rows, a 2-px gap, the footer
    assert grid[:, 2 * 144 :, 130:].max() == 0  # the last row's empty place is black
    assert grid[0, 2 * 144 : 2 * 144 + 14, :130].max() > 0  # its first panel is labelled
    big = comparison_grid(truth, {"copy": truth}, scale=4, with_error=False)
    assert big.shape[1:3] == (28 + 256 + 28, 2 * (256 + 2))  # labels and footer grow with the panels


def test_to_uint8():
    assert to_uint8(torch.ones(3, 1, 4, 4)).max() == 255
    assert to_uint8(torch.full((3, 1, 4, 4), -1.0)).max() == 0


def test_figures_build():
    rows = [{"model": "a", "kind": "baseline", "mse": 0.1, "ssim": 0.5, "inference_ms_per_clip": 1.0,
             "mse_per_horizon": [0.1, 0.2], "psnr_per_horizon": [10, 9], "ssim_per_horizon": [0.6, 0.5]}]
    assert len(plot_horizon(rows).axes) == 3
    assert len(plot_bars(rows).axes) == 3
    history = [{"kind": "train", "step": i, "loss": 1 / (i + 1)} for i in range(50)]
    history.append({"kind": "val", "step": 49, "val_mse": 0.1})
    assert len(plot_learning_curves({"m": history}, {"copy_last": 0.2}).axes) == 2
    assert len(show_frames({"x": torch.rand(6, 1, 8, 8)}, every=2).axes) == 3
    html = animation_html(moving_square(4))
    assert "<script" in html and html.count("data:image/png;base64") == 4


def test_table_headers_wrap_and_compact_tables_are_smaller():
    import pandas as pd

    frame = pd.DataFrame({"predrnn_v2": [0.123456], "ok": [True]}, index=["clip_a"])
    html = table(frame, {"predrnn_v2": "{:.2f}"}, caption="units").to_html()
    assert ">predrnn_<wbr>v2<" in html and ">clip_a<" in html  # columns may wrap, the row labels stay whole
    assert ">0.12<" in html and ">✓<" in html and "font-size: 0.92em" in html and "0.85em" not in html
    small = table(frame, compact=True).to_html()
    assert "font-size: 0.85em" in small and "padding: 0.3em 0.45em" in small


def test_widget_updates_when_its_controls_change():
    context = torch.rand(2, 30, 1, 16, 16)
    future = torch.rand(2, 15, 1, 16, 16)
    predictions = {"copy": context[:, -1:].expand(-1, 15, -1, -1, -1), "truth": future}
    viewer = compare(context, future, predictions, clip_names=["first", "second"])
    first_image = viewer.image.value
    assert first_image[:4] == b"\x89PNG" and "context frame 30" in viewer.caption.value
    viewer.frame.value = 31  # the first predicted frame
    assert viewer.image.value != first_image and "predicted frame 1 of 15" in viewer.caption.value
    panels = viewer.current_panels()
    assert np.array_equal(panels[0], to_uint8(future[0])[0])
    viewer.model.value = "truth"
    assert viewer.current_panels()[2].max() < 10  # a perfect prediction has a black error map
    viewer.clip.value = 1
    assert np.array_equal(viewer.current_panels()[0], to_uint8(future[1])[0])
    viewer.show_error.value = False
    assert len(viewer.current_panels()) == 2
    assert "<script" in viewer.animation(clip=1)
