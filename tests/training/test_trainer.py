"""The one training loop and its checkpoints: learning happens, crashes lose nothing, resume is exact."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")
from torch import nn  # noqa: E402

from slimvision.config import BaseConfig  # noqa: E402
from slimvision.errors import ConfigError, InputError, SlimvisionError  # noqa: E402
from slimvision.training.checkpoint import CheckpointStore, load_checkpoint  # noqa: E402
from slimvision.training.trainer import CosineDecay, Trainer, TrainerConfig  # noqa: E402


class Regression:
    """Fit y = x @ w_true with a linear layer: the loss must fall towards zero."""

    def __init__(self) -> None:
        self.model = nn.Linear(4, 2)

    def __call__(self, batch, phase):
        x, y = batch
        mse = nn.functional.mse_loss(self.model(x), y)
        return {"loss": mse, "rmse": mse.detach().sqrt()}


def batches(count: int = 8, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    w_true = torch.tensor([[1.0, -2.0], [0.5, 0.0], [0.0, 1.5], [-1.0, 1.0]])
    data = []
    for _ in range(count):
        x = torch.randn(16, 4, generator=generator)
        data.append((x, x @ w_true))
    return data


def make(steps: int, run_dir=None, seed: int = 0, **config):
    torch.manual_seed(seed)
    task = Regression()
    optimizer = torch.optim.Adam(task.model.parameters(), lr=0.05)
    cfg = TrainerConfig(steps=steps, log_every=5, checkpoint_every=config.pop("checkpoint_every", 10),
                        progress=False, **config)
    return task, Trainer(task, {"main": optimizer}, cfg, run_dir=run_dir, extra={"note": "test"})


def test_loss_falls_and_history_is_logged():
    task, trainer = make(60)
    history = trainer.fit(batches())
    assert history.steps == list(range(5, 61, 5))
    losses = history.values["loss"]
    assert losses[-1] < 0.05 * losses[0]
    assert set(history.values) == {"loss", "rmse"}


def test_resume_gives_exactly_the_uninterrupted_run(tmp_path):
    straight_task, straight = make(20)
    straight.fit(batches(4))
    task, first = make(10, tmp_path / "run", checkpoint_every=5)
    first.fit(batches(4))  # stops at 10 (think: killed after the step-10 checkpoint)
    resumed_task, second = make(20, tmp_path / "run", seed=123, checkpoint_every=5)  # other init: must be overwritten
    history = second.fit(batches(4)[2:] + batches(4)[:2])  # the data continues where it stopped (10 % 4 = 2)
    assert history.resumed_from == 10
    for a, b in zip(straight_task.model.parameters(), resumed_task.model.parameters()):
        torch.testing.assert_close(a, b)


def test_checkpoints_are_complete_pruned_and_pointed_to(tmp_path):
    task, trainer = make(30, tmp_path / "run", checkpoint_every=10, keep_last=2)
    trainer.fit(batches())
    store = CheckpointStore(tmp_path / "run", keep_last=2)
    assert [p.name for p in store.checkpoints()] == ["step-00000020", "step-00000030"]
    assert (tmp_path / "run" / "latest").read_text().strip() == "step-00000030"
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.startswith(".")]  # no staging left
    meta = json.loads((store.latest() / "trainer.json").read_text())
    assert meta["step"] == 30 and meta["extra"] == {"note": "test"}
    assert store.latest_step() == 30 and CheckpointStore(tmp_path / "empty").latest_step() == 0
    # Tensors live in safetensors, not in the JSON (which only lists their names).
    assert "exp_avg" not in json.dumps(meta["optimizers"]["main"]["state"])
    assert "main/state/0/exp_avg" in meta["optimizers"]["main"]["tensors"]


def test_a_crash_while_saving_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    task, trainer = make(10, tmp_path / "run", checkpoint_every=5)
    trainer.fit(batches())
    store = CheckpointStore(tmp_path / "run")
    import slimvision.training.checkpoint as checkpoint

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint, "_fsync_folder", broken)
    with pytest.raises(OSError, match="disk full"):
        store.save(15, task.model, trainer.optimizers)
    assert store.latest().name == "step-00000010"
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["latest", "step-00000005", "step-00000010"]


def test_two_phases_each_step_their_own_optimiser():
    class TwoNets:
        def __init__(self):
            self.model = nn.ModuleDict({"a": nn.Linear(2, 1), "b": nn.Linear(2, 1)})
            self.calls = []

        def __call__(self, batch, phase):
            self.calls.append(phase)
            return {"loss": self.model[phase](batch).pow(2).mean()}

    task = TwoNets()
    before = {k: m.weight.detach().clone() for k, m in task.model.items()}
    optimizers = {"a": torch.optim.SGD(task.model["a"].parameters(), lr=0.1),
                  "b": torch.optim.SGD(task.model["b"].parameters(), lr=0.1)}
    history = Trainer(task, optimizers, TrainerConfig(steps=3, log_every=1, progress=False)).fit([torch.ones(4, 2)])
    assert task.calls == ["a", "b"] * 3
    assert all(not torch.equal(before[k], task.model[k].weight) for k in before)
    assert set(history.values) == {"a/loss", "b/loss"}


def test_a_phase_computes_no_gradients_for_parameters_it_does_not_step():
    class Chained:  # phase "b" backpropagates through "a", like a GAN's generator step through D
        def __init__(self):
            self.model = nn.ModuleDict({"a": nn.Linear(2, 2), "b": nn.Linear(2, 2)})
            self.seen = []

        def __call__(self, batch, phase):
            self.seen.append((phase, self.model["a"].weight.requires_grad, self.model["b"].weight.requires_grad))
            return {"loss": self.model["a"](self.model["b"](batch)).pow(2).mean()}

    task = Chained()
    optimizers = {name: torch.optim.SGD(task.model[name].parameters(), lr=0.1) for name in ("a", "b")}
    Trainer(task, optimizers, TrainerConfig(steps=1, log_every=1, progress=False)).fit([torch.ones(4, 2)])
    assert task.seen == [("a", True, False), ("b", False, True)]
    assert all(p.requires_grad for p in task.model.parameters())


def test_bad_runs_fail_clearly(tmp_path):
    with pytest.raises(ConfigError, match="steps must be at least 1"):
        TrainerConfig(steps=0)
    with pytest.raises(ConfigError, match="grad_clip must be positive"):
        TrainerConfig(grad_clip=0.0)
    task, trainer = make(5)
    with pytest.raises(SlimvisionError, match="gave no batches"):
        trainer.fit([])

    class Exploding(Regression):
        def __call__(self, batch, phase):
            return {"loss": torch.tensor(float("nan"), requires_grad=True)}

    with pytest.raises(SlimvisionError, match="loss became nan at step 1"):
        Trainer(Exploding(), {"main": torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=1)},
                TrainerConfig(steps=2, progress=False)).fit(batches())
    task, trainer = make(5, tmp_path / "run", checkpoint_every=5)
    trainer.fit(batches())
    with pytest.raises(InputError, match="does not fit this model"):
        load_checkpoint(CheckpointStore(tmp_path / "run").latest(), nn.Linear(3, 2), trainer.optimizers)


def test_cosine_decay_scales_each_parameter_group_from_its_own_rate():
    first, second = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([{"params": [first], "lr": 1.0}, {"params": [second], "lr": 1.0}])
    seen = [[group["lr"] for group in optimizer.param_groups] for _ in CosineDecay(range(5), optimizer, [0.1, 1.0], 0, 4)]
    assert seen[0] == [0.1, 1.0] and seen[2] == pytest.approx([0.05, 0.5]) and seen[4] == [0.0, 0.0]
    with pytest.raises(SlimvisionError, match="3 rates for 2"):
        CosineDecay(range(1), optimizer, [1.0, 1.0, 1.0], 0, 4)


# ------------------------------------------------------------------ damaged checkpoints on resume
def _finished_run(tmp_path, steps: int = 10):
    task, trainer = make(steps, tmp_path / "run", checkpoint_every=5)
    trainer.fit(batches())
    return CheckpointStore(tmp_path / "run")


def _resume(tmp_path):
    return make(20, tmp_path / "run", checkpoint_every=5)[1].fit(batches())


@pytest.mark.parametrize("damage, named", [
    (lambda p: (p / "model.safetensors").write_bytes((p / "model.safetensors").read_bytes()[:40]), "model.safetensors"),
    (lambda p: (p / "optimizers.safetensors").write_bytes(b""), "optimizers.safetensors"),
    (lambda p: (p / "model.safetensors").unlink(), "model.safetensors"),
    (lambda p: (p / "trainer.json").write_text("{not json"), "trainer.json"),
    (lambda p: (p / "trainer.json").write_text("[1, 2]"), "trainer.json"),
    (lambda p: (p / "trainer.json").write_bytes(b"\xff\xfe\x00garbage"), "trainer.json"),
    (lambda p: _edit_json(p / "trainer.json", step="ten"), "trainer.json"),
    (lambda p: _edit_json(p / "trainer.json", optimizers=None), "trainer.json"),
    (lambda p: _edit_json(p / "trainer.json", optimizers={"other": {}}), "trainer.json"),
    (lambda p: _drop_tensor(p / "optimizers.safetensors", "rng/torch"), "optimizers.safetensors"),
    (lambda p: _drop_tensor(p / "optimizers.safetensors", "main/state/0/exp_avg"), "optimizers.safetensors"),
    (lambda p: _drop_tensor(p / "model.safetensors", "bias"), "model.safetensors"),
])
def test_a_damaged_checkpoint_is_a_one_line_error_naming_its_file(tmp_path, damage, named):
    store = _finished_run(tmp_path)
    damage(store.latest())
    with pytest.raises(InputError) as caught:
        _resume(tmp_path)
    message = str(caught.value)
    assert named in message and "step-00000010" in message and "\n" not in message


def _edit_json(path, **changes):
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def _drop_tensor(path, key):
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(path))
    del tensors[key]
    save_file(tensors, str(path))


@pytest.mark.parametrize("pointer", ["../../elsewhere/step-00000005", "/tmp/step-00000005", "step-00000010/..",
                                     "notes.txt"])
def test_latest_naming_anything_but_a_checkpoint_of_this_run_is_refused(tmp_path, pointer):
    store = _finished_run(tmp_path)
    # A complete checkpoint outside the run, which the old code would have loaded.
    outside = make(5, tmp_path / "elsewhere", checkpoint_every=5)[1]
    outside.fit(batches())
    (store.folder / "latest").write_text(pointer + "\n")
    with pytest.raises(InputError, match="latest: names .*not a checkpoint folder of this run"):
        _resume(tmp_path)
    with pytest.raises(InputError, match="latest"):
        store.latest_step()


def test_the_cli_reports_a_damaged_checkpoint_in_one_line(tmp_path, capsys):
    """Through 'gan train': a truncated checkpoint is 'error: <file>: ...' and exit 2, not a traceback."""
    from slimvision.cli.main import main
    from tests.training.test_gan import crops_folder, tiny_train_arguments

    data = crops_folder(tmp_path, 8)
    run = tmp_path / "run"
    arguments = tiny_train_arguments(data, run)
    assert main([*arguments, "--steps", "2"]) == 0
    weights = run / "checkpoints" / "step-00000002" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    capsys.readouterr()
    assert main([*arguments, "--steps", "4"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and str(weights) in err and len(err.splitlines()) == 1


def test_a_run_killed_mid_save_leaves_temporaries_that_the_next_run_removes(tmp_path):
    store = _finished_run(tmp_path)
    import subprocess
    import sys

    from slimvision.io.atomic import temp_name

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()          # a PID whose process has exited
    # What kill -9 during save() leaves: a staging folder, latest's temporary file; and one
    # staging folder of an earlier version (no PID in its name).
    for name in (f".step-00000015.{dead}-k3_x9abc.tmp", ".step-00000015.k3_x9abc.tmp"):
        (store.folder / name).mkdir()
        (store.folder / name / "model.safetensors").write_bytes(b"half")
    (store.folder / temp_name(store.folder / "latest", pid=int(dead))).write_text("step-00000015")
    # A live process's save in progress, and files that are not ours: all must survive.
    live = store.folder / f".step-00000015.{os.getpid()}-a1b2c3d4.tmp"
    live.mkdir()
    for name in (".step-notes.tmp", "step-backup.tmp", ".keep"):
        (store.folder / name).write_text("user file")
    history = _resume(tmp_path)
    assert history.resumed_from == 10
    left = sorted(p.name for p in store.folder.iterdir())
    assert left == sorted([".keep", ".step-notes.tmp", live.name, "latest", "step-00000015", "step-00000020",
                           "step-backup.tmp"])


def test_a_staging_folder_under_a_reused_pid_is_removed_on_resume(tmp_path):
    """Containers often give every run the same PID: a staging folder named with our own PID but
    last written before this process started is a killed run's, and goes (as io.atomic's temps do)."""
    import time

    if not os.path.exists("/proc/self/stat"):
        pytest.skip("process start times come from /proc")
    store = _finished_run(tmp_path)
    leftover = store.folder / f".step-00000015.{os.getpid()}-k3_x9abc.tmp"
    leftover.mkdir()
    (leftover / "model.safetensors").write_bytes(b"half")
    hour_ago = time.time() - 3600
    os.utime(leftover / "model.safetensors", (hour_ago, hour_ago))
    os.utime(leftover, (hour_ago, hour_ago))
    _resume(tmp_path)
    assert not leftover.exists()


def test_the_loss_log_survives_resumes_and_a_finished_rerun(tmp_path):
    straight = make(20)[1]
    straight.fit(batches(4))
    task, first = make(10, tmp_path / "run", checkpoint_every=5)
    first.fit(batches(4))
    second = make(20, tmp_path / "run", checkpoint_every=5)[1]
    added = second.fit(batches(4)[2:] + batches(4)[:2])
    assert added.steps == [15, 20]                          # what this session ran
    assert second.log.steps == [5, 10, 15, 20]              # the whole run's log
    assert second.log.values["loss"] == pytest.approx(straight.log.values["loss"], rel=1e-5)
    again = make(20, tmp_path / "run", checkpoint_every=5)[1]
    assert again.fit(batches(4)).steps == [] and again.log.steps == [5, 10, 15, 20]   # finished: nothing lost
    columns = again.log.as_columns()
    assert columns["step"] == [5, 10, 15, 20] and len(columns["loss"]) == 4


@dataclass
class Inner(BaseConfig):
    width: int = 4


@dataclass
class Outer(BaseConfig):
    inner: Inner = field(default_factory=Inner)
    steps: int = 10
    rate: float = 0.1
    sizes: tuple[int, ...] = (1, 2)


def test_a_resume_with_other_settings_names_each_differing_key(tmp_path):
    from slimvision.training.trainer import check_same_config

    task = Regression()
    store = CheckpointStore(tmp_path / "run")
    store.save(5, task.model, {"main": torch.optim.SGD(task.model.parameters(), lr=0.1)},
               extra={"config": Outer().to_dict()})
    check_same_config(store, Outer(), ())                                    # the same: resumes
    check_same_config(store, Outer(steps=20), {"steps"})                     # allowed to change
    check_same_config(CheckpointStore(tmp_path / "new"), Outer(rate=1.0))   # nothing saved yet
    with pytest.raises(ConfigError) as caught:
        check_same_config(store, Outer(inner=Inner(width=8), steps=20, rate=0.2), {"steps"})
    assert str(caught.value).startswith(str(tmp_path)) and "(inner.width, rate differ)" in str(caught.value)


@pytest.mark.parametrize("text", ["{not json", '{"step": 2}', '[{"step": "2"}]', "[3]"])
def test_damaged_run_records_are_one_line_errors_naming_them(tmp_path, text):
    from slimvision.training.gan import FID_FILE, fid_history
    from slimvision.training.vae import METRICS_FILE, metrics_history

    for name, read in ((FID_FILE, fid_history), (METRICS_FILE, metrics_history)):
        (tmp_path / name).write_text(text)
        with pytest.raises(InputError) as caught:
            read(tmp_path)
        assert str(caught.value).startswith(f"{tmp_path / name}: ") and "delete it and rerun" in str(caught.value)
    assert fid_history(tmp_path / "new") == [] and metrics_history(tmp_path / "new") == []


def test_a_damaged_cache_of_the_run_is_computed_again(tmp_path, caplog):
    import logging

    import numpy as np

    from slimvision.training.checkpoint import read_cached_array

    np.savez(tmp_path / "fid-real.npz", features=np.ones((4, 3), np.float32))
    np.save(tmp_path / "bank.npy", np.ones((4, 3), np.float32))
    assert read_cached_array(tmp_path / "fid-real.npz", "features").shape == (4, 3)
    assert read_cached_array(tmp_path / "bank.npy").shape == (4, 3)
    for name in ("fid-real.npz", "bank.npy"):
        data = (tmp_path / name).read_bytes()
        (tmp_path / name).write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.INFO, logger="slimvision.training.checkpoint"):
        assert read_cached_array(tmp_path / "fid-real.npz", "features") is None
        assert read_cached_array(tmp_path / "bank.npy") is None
    assert "fid-real.npz is damaged" in caplog.text and "computing it again" in caplog.text
    assert read_cached_array(tmp_path / "missing.npy") is None


def test_the_staging_names_save_makes_are_the_ones_a_resume_cleans(tmp_path, monkeypatch):
    """Guards the name pattern against drift: the folder a real save stages into must match it."""
    import slimvision.training.checkpoint as checkpoint

    seen = []

    def killed(folder):
        seen.append(folder.name)
        raise KeyboardInterrupt  # stands in for the kill: save() is left mid-way

    task, trainer = make(5, tmp_path / "run")
    monkeypatch.setattr(checkpoint, "_fsync_folder", killed)
    with pytest.raises(KeyboardInterrupt):
        trainer.store.save(5, task.model, trainer.optimizers)
    (name,) = seen
    match = checkpoint._STAGING_NAME.fullmatch(name)
    assert match is not None and match["pid"] == str(os.getpid())


def test_staged_unfreezing_trains_the_head_first_then_the_top_blocks_at_a_lower_rate():
    from slimvision.training.trainer import CosineDecay, FineTuneSchedule, StagedUnfreezing

    torch.manual_seed(0)
    blocks = [nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)) for _ in range(3)]
    head = nn.Linear(4, 2)
    model = nn.Sequential(*blocks, head)
    schedule = FineTuneSchedule(freeze_backbone_steps=3, unfreeze=1, backbone_lr_scale=0.1)
    schedule.validate()
    optimizer = torch.optim.SGD(schedule.parameter_groups(list(head.parameters()), blocks, 0.1))
    assert [group["lr"] for group in optimizer.param_groups] == [0.1, pytest.approx(0.01)]

    class Task:
        def __init__(self):
            self.model = model

        def __call__(self, batch, phase):
            return {"loss": (self.model(batch) ** 2).mean()}

    start = {name: value.clone() for name, value in model.state_dict().items()}
    data = [torch.randn(8, 4) + 3 for _ in range(4)]
    batches = StagedUnfreezing(CosineDecay(data, optimizer, schedule.base_rates(0.1, blocks), 0, 100), blocks,
                               schedule, 0)
    trainer = Trainer(Task(), {"main": optimizer}, TrainerConfig(steps=3, progress=False))
    trainer.fit(batches)

    def changed(prefix):
        return any(not torch.equal(value, start[name]) for name, value in model.state_dict().items()
                   if name.startswith(prefix))

    assert changed("3.") and not changed("0.") and not changed("1.") and not changed("2.")  # the head only
    trainer.config.steps = 6
    trainer.fit(StagedUnfreezing(CosineDecay(data, optimizer, schedule.base_rates(0.1, blocks), 3, 100), blocks,
                                 schedule, 3))
    assert changed("2.") and not changed("0.") and not changed("1.")  # then the top block too, the rest frozen
    assert torch.equal(model.state_dict()["0.1.running_mean"], start["0.1.running_mean"])  # frozen statistics
    assert not torch.equal(model.state_dict()["2.1.running_mean"], start["2.1.running_mean"])
    with pytest.raises(ConfigError):
        FineTuneSchedule(backbone_lr_scale=0).validate()
    assert FineTuneSchedule().trained_blocks(blocks) == blocks  # the default: everything trains throughout
    assert FineTuneSchedule(unfreeze=0).parameter_groups([], blocks, 0.1) == [{"params": [], "lr": 0.1}]
    assert FineTuneSchedule(unfreeze=len(blocks)).trained_blocks(blocks) == blocks
    with pytest.raises(ConfigError, match=f"the backbone has {len(blocks)} blocks"):  # not all of them, unsaid
        FineTuneSchedule(unfreeze=len(blocks) + 1).trained_blocks(blocks)


def test_shuffled_batches_refuse_at_once_a_batch_the_samples_cannot_fill():
    from itertools import islice

    from slimvision.training.trainer import shuffled_batches

    with pytest.raises(ConfigError, match="a batch of 5 needs at least as many samples; there are 4"):
        shuffled_batches(4, 5, seed=0)  # before any iteration: it used to loop for ever, yielding nothing
    batches = list(islice(shuffled_batches(5, 2, seed=0), 4))  # 2 per epoch, the fifth sample dropped
    assert all(len(batch) == 2 for batch in batches) and len(set(batches[0] + batches[1])) == 4
