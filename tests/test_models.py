"""Every predictor honours the contract: shapes, gradients, causality, overfitting, sampling, state."""

from __future__ import annotations

import io

import pytest
import torch

from vidpred.config import get_profile
from vidpred.models import BASELINES, LEARNED, MODELS, build, count_flops
from vidpred.models.baselines import Blend
from vidpred.models.recurrent import RecurrentPredictor
from vidpred.models.sampling import truth_masks

SMOKE = get_profile("smoke")
VARIANTS = {
    "convlstm": SMOKE.model_config("convlstm"),
    "predrnn": SMOKE.model_config("predrnn"),
    "predrnn_v2": {**SMOKE.model_config("predrnn"), "decouple_beta": 0.1, "reverse_scheduled_sampling": True},
    "transformer": SMOKE.model_config("transformer"),
    "convlstm_gated": {**SMOKE.model_config("convlstm"), "output": "gated"},
    "convlstm_direct": {**SMOKE.model_config("convlstm"), "output": "direct", "analogue_window": 0},  # the paper's
    "transformer_mix": {**SMOKE.model_config("transformer"), "output": "mix"},
}
FITTED_BLEND = {"alphas": tuple(torch.linspace(0.9, 0.3, 15).tolist())}


def make(variant: str):
    torch.manual_seed(0)
    return build(variant.split("_")[0], **VARIANTS[variant])


def config_of(name: str, profile: str) -> dict:
    """A profile's model config; the blend gets fitted-looking weights (it is fitted on data elsewhere)."""
    return FITTED_BLEND if name == "blend" else get_profile(profile).model_config(name)


def clips(batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 30, 1, 64, 64, generator=g), torch.rand(batch, 15, 1, 64, 64, generator=g)


@pytest.mark.parametrize("profile", ["smoke", "book", "full"])
@pytest.mark.parametrize("name", list(MODELS))
def test_output_shape_and_range(name, profile):
    model = build(name, **config_of(name, profile)).eval()
    context, _ = clips(1)
    with torch.no_grad():
        out = model(context, 15)
    assert out.shape == (1, 15, 1, 64, 64)
    assert out.min() >= 0 and out.max() <= 1


def test_baselines_values():
    context = torch.rand(2, 30, 1, 64, 64)
    assert torch.equal(build("copy_last")(context, 3), context[:, -1:].expand(-1, 3, -1, -1, -1))
    assert torch.allclose(build("context_mean")(context, 3)[:, 2], context.mean(1))
    ramp = torch.linspace(0, 0.29, 30).view(1, 30, 1, 1, 1).expand(1, 30, 1, 4, 4)
    assert torch.allclose(build("linear")(ramp, 2)[0, :, 0, 0, 0], torch.tensor([0.30, 0.31]), atol=1e-6)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_gradients_reach_every_parameter(variant):
    model = make(variant).train()
    loss, logs = model.training_loss(*clips(), progress=0.3)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient reaches {missing}"
    if variant == "predrnn_v2":
        assert logs["aux"] > 0


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_prediction_does_not_depend_on_how_many_frames_are_asked(variant):
    model = make(variant).eval()
    context, _ = clips()
    with torch.no_grad():
        assert torch.allclose(model(context, 5), model(context, 15)[:, :5], atol=1e-6)


@pytest.mark.parametrize("variant", ["convlstm", "convlstm_direct", "predrnn", "predrnn_v2"])
def test_recurrent_rollout_is_causal(variant):
    """With ground truth fed in, the prediction of frame t never sees frame t or later."""
    model = make(variant).eval()
    context, future = clips()
    all_true = (torch.ones(2, 30, dtype=torch.bool), torch.ones(2, 15, dtype=torch.bool))
    with torch.no_grad():
        base, _ = model.rollout(context, future, 15, all_true)  # predictions of frames 1 … 44
        for j in (10, 29, 33):  # a context frame, the last context frame, a future frame
            frames = torch.cat([context, future], 1).clone()
            frames[:, j] += 0.5
            changed, _ = model.rollout(frames[:, :30], frames[:, 30:], 15, all_true)
            assert torch.equal(changed[:, :j], base[:, :j]), f"a prediction before frame {j} saw frame {j}"
            assert not torch.allclose(changed[:, j], base[:, j]), f"frame {j + 1} ignores frame {j}"


