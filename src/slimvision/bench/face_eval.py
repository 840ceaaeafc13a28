"""Face verification scores under the LFW pairs protocol: 10-fold accuracy, TAR at a fixed FAR, ROC.

LFW's ``pairs.txt`` starts with a line ``FOLDS PAIRS`` (``10 300``; the development files have a
single number, one fold), then for each fold ``PAIRS`` same-person lines ``name n1 n2`` and
``PAIRS`` different-person lines ``name1 n1 name2 n2``. Image ``n`` of ``name`` is
``ROOT/name/name_000n.jpg``.

Accuracy follows the protocol: for each fold, the distance threshold that is most accurate on
the other nine is applied to it; the mean and the standard deviation over the folds are
reported. TAR at FAR = 1e-3 is computed over all pairs at once (with LFW's 3,000 different-
person pairs that FAR allows 3 false accepts, so read it as coarse). The ROC curve can be
saved as a PNG.

Example:
    >>> import numpy as np
    >>> distances = np.array([0.2, 0.3, 0.9, 1.0]); same = np.array([True, True, False, False])
    >>> verification_scores(distances, same, np.array([0, 0, 0, 0]))["accuracy"]
    1.0
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from slimvision.errors import InputError


@dataclass(frozen=True)
class Pair:
    """Two images and whether they show one person; ``fold`` numbers the cross-validation set."""

    first: Path
    second: Path
    same: bool
    fold: int


def read_pairs(path: str | Path, root: str | Path, extension: str = "jpg") -> list[Pair]:
    """The pairs of an LFW-format ``pairs.txt``; image paths under ``root`` (not checked here)."""
    path, root = Path(path), Path(root)
    try:
        lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(path, f"cannot read the pairs file ({error})") from None
    if not lines or not all(part.isdigit() for part in lines[0]) or len(lines[0]) not in (1, 2):
        raise InputError(path, "the first line must be 'FOLDS PAIRS' (e.g. '10 300') or 'PAIRS'")
    folds, per_class = (1, int(lines[0][0])) if len(lines[0]) == 1 else map(int, lines[0])
    body = lines[1:]
    if len(body) != folds * 2 * per_class:
        raise InputError(path, f"the header promises {folds} folds x 2 x {per_class} pairs = "
                               f"{folds * 2 * per_class} lines, the file has {len(body)}")

    def image(name: str, number: str, line: int) -> Path:
        if not number.isdigit():
            raise InputError(path, f"line {line}: image number {number!r} is not a whole number")
        return root / name / f"{name}_{int(number):04d}.{extension}"

    pairs = []
    for index, parts in enumerate(body):
        fold, same = index // (2 * per_class), index % (2 * per_class) < per_class
        line = index + 2
        if same and len(parts) == 3:
            pairs.append(Pair(image(parts[0], parts[1], line), image(parts[0], parts[2], line), True, fold))
        elif not same and len(parts) == 4:
            pairs.append(Pair(image(parts[0], parts[1], line), image(parts[2], parts[3], line), False, fold))
        else:
            kind = "same-person 'name n1 n2'" if same else "different-person 'name1 n1 name2 n2'"
            raise InputError(path, f"line {line}: expected a {kind} line, got {' '.join(parts)!r}")
    return pairs


def best_threshold(distances: np.ndarray, same: np.ndarray) -> float:
    """The distance threshold (same person at or below it) with the highest accuracy on these pairs."""
    order = np.argsort(distances, kind="stable")
    sorted_distances, sorted_same = distances[order], same[order]
    # Accepting the first k pairs: correct = same pairs among them + different pairs after them.
    accepted_same = np.concatenate([[0], np.cumsum(sorted_same)])
    rejected_different = (~sorted_same).sum() - np.concatenate([[0], np.cumsum(~sorted_same)])
    correct = accepted_same + rejected_different
    # Only cut between distinct distances; midpoints generalise better than the values themselves.
    valid = np.concatenate([[True], sorted_distances[1:] > sorted_distances[:-1], [True]])
    best = int(np.argmax(np.where(valid, correct, -1)))
    if best == 0:
        return float(sorted_distances[0]) - 1e-6
    if best == len(sorted_distances):
        return float(sorted_distances[-1]) + 1e-6
    return float(sorted_distances[best - 1] + sorted_distances[best]) / 2


def verification_scores(distances: np.ndarray, same: np.ndarray, folds: np.ndarray,
                        far: float = 1e-3) -> dict[str, Any]:
    """Protocol accuracy (threshold chosen on the other folds; on all pairs when there is one
    fold), TAR at ``far`` over all pairs, and the ROC points."""
    distances, same, folds = np.asarray(distances, float), np.asarray(same, bool), np.asarray(folds)
    if not (len(distances) == len(same) == len(folds)) or not len(distances) or not np.isfinite(distances).all():
        raise ValueError("distances, same and folds must be equal-length, non-empty and finite")
    fold_ids = np.unique(folds)
    accuracies, thresholds = [], []
    for fold in fold_ids:
        test = folds == fold
        train = ~test if len(fold_ids) > 1 else test
        threshold = best_threshold(distances[train], same[train])
        accuracies.append(float(((distances[test] <= threshold) == same[test]).mean()))
        thresholds.append(threshold)
    false_positive, true_positive, cuts = roc_curve(distances, same)
    return {"accuracy": float(np.mean(accuracies)), "accuracy_std": float(np.std(accuracies)),
            "fold_accuracies": accuracies, "thresholds": thresholds,
            "tar_at_far": tar_at_far(distances, same, far), "far": far,
            "pairs": int(len(distances)), "same_pairs": int(same.sum()),
            "roc": {"far": false_positive.tolist(), "tar": true_positive.tolist(), "thresholds": cuts.tolist()}}


def roc_curve(distances: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(FAR, TAR, threshold) at every distinct distance, accepting pairs at or below the threshold."""
    cuts = np.unique(distances)
    positives, negatives = max(int(same.sum()), 1), max(int((~same).sum()), 1)
    order = np.sort(distances[same]), np.sort(distances[~same])
    tar = np.searchsorted(order[0], cuts, side="right") / positives
    far = np.searchsorted(order[1], cuts, side="right") / negatives
    return np.concatenate([[0.0], far]), np.concatenate([[0.0], tar]), np.concatenate([[cuts[0] - 1e-6], cuts])


