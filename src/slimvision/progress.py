"""Progress bars that cost nothing when hidden.

``tqdm`` takes ~30 ms to import (it reads package metadata); a one-image CLI run or a quiet
training run never shows a bar, so :func:`progress_bar` imports it only when one is shown and
otherwise returns :class:`NoProgress`, which offers the same calls and does nothing.

Example:
    >>> with progress_bar(3, enabled=False) as bar:
    ...     bar.update()
"""

from __future__ import annotations

import sys
from typing import Any


class NoProgress:
    """The parts of tqdm's interface slimvision uses, doing nothing."""

    n = 0

    def update(self, count: int = 1) -> None:
        pass

    def refresh(self) -> None:
        pass

    def set_postfix(self, values: dict[str, Any] | None = None) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> NoProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def progress_bar(total: int, *, enabled: bool = True, **options: Any) -> Any:
    """A tqdm bar on stderr (``options`` go to tqdm), or :class:`NoProgress` when not ``enabled``."""
    if not enabled:
        return NoProgress()
    from tqdm import tqdm

    return tqdm(total=total, file=sys.stderr, **options)