@pytest.mark.parametrize("variant", ["convlstm", "convlstm_gated", "predrnn", "predrnn_v2", "transformer",
                                     "convlstm_book", "predrnn_book", "predrnn_v2_book", "transformer_book"])
def test_lean_step_equals_the_reference_rollout(variant):
    """The lean step computes what the reference computes: the same loss, gradients and predictions, to
    float rounding. Recurrent models: merged convolutions, the first-layer input convolution and the
    context read-out for all context steps at once, and a fixed context part of the memory, against
    every step one by one with each convolution as the paper writes it (also for a rollout longer than
    the memory); the transformer: explicit attention steps against the fused kernel."""
    name, book = variant.removesuffix("_book"), variant.endswith("_book")
    torch.manual_seed(0)
    config = {**get_profile("book").model_config(name)} if book else VARIANTS[variant]
    model = build(name.removesuffix("_gated"), **config)
    with torch.no_grad():  # away from the initialisation, so the pointer and the gate matter
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.02)
    context, future = clips()
    results = []
    for lean in (False, True):
        model.lean_step = lean
        model.zero_grad()
        torch.manual_seed(1)  # the same scheduled-sampling draws
        loss, _ = model.train().training_loss(context, future, progress=1.0)
        loss.backward()
        with torch.no_grad():
            prediction = model.eval()(context, 15)
            if hasattr(model, "memory_size"):  # 20 > 15 frames: more inputs than the memory holds
                prediction = torch.cat([prediction, model(context, 20)], 1)
        results.append((loss.detach(), torch.cat([p.grad.flatten() for p in model.parameters()]), prediction))
    (loss_a, grad_a, pred_a), (loss_b, grad_b, pred_b) = results
    assert torch.allclose(loss_a, loss_b, rtol=1e-5)
    assert (grad_a - grad_b).norm() <= 1e-4 * grad_a.norm()
    assert torch.allclose(pred_a, pred_b, atol=1e-4)


@pytest.mark.parametrize("name", ["convlstm", "predrnn"])
def test_forward_hooks_on_cells_see_every_step_of_either_path(name):
    """Chapter 5 reads PredRNN's memory increments with forward hooks on the cells: the lean step goes
    through each cell's forward like the reference, so a hook sees the same outputs, once per step."""
    model = make(name).eval()
    context, _ = clips()
    seen = {}
    for lean in (False, True):
        model.lean_step = lean
        outputs = seen.setdefault(lean, [])
        handle = model.cells[-1].register_forward_hook(lambda cell, inputs, out, kept=outputs: kept.append(out[1]))
        try:
            with torch.no_grad():
                model(context, 15)
        finally:
            handle.remove()
    assert len(seen[True]) == len(seen[False]) == 30 + 15 - 1  # every input frame, the last prediction excluded
    assert torch.allclose(torch.stack(seen[True]), torch.stack(seen[False]), atol=1e-5)


def test_reverse_sampling_inside_the_context_runs_step_by_step():
    """While V2's schedule feeds predictions into the context, the context cannot be batched; the lean
    step still merges its convolutions, and agrees with the reference."""
    model = make("predrnn_v2").train()
    context, future = clips()
    losses = []
    for lean in (False, True):
        model.lean_step = lean
        torch.manual_seed(3)
        losses.append(model.training_loss(context, future, progress=0.0)[0])
    assert torch.allclose(losses[0], losses[1], rtol=1e-5)


def test_analogue_windows_for_many_inputs_equal_one_at_a_time():
    from vidpred.models.analogue import analogue_distances, analogue_windows

    frames = torch.rand(2, 20, 16)
    distances = (frames[:, :, None] - frames[:, None]).square().mean(-1)
    times = tuple(range(3, 18))
    together = analogue_windows(distances, times, 4)  # (B, 2, T, J), oldest candidate first
    for row, t in enumerate(times):
        forward, mirror = analogue_distances(distances, t, 4)  # newest first, (B, t + 1)
        assert torch.equal(together[:, 0, row, : t + 1], forward.flip(1))
        assert torch.equal(together[:, 1, row, : t + 1], mirror.flip(1))
        assert torch.isinf(together[:, :, row, t + 1 :]).all()  # not seen yet at t


