"""Run by test_train.py under ``torchrun --nproc_per_node=2``: trains the smoke ConvLSTM with DDP (gloo)
and saves each rank's final parameters so the test can compare them."""

import dataclasses
import sys
from pathlib import Path

import torch

from vidpred.config import get_profile
from vidpred.data import windows
from vidpred.models import build
from vidpred.train import dist_info, fit

out = Path(sys.argv[1])
torch.set_num_threads(1)
profile = get_profile("smoke")
cfg = dataclasses.replace(profile.train, steps=6, batch_size=2, eval_every=3, checkpoint_every=3)
torch.manual_seed(0)  # every rank starts from the same weights, as DDP also enforces
model = build("convlstm", **profile.model_config("convlstm"))
data = windows(profile.data)
fit(model, data["train"], data["val"], cfg, out / "run", profile.data, progress=False)
rank = dist_info()[0]
torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, out / f"rank{rank}.pt")
torch.distributed.destroy_process_group()
