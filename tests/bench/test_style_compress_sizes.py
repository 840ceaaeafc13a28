"""``slimvision bench style`` sizes: square sides and WIDTHxHEIGHT frames, named and cut as the report says."""

from __future__ import annotations

import numpy as np
import pytest

from slimvision.bench.style_compress import content_at, size_label, table
from tests.cli.helpers import exit_code


def test_sizes_are_named_by_side_or_width_x_height() -> None:
    assert [size_label(size) for size in (512, (512, 512), (720, 1280))] == [512, 512, "1280x720"]


@pytest.mark.parametrize(("size", "shape"), [(64, (64, 64, 3)), ((72, 128), (72, 128, 3)), ((128, 48), (128, 48, 3))])
def test_content_frames_have_the_asked_shape(size, shape) -> None:
    frame = content_at(size)
    assert frame.shape == shape and frame.dtype == np.float32 and 0.0 <= frame.min() <= frame.max() <= 1.0
    assert frame.std() > 0.01  # a photo, not padding


def test_the_table_has_a_column_per_size_however_named() -> None:
    row = {"bytes": 1e6, "predictor_ms_256": 2.0, "transform_ms_512": 10.0, "transform_ms_1280x720": 30.0,
           "vector_cosine": 1.0, "ssim": 1.0, "psnr_db": 99.0, "ssim_vs_fp32": 0.9, "note": ""}
    report = {"rows": {"teacher int8 (as shipped)": row, "fast (--model fast)": {**row, "transform_ms_1280x720": 15.0}},
              "sizes": [512, "1280x720"], "repeats": 1, "held_out_styles": 1,
              "paper_table_1": {"teacher": {"predictor_mb": 1, "predictor_ms": 2, "total_mb": 3},
                                "student": {"predictor_mb": 1, "predictor_ms": 1, "total_mb": 2}}}
    text = table(report)
    assert "tr ms@1280x720" in text and "2.00x @1280x720" in text


def test_a_bad_size_is_one_line(capsys) -> None:
    assert exit_code(["bench", "style", "--sizes", "512,wide"]) == 2
    assert "--sizes" in capsys.readouterr().err