@pytest.mark.parametrize("variant", ["convlstm", "predrnn_v2", "transformer"])
def test_bf16_autocast_trains_and_keeps_the_read_out_in_float32(variant):
    """Under CPU bf16 autocast (what training uses where the CPU has bf16) the step runs, gradients reach
    every parameter, and the predicted frames are float32 and close to the float32 model's."""
    model = make(variant).train()
    context, future = clips()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = model.training_loss(context, future, progress=1.0)
        prediction = model.eval()(context, 15)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert prediction.dtype == torch.float32
    with torch.no_grad():
        assert (prediction - model(context, 15)).abs().mean() < 0.01


@pytest.mark.parametrize("causal", [True, False])
def test_explicit_attention_under_bf16_autocast_is_close_to_the_fused_kernel(causal):
    """The CPU's explicit attention runs its products in bfloat16 under autocast (softmax in float32): its
    output stays within bfloat16 rounding of the fused kernel in float32, and a query never reads a later
    key when causal."""
    from vidpred.models.transformer import Attention

    torch.manual_seed(0)
    attention = Attention(64, 4, 0.0)
    x = torch.randn(6, 45, 64)
    attention.explicit_on_cpu = False
    reference = attention(x, causal)
    attention.explicit_on_cpu = True
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fast = attention(x, causal)
    assert fast.dtype == torch.bfloat16
    assert (fast.float() - reference).abs().max() < 0.02 * reference.abs().max()
    if causal:  # the first 20 outputs have no gradient from the later inputs
        x.requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            attention(x, causal)[:, :20].float().sum().backward()
        assert x.grad[:, 20:].abs().max() == 0 and x.grad[:, :20].abs().max() > 0


def test_amp_picks_bf16_on_a_cpu_only_where_it_is_native(monkeypatch):
    from vidpred import train

    cpu = torch.device("cpu")
    assert train.amp_dtype(cpu, False) is None
    monkeypatch.setattr(train, "cpu_has_bf16", lambda: True)
    assert train.amp_dtype(cpu, True) == torch.bfloat16
    monkeypatch.setattr(train, "cpu_has_bf16", lambda: False)
    assert train.amp_dtype(cpu, True) is None  # emulated bf16 is slower than float32


def test_transformer_sees_only_the_context():
    model = make("transformer").eval()
    context, _ = clips()
    with torch.no_grad():
        base = model(context, 15)
        later = context.clone()
        later[:, -1] += 0.3
        assert not torch.allclose(model(later, 15), base)  # the last context frame matters
    with pytest.raises(ValueError, match="built for 30 context frames"):
        model(context[:, :20], 15)


def test_truth_masks_follow_the_schedules():
    def mask(progress, reverse):
        return truth_masks(progress, 4000, 30, 15, stop=0.5, reverse=reverse, device=torch.device("cpu"))

    context, future = mask(0.0, False)
    assert context.all() and future.all()  # teacher forcing at the start
    context, future = mask(1.0, False)
    assert context.all() and not future.any()  # free-running at the end
    context, future = mask(0.25, False)
    assert abs(future.float().mean() - 0.5) < 0.03
    context, future = mask(0.0, True)  # reverse: half the context is the model's own
    assert context[:, 0].all() and abs(context[:, 1:].float().mean() - 0.5) < 0.03
    assert abs(future.float().mean() - 0.5) < 0.03
    context, future = mask(1.0, True)
    assert context.all() and not future.any()


