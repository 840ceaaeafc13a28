"""How much of the teacher's geometry the pruned half-width dlib student starts with (issue 25).

Before any training, on held-out synthetic faces (``face_student_select.held_out_chips``: seed 1,
never trained on), each warm start of the half-width student is scored against the teacher as
``face_student_select.py`` scores trained ones (agreement at 0.6, pair distance median and
correlation, descriptor drift):

* ``pruned``: ``narrow_dlib_resnet``, the teacher's most important channels as they are;
* ``pruned, random channels``: the same with the channels drawn at random (the criterion's worth);
* ``pruned + batch norm from the teacher``: ``with_batch_norm`` then folded: every channel given
  its teacher channel's mean and std over calibration chips (what re-estimating batch-norm
  statistics after pruning does);
* ``pruned + least squares``: each conv refitted, level by level, on the student's own inputs to
  give the teacher's channels it holds (for a block's second conv: the teacher's block sum less
  the student's shortcut), ridge towards the pruned weights (He et al. 2017, ThiNet: Luo et al.
  2017); ``+ embedding`` also refits the last layer to the teacher's descriptors.

Calibration chips are training pictures (seed 0, the trainer's augmentations), never the held-out ones.

    python benchmarks/face_student_init.py [--output FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from face_student_select import embed, held_out_chips, pair_scores  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def _solve(inputs: torch.Tensor, outputs: torch.Tensor, start: torch.Tensor, ridge: float,
           bias: bool = True) -> torch.Tensor:
    """Least squares (with a bias column, the last row), ridge towards ``start`` ((features [+ 1], outputs))."""
    if bias:
        inputs = torch.cat([inputs, torch.ones(len(inputs), 1)], 1)
    inputs = inputs.double()
    gram = inputs.T @ inputs
    strength = ridge * gram.diagonal().mean()
    return torch.linalg.solve(gram + strength * torch.eye(len(gram), dtype=gram.dtype),
                              inputs.T @ outputs.double() + strength * start.double())


@torch.no_grad()
def _fit_conv(conv: torch.nn.Conv2d, inputs: torch.Tensor, target: torch.Tensor, ridge: float, rows: int,
              generator: torch.Generator) -> None:
    patches = F.unfold(inputs, conv.kernel_size, padding=conv.padding, stride=conv.stride)  # (B, Cin*k*k, L)
    x = patches.permute(0, 2, 1).reshape(-1, patches.shape[1])
    y = target.permute(0, 2, 3, 1).reshape(-1, target.shape[1])
    if len(x) > rows:
        pick = torch.randperm(len(x), generator=generator)[:rows]
        x, y = x[pick], y[pick]
    start = torch.cat([conv.weight.reshape(conv.out_channels, -1), conv.bias[:, None]], 1).T
    weights = _solve(x, y, start, ridge)
    conv.weight.copy_(weights[:-1].T.reshape(conv.weight.shape).float())
    conv.bias.copy_(weights[-1].float())


@torch.no_grad()
def least_squares(student, teacher, report, chips: torch.Tensor, ridge: float = 0.1, rows: int = 60_000,
                  targets: torch.Tensor | None = None):
    """Refit every conv of the pruned ``student`` (and the embedding, given the teacher's ``targets``)."""
    from slimvision.models.faces.dlib_resnet import add_zero_padded

    generator = torch.Generator().manual_seed(0)
    streams, inside = report["stream_channels"], report["block_channels"]
    level_of = [level for level, (_, count) in enumerate(student.config.levels) for _ in range(count)]
    x = chips * teacher.input_scale + teacher.input_shift
    theirs = F.max_pool2d(F.relu(teacher.stem(x)), 3, 2)
    ours = F.max_pool2d(F.relu(student.stem(x)), 3, 2)  # the student's stem is the teacher's kept filters
    for index, (big, small) in enumerate(zip(teacher.blocks, student.blocks)):
        middle = big.conv1(theirs)
        _fit_conv(small.conv1, ours, middle[:, inside[index]], ridge, rows, generator)
        total = add_zero_padded(big.conv2(F.relu(middle)), F.avg_pool2d(theirs, 2, 2) if big.downsample else theirs)
        target = total[:, streams[level_of[index]]]
        shortcut = F.avg_pool2d(ours, 2, 2) if small.downsample else ours
        padded = torch.zeros_like(target)
        c, h, w = (min(a, b) for a, b in zip(shortcut.shape[1:], target.shape[1:]))
        padded[:, :c, :h, :w] = shortcut[:, :c, :h, :w]
        hidden = F.relu(small.conv1(ours))
        grid = small.conv2(hidden).shape[2:]
        _fit_conv(small.conv2, hidden, (target - padded)[:, :, :grid[0], :grid[1]], ridge, rows, generator)
        theirs, ours = F.relu(total), small(ours)
    if targets is not None:
        weights = _solve(ours.mean(dim=(2, 3)), targets, student.embedding.weight.T, ridge, bias=False)
        student.embedding.weight.copy_(weights.T.float())  # no bias: dlib's embedding has none
    return student


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calibration", type=int, default=256, help="training pictures to fit on (default 256)")
    parser.add_argument("--output", type=Path, default=RESULTS / "faces_student_init.json")
    args = parser.parse_args(argv)

    import slimvision.compress.prune_dlib as prune
    from slimvision.assets import DLIB_FACE_RESNET
    from slimvision.cli.faces import face_canvas_maker
    from slimvision.data.face_identities import FaceAugment, PseudoIdentities, synthetic_canvases
    from slimvision.models.faces.dlib_port import load_dlib_resnet
    from slimvision.models.faces.dlib_resnet import fold_batch_norm

    torch.set_flush_denormal(True)
    teacher = load_dlib_resnet(DLIB_FACE_RESNET.path()).eval().requires_grad_(False)
    held_out = held_out_chips(200, 2, seed=1)
    reference = embed(teacher, held_out)
    canvases = synthetic_canvases(400, 0, face_canvas_maker(), progress=False)
    training = PseudoIdentities(canvases, FaceAugment(), seed=0, kinds=("dlib",), length=4 * len(canvases))
    picks = np.random.default_rng(123).choice(len(training), args.calibration, replace=False)
    chips = torch.from_numpy(np.stack([training[int(i)]["dlib"] for i in np.sort(picks)])).permute(0, 3, 1, 2)
    chips = chips.float() / 255
    targets = teacher(chips)

    def pruned(random: bool = False):
        if not random:
            return prune.narrow_dlib_resnet(teacher, 0.5)
        generator, best = torch.Generator().manual_seed(0), prune._top

        def random_top(scores, count, among=None):
            candidates = among if among is not None else torch.arange(len(scores))
            return sorted(int(i) for i in candidates[torch.randperm(len(candidates), generator=generator)[:count]])
        prune._top = random_top
        try:
            return prune.narrow_dlib_resnet(teacher, 0.5)
        finally:
            prune._top = best

    starts = {}
    student, report = pruned()
    starts["pruned"] = student
    starts["pruned, random channels"] = pruned(random=True)[0]
    starts["pruned + batch norm from the teacher"] = fold_batch_norm(
        prune.with_batch_norm(student, teacher, report, list(chips.split(64))))
    starts["pruned + least squares"] = least_squares(pruned()[0], teacher, report, chips)
    starts["pruned + least squares + embedding"] = least_squares(pruned()[0], teacher, report, chips,
                                                                 targets=targets)
    results = {name: pair_scores(reference, embed(model, held_out)) for name, model in starts.items()}
    from slimvision.io.atomic import write_text_atomic

    write_text_atomic(args.output, json.dumps({"held_out": "200 synthetic faces of seed 1 x 2 pictures",
                                               "calibration_pictures": args.calibration, "starts": results},
                                              indent=2) + "\n", overwrite=True)
    for name, s in results.items():
        print(f"{name:<40} corr {s['pair_distance_correlation']:.3f}  median {s['pair_distance_median']['student']:.3f}"
              f"  drift {s['descriptor_drift_median']:.3f}  agreement {s['agreement']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
