"""The one training loop and its checkpoints: learning happens, crashes lose nothing, resume is exact."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")
from torch import nn  # noqa: E402

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
    assert "exp_avg" not in json.dumps(meta)  # tensors live in safetensors, not in the JSON


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