@pytest.mark.parametrize("variant", ["convlstm", "predrnn_v2"])
def test_training_at_progress_one_is_inference(variant):
    model = make(variant).eval()  # eval: no decoupling term, same arithmetic as inference
    context, future = clips()
    assert isinstance(model, RecurrentPredictor)
    masks = model.masks(1.0, context, 15)
    with torch.no_grad():
        trained, _ = model.rollout(context, future, 15, masks)
        assert torch.allclose(trained[:, 29:].clamp(0, 1), model(context, 15), atol=1e-6)
        teacher, _ = model.rollout(context, future, 15, model.masks(0.0, context, 15))
        if variant == "convlstm":  # progress 0 without reverse sampling: the future is fed in
            forced, _ = model.rollout(context, future, 15, (torch.ones(2, 30, dtype=torch.bool),
                                                             torch.ones(2, 15, dtype=torch.bool)))
            assert torch.equal(teacher, forced)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_overfits_one_batch(variant):
    torch.manual_seed(0)
    model = make(variant).train()
    from vidpred.data import windows

    data = windows(SMOKE.data)["train"]
    context, future = (torch.stack(t) for t in zip(data[0], data[7]))
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    losses = []
    for step in range(75):  # teacher forcing first, free-running (as at inference) for the second half
        loss, _ = model.training_loss(context, future, progress=min(1.0, step / 37))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    with torch.no_grad():
        final = torch.mean((model(context, 15) - future) ** 2).item()
        # The bar: the blend of copy-last and the context mean fitted on these very clips. The
        # retrieval read-outs start near it, so "10× below the first loss" would not say much.
        blend = Blend.fit(list(zip(context, future)))
        bar = torch.mean((blend(context, 15) - future) ** 2).item()
    first = torch.mean((make(variant).eval()(context, 15) - future) ** 2).item()
    if VARIANTS[variant].get("output", "retrieve") == "retrieve":  # starts near the blend: must beat it clearly
        assert final < min(first / 2, bar), f"loss fell only from {first:.4f} to {final:.4f} (blend {bar:.4f})"
    else:  # the older read-outs start far off and learn the blend, which is the point chapter 6 makes
        assert final < first / 10, f"loss fell only from {first:.4f} to {final:.4f}"


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_state_dict_round_trip(variant):
    model = make(variant).eval()
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    torch.manual_seed(123)
    twin = build(variant.split("_")[0], **VARIANTS[variant]).eval()
    twin.load_state_dict(torch.load(buffer, weights_only=True))
    context, _ = clips()
    with torch.no_grad():
        assert torch.equal(model(context, 15), twin(context, 15))


def test_flops_are_counted_for_attention_and_convolutions():
    transformer = build("transformer", **VARIANTS["transformer"])
    convlstm = build("convlstm", **VARIANTS["convlstm"])
    assert count_flops(transformer) > 0 and count_flops(convlstm) > 0
    # Doubling the attention width (dim) more than doubles the counted FLOPs.
    wide = build("transformer", **{**VARIANTS["transformer"], "dim": 64})
    assert count_flops(wide) > 2 * count_flops(transformer)
    # the baselines do element-wise work only, but for the analogue's matrix of frame distances
    assert all(count_flops(build(b, **config_of(b, "smoke"))) == 0 for b in BASELINES if b != "analogue")
    assert 0 < count_flops(build("analogue")) < count_flops(convlstm)


def test_registry_errors_are_clear():
    with pytest.raises(ValueError, match="unknown model 'lstm'"):
        build("lstm")
    with pytest.raises(ValueError, match="convlstm has no option depth"):
        build("convlstm", depth=3)
    assert set(LEARNED) <= set(MODELS)


def test_analogue_distances_match_a_direct_computation():
    from vidpred.models.analogue import analogue_distances

    frames = torch.rand(2, 14, 16)
    distances = (frames[:, :, None] - frames[:, None]).square().mean(-1)
    t, window = 12, 3
    forward, mirror = analogue_distances(distances, t, window)
    for j in range(t + 1):  # column t − j: candidate frame j
        ahead = [distances[:, t - i, j - 1 - i] for i in range(window)] if j >= window else None
        behind = [distances[:, t - i, j + 1 + i] for i in range(window) if j + 1 + i != t - i] \
            if j + window <= t else None
        for got, terms in ((forward[:, t - j], ahead), (mirror[:, t - j], behind)):
            if terms:
                assert torch.allclose(got, torch.stack(terms).mean(0))
            else:
                assert torch.isinf(got).all()


