"""python -m dyncore.train: one process, and two under torchrun (DistributedDataParallel, gloo),
end with the same parameters and the same loss per step on the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys

import dyncore  # noqa: F401
import pytest
import torch

from dyncore.train import main, train

ARGS = ["--steps", "6", "--batch-size", "8", "--dtype", "float64", "--train-size", "64"]


def run(cmd, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done


def test_two_processes_train_exactly_as_one(tmp_path):
    run([sys.executable, "-m", "dyncore.train", *ARGS, "--out", "one.pt"], tmp_path)
    run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "dyncore.train", *ARGS, "--out", "two{rank}.pt"], tmp_path)  # every rank writes its file
    one, two, rank1 = (torch.load(tmp_path / name) for name in ("one.pt", "two0.pt", "two1.pt"))
    assert one["world_size"] == 1 and two["world_size"] == 2 and (two["rank"], rank1["rank"]) == (0, 1)
    for name, value in two["state_dict"].items():  # the ranks' copies stay identical, bit for bit
        assert torch.equal(rank1["state_dict"][name], value), name
    torch.testing.assert_close(torch.tensor(two["losses"]), torch.tensor(one["losses"]), rtol=1e-12, atol=1e-12)
    assert one["state_dict"].keys() == two["state_dict"].keys()
    for name, value in one["state_dict"].items():
        torch.testing.assert_close(two["state_dict"][name], value, rtol=1e-10, atol=1e-12, msg=name)
    # and training did something
    assert one["losses"][-1] != one["losses"][0]


def test_train_in_process_and_its_checks(capsys):
    result = train("conv", steps=3, batch_size=4, train_size=16, progress=False)
    assert len(result["losses"]) == 3 and all(torch.isfinite(torch.tensor(result["losses"])))
    with pytest.raises(ValueError, match="steps must be a positive int"):
        train(steps=0)
    assert main(["--layer", "conv", "--steps", "2", "--batch-size", "4", "--train-size", "16"]) == 0
    assert "conv: 2 steps" in capsys.readouterr().out
