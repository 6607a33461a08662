"""The training loop's behaviour on what can go wrong, in-process on the real configs."""
from __future__ import annotations

import json

import pytest
import torch

from funnel.train.loop import train
from funnel.train.schedules import Constant, Cosine, Staircase, WarmupStaircase
from tests.helpers import QUIET, compose_config


def quick(fake_data, *overrides):
    return compose_config(["experiment=quick", "logger=none", f"dataset.mnist_5k_path={fake_data}/mnist_5k.csv.gz",
                           "trainer.epochs=2", *QUIET, *overrides])


def test_a_diverged_run_is_recorded_not_raised(fake_data, tmp_path):
    cfg = quick(fake_data, "optimizer=sgd", "optimizer.lr=inf", "trainer.log_every=4")
    assert train(cfg, tmp_path) is None
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "diverged" and summary["diverged"] is True
    assert 1 <= summary["diverged_step"] <= summary["steps"] <= 4
    last = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["diverged"] is True
    # restarting the same run (as a restarted sweep does) leaves it recorded, without training again
    train(cfg, tmp_path)
    assert json.loads((tmp_path / "summary.json").read_text()) == summary


def test_objective_is_returned_for_sweepers(fake_data, tmp_path):
    value = train(quick(fake_data, "trainer.objective=val/current/top1"), tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert value == summary["final"]["val/current/top1"] == summary["objective"]
    # a sweep that asks a finished run for another metric gets that metric, not the one stored
    assert train(quick(fake_data, "trainer.objective=test/current/top1"), tmp_path) == \
        summary["final"]["test/current/top1"]


def test_an_objective_the_run_lacks_is_named_after_the_run_is_recorded(fake_data, tmp_path):
    with pytest.raises(ValueError, match=r"trainer.objective=val/top1 is not a metric of this run; it has: .*"
                                         r"val/current/top1"):
        train(quick(fake_data, "trainer.objective=val/top1"), tmp_path)
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "finished"


def test_model_dataset_mismatch_is_explained(fake_data, tmp_path):
    with pytest.raises(ValueError, match="model.num_classes=5 but dataset rotated_mnist gives 10"):
        train(quick(fake_data, "+model.num_classes=5"), tmp_path)
    with pytest.raises(ValueError, match="at least 32x32"):
        train(quick(fake_data, "model=resnet50"), tmp_path)
    with pytest.raises(ValueError, match="use model.variant=cifar"):
        train(quick(fake_data, "model=mobilenet_v1", "model.variant=imagenet"), tmp_path)


def test_a_schedule_cannot_overwrite_an_adapted_rate(fake_data, tmp_path):
    with pytest.raises(ValueError, match="use schedule=constant"):
        train(quick(fake_data, "optimizer=sgd_hd", "schedule=staircase"), tmp_path)


def test_global_batch_must_split_evenly_across_ranks(fake_data, tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")  # checked before any process group is needed
    monkeypatch.setattr("funnel.train.distributed.dist.init_process_group", lambda **kw: None)
    with pytest.raises(ValueError, match="must be divisible by the 3 DDP ranks"):
        train(quick(fake_data, "trainer.batch_size=100"), tmp_path)


def test_bf16_autocast_runs(fake_data, tmp_path):
    train(quick(fake_data, "trainer.bf16=true", "model=small_cnn", "trainer.max_steps=3"), tmp_path)
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "finished"


def test_float64_training_keeps_every_tensor_in_float64(fake_data, tmp_path):
    from funnel.train import checkpoint

    train(quick(fake_data, "trainer.dtype=float64", "optimizer=funnel_momentum", "model=small_cnn",
                "trainer.max_steps=3"), tmp_path)
    saved = checkpoint.load(tmp_path / checkpoint.LAST)
    assert {v.dtype for v in saved["model"].values() if v.is_floating_point()} == {torch.float64}
    state = [v for s in saved["optimizer"]["state"].values() for k, v in s.items()
             if isinstance(v, torch.Tensor) and v.is_floating_point() and k != "step"]
    assert state and {v.dtype for v in state} == {torch.float64}


def test_bad_dtype_settings_are_refused(fake_data, tmp_path):
    with pytest.raises(ValueError, match=r"trainer.dtype='float16' is not one of \['float32', 'float64'\]"):
        train(quick(fake_data, "trainer.dtype=float16"), tmp_path)
    with pytest.raises(ValueError, match="set one of the two"):
        train(quick(fake_data, "trainer.dtype=float64", "trainer.bf16=true"), tmp_path)


def test_schedules():
    assert Constant()(7, 100) == 1.0
    s = Staircase(decay_at=(0.5, 0.75), factor=0.1)
    assert [s(k, 100) for k in (0, 49, 50, 74, 75, 99)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    w = WarmupStaircase(warmup=0.05, decay_at=(0.3, 0.6, 0.8))
    assert [w(k, 100) for k in (0, 4, 5, 29, 30, 60, 80)] == pytest.approx([0.2, 1, 1, 1, 0.1, 0.01, 0.001])
    c = Cosine(warmup=10, final_factor=0.1)
    assert c(0, 110) == pytest.approx(0.1) and c(10, 110) == pytest.approx(1.0) and c(110, 110) == pytest.approx(0.1)
    assert c(60, 110) == pytest.approx(0.55)
    with pytest.raises(ValueError, match="increasing fractions"):
        Staircase(decay_at=(0.75, 0.5))


def test_long_override_lists_get_short_unique_directory_names():
    from funnel.train.resolvers import short_dirname

    a = ",".join(f"optimizer.key{i}={i}" for i in range(30))
    b = a.replace("key29=29", "key29=30")
    assert short_dirname("arm=x") == "arm=x"
    assert len(short_dirname(a)) <= 200 and short_dirname(a) == short_dirname(a)
    assert short_dirname(a) != short_dirname(b) and short_dirname(a).startswith(a[:150])


def test_any_override_value_gives_one_safe_folder_name():
    from funnel.train.resolvers import short_dirname

    assert short_dirname("") == "defaults"  # a run without overrides is not its experiment's folder
    assert short_dirname("trainer.objective=val/current/top1") == "trainer.objective=val%2Fcurrent%2Ftop1"
    # injective: a literal "%2F" in a value does not meet the encoding of "/"
    assert short_dirname("label=a%2Fb") != short_dirname("label=a/b")


def test_the_commit_is_recorded_only_for_the_checkout_the_code_is():
    from funnel import __version__
    from funnel.train.records import git_state
    from tests.helpers import ROOT

    assert len(git_state(ROOT)["commit"]) == 40
    # a folder inside a repository that is not that repository's top (an installed copy in someone's project)
    assert git_state(ROOT / "funnel") == {"commit": None, "dirty": None, "version": __version__}