def tar_at_far(distances: np.ndarray, same: np.ndarray, far: float) -> float:
    """The share of same-person pairs accepted at the largest threshold whose FAR is <= ``far``."""
    different = np.sort(distances[~same])
    allowed = int(np.floor(far * len(different)))  # false accepts the FAR permits
    if not len(different):
        return float("nan")
    threshold = different[allowed] if allowed < len(different) else np.inf  # accept strictly below it
    return float((distances[same] < threshold).mean()) if same.any() else float("nan")


def save_roc_plot(scores: dict[str, Any], path: str | Path, label: str = "") -> None:
    """The ROC curve (log FAR axis) as a PNG, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from slimvision.io.atomic import atomic_write

    figure, axes = plt.subplots(figsize=(5, 4), dpi=120)
    far, tar = np.asarray(scores["roc"]["far"]), np.asarray(scores["roc"]["tar"])
    keep = far > 0
    axes.step(far[keep], tar[keep], where="post",
              label=f"{label} acc {scores['accuracy']:.4f}, TAR {scores['tar_at_far']:.3f} @ FAR {scores['far']:g}")
    axes.set_xscale("log")
    axes.set_xlabel("false accept rate")
    axes.set_ylabel("true accept rate")
    axes.set_ylim(0, 1.01)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(loc="lower right", fontsize=7)
    axes.set_title(f"ROC, {scores['pairs']} pairs")
    figure.tight_layout()
    with atomic_write(path, overwrite=True) as temp:
        figure.savefig(temp, format="png")
    plt.close(figure)


#: Distance given to a pair when a face is missing in one of its images: always "different".
NO_FACE_DISTANCE = 1e6


def pair_distances(pairs: list[Pair], recognizer: Any, progress: bool = True) -> tuple[np.ndarray, list[str]]:
    """The recognizer's distance for every pair (each image embedded once), and the images in
    which no face was found (their pairs get :data:`NO_FACE_DISTANCE`)."""
    from slimvision.io.images import load_image
    from slimvision.progress import progress_bar

    images = sorted({path for pair in pairs for path in (pair.first, pair.second)})
    descriptors: dict[Path, np.ndarray | None] = {}
    with progress_bar(len(images), enabled=progress, desc="embedding", unit="image") as bar:
        for path in images:
            bar.update()
            faces = recognizer(load_image(path))
            if not faces:
                descriptors[path] = None
                continue
            # LFW centres the subject: take the face nearest the centre of the image.
            image_centre = np.array(load_image(path).shape[1::-1]) / 2
            nearest = min(faces, key=lambda face: np.hypot(*(np.add(face.face.box[:2], face.face.box[2:]) / 2
                                                               - image_centre)))
            descriptors[path] = nearest.descriptor
    distances = np.array([recognizer.compare(descriptors[p.first], descriptors[p.second]).distance
                          if descriptors[p.first] is not None and descriptors[p.second] is not None
                          else NO_FACE_DISTANCE for p in pairs])
    return distances, [str(path) for path, vector in descriptors.items() if vector is None]
