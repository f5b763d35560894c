"""The clips of other scenes: where the book finds them, and which clips a model harms."""

from __future__ import annotations

from vidpred.unseen import CLIPS_DIR_ENV, find_clips, harmed, labels


def payload(ratios: dict[str, dict[str, float]]) -> dict:
    return {"clips": {clip: {"results": {"copy_last": {"mse_vs_copy_last": 1.0},
                                         **{m: {"mse_vs_copy_last": r} for m, r in row.items()}}}
                      for clip, row in ratios.items()}}


def test_harmed_lists_each_model_above_the_limit_on_each_clip_and_nothing_else():
    found = harmed(payload({"a.mp4": {"convlstm": 1.06, "transformer": 1.05},
                            "b.avi": {"convlstm": 0.7, "transformer": 2.0}}))
    assert found == {"convlstm": {"a.mp4": 1.06}, "transformer": {"b.avi": 2.0}}  # 1.05 itself is no harm
    assert harmed(payload({"a.mp4": {"convlstm": 0.9}})) == {}


def test_harmed_can_be_asked_about_some_models_only():
    ratios = payload({"a.mp4": {"convlstm": 1.5, "blend": 1.3, "analogue": 2.0}})
    assert harmed(ratios, models=["convlstm"]) == {"convlstm": {"a.mp4": 1.5}}
    assert harmed(ratios, models=["blend", "analogue"]) == {"blend": {"a.mp4": 1.3}, "analogue": {"a.mp4": 2.0}}
    assert set(harmed(ratios)) == {"convlstm", "blend", "analogue"}  # all but copy-last by default


def test_find_clips_beside_the_project_or_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv(CLIPS_DIR_ENV, raising=False)
    project = tmp_path / "main" / "book"
    project.mkdir(parents=True)
    assert find_clips(project) is None
    clips = tmp_path / "shared" / "realclips"
    clips.mkdir(parents=True)
    assert find_clips(project) is None  # a folder without its README is not the set
    (clips / "README.md").write_text("clips")
    assert find_clips(project) == clips
    monkeypatch.setenv(CLIPS_DIR_ENV, str(tmp_path / "elsewhere"))
    assert find_clips(project) is None  # named but absent: not found, not the other one
    (tmp_path / "elsewhere").mkdir()
    assert find_clips(project) == tmp_path / "elsewhere"


def test_labels_are_short_and_never_merge_two_clips():
    names = ["v_Basketball_g01_c02.mp4", "v_Basketball_g01_c02.avi", "v_Basketball_g07_c04.mp4", "short.mp4"]
    found = labels(names)
    assert found["short.mp4"] == "short" and found["v_Basketball_g01_c02.mp4"] == "v_Basketball…c02"
    assert len(set(found.values())) == len(names) and all(len(v) <= 18 for v in found.values())


def test_no_harm_on_the_first_windows_of_each_clip_only(tmp_path):
    """The smoke profile's quick check: the same table over each clip's first windows (every clip kept)."""
    import numpy as np

    from vidpred.config import get_profile
    from vidpred.models import build
    from vidpred.unseen import no_harm
    from vidpred.video import write_video

    rng = np.random.default_rng(0)
    folder = tmp_path / "clips"
    folder.mkdir()
    for name, frames in (("a.mp4", 150), ("b.mp4", 80)):  # 25 fps: 8 and 3 windows of 45 frames, 15 apart
        smooth = np.cumsum(rng.normal(0, 3, (frames, 1, 1)), 0) + rng.uniform(60, 200, (1, 64, 64))
        write_video(folder / name, np.clip(smooth, 0, 255).astype(np.uint8), fps=25.0, preset="veryfast")
    cfg = get_profile("real").data
    models = {"context_mean": build("context_mean")}
    every = no_harm(models, folder, tmp_path / "all", cfg)
    first = no_harm(models, folder, tmp_path / "first", cfg, first_windows=2)
    assert {c: e["windows"] for c, e in every["clips"].items()} == {"a.mp4": 8, "b.mp4": 3}
    assert {c: e["windows"] for c, e in first["clips"].items()} == {"a.mp4": 2, "b.mp4": 2}
    assert first["pooled"]["copy_last"]["windows"] == 4