def test_analogue_rollout_in_mixing_weights_equals_one_over_pixels():
    """The analogue rolls out on each input's mixing weights over the context, with distances from the
    context's Gram matrix; here the same method over pixels: every prediction materialised, its
    distances taken from the pixel differences."""
    from vidpred.models.analogue import analogue_distances

    torch.manual_seed(0)
    base = torch.rand(10, 256)
    context = torch.stack([base[t % 7] + 0.05 * torch.rand(256) for t in range(30)])[None]  # near-periodic
    context = torch.cat([context, torch.rand(1, 30, 256)]).view(2, 30, 1, 16, 16)
    config = build("analogue").config
    frames = list(context.flatten(2).double().unbind(1))
    for t in range(29, 44):
        stacked = torch.stack(frames, 1)
        distances = torch.zeros(2, 44, 44, dtype=torch.float64)
        distances[:, : t + 1, : t + 1] = (stacked[:, :, None] - stacked[:, None]).square().mean(-1)
        forward, mirror = analogue_distances(distances.float(), t, config.window)
        scores = torch.logaddexp(-forward / config.temperature, -mirror / config.temperature)
        weights = torch.softmax(scores, 1).flip(1).double()
        frames.append(torch.einsum("bj,bjn->bn", weights, stacked))
    direct = torch.stack(frames[30:], 1).float().view(2, 15, 1, 16, 16)
    assert torch.allclose(build("analogue")(context, 15), direct, atol=1e-5)


def test_analogue_copies_repeated_and_reversed_motion():
    poses = torch.rand(30, 1, 64, 64)
    periodic = torch.stack([poses[t % 10] for t in range(45)])[None]  # a repetition every 10 frames
    turning = torch.stack([poses[abs(t - 25)] for t in range(45)])[None]  # turns back at frame 25
    analogue, forward_only = build("analogue"), build("analogue", mirror=False)
    assert torch.allclose(analogue(periodic[:, :30], 15), periodic[:, 30:], atol=1e-5)
    assert torch.allclose(analogue(turning[:, :30], 15), turning[:, 30:], atol=1e-5)
    # the movement after the turn never happened forwards: only the mirror candidates find it
    assert (forward_only(turning[:, :30], 15) - turning[:, 30:]).abs().mean() > 0.05
    short = torch.rand(2, 5, 1, 64, 64)  # shorter than the window: no analogue, so copy-last
    assert torch.equal(build("analogue", n_context=5)(short, 3), short[:, -1:].expand(-1, 3, -1, -1, -1))


def test_recurrent_analogue_pointer_starts_as_the_baseline():
    poses = torch.rand(30, 1, 64, 64)
    turning = torch.stack([poses[abs(t - 25)] for t in range(45)])[None]
    model = make("convlstm").eval()
    assert model.config.analogue_window == 8
    with torch.no_grad():
        prediction = model(turning[:, :30], 15)
    error = (prediction - turning[:, 30:]).abs().mean()
    copy_error = (turning[:, 29:30] - turning[:, 30:]).abs().mean()
    assert error < 0.05 * copy_error  # an untrained model already finds the reversed movement


def test_transformer_can_point_at_the_analogue():
    model = make("transformer").eval()
    n = model.config.n_context
    with torch.no_grad():  # all weight on the analogue candidate, no fallback
        model.head.weight.zero_()
        model.head.bias.zero_()
        model.head.bias[n] = 50.0
        model.fallback_gate.fill_(-50.0)
        context, _ = clips()
        assert torch.allclose(model(context, 15), build("analogue")(context, 15).clamp(0, 1), atol=1e-5)


def test_checkpoints_from_before_an_option_still_load():
    from vidpred.models import rebuild

    old = build("convlstm", **SMOKE.model_config("convlstm"), analogue_window=0)
    saved = {k: v for k, v in old.config_dict().items() if k != "analogue_window"}  # as saved before it existed
    model = rebuild("convlstm", saved)
    model.load_state_dict(old.state_dict())
    assert model.config.analogue_window == 0
