"""Property: for any mutation of a real file, decode_bytes returns a valid image or
raises ImagingError, never another exception, and never hangs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from classifier.imaging import DecodedImage, ImagingError, decode_bytes

pytestmark = [pytest.mark.timeout(120), pytest.mark.filterwarnings("ignore::UserWarning")]

FUZZ = settings(
    max_examples=150,
    deadline=2000,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
HEADER_BYTES = 4096  # most parsing decisions are made here, so mutate it more often


@st.composite
def mutations(draw: st.DrawFn) -> list[tuple[str, float, int]]:
    """Edits as (kind, relative position, value); positions are resolved per seed."""
    edit = st.tuples(
        st.sampled_from(["flip", "flip_header", "set_header", "insert", "delete", "truncate"]),
        st.floats(0.0, 1.0, allow_nan=False),
        st.integers(0, 255),
    )
    return draw(st.lists(edit, min_size=1, max_size=6))


def mutate(data: bytes, edits: list[tuple[str, float, int]]) -> bytes:
    out = bytearray(data)
    for kind, where, value in edits:
        if not out:
            break
        span = min(len(out), HEADER_BYTES) if kind.endswith("_header") else len(out)
        at = min(int(where * span), len(out) - 1)
        if kind == "flip" or kind == "flip_header":
            out[at] ^= 1 << (value % 8)
        elif kind == "set_header":
            out[at] = value
        elif kind == "insert":
            out[at:at] = bytes([value]) * (1 + value % 16)
        elif kind == "delete":
            del out[at : at + 1 + value % 16]
        else:
            del out[at:]
    return bytes(out)


def check(data: bytes) -> None:
    try:
        decoded = decode_bytes(data)
    except ImagingError as error:
        assert error.message and error.code
        return
    assert isinstance(decoded, DecodedImage)
    assert decoded.pixels.dtype == np.float32 and decoded.pixels.ndim == 2
    assert decoded.pixels.shape == (decoded.height, decoded.width)
    assert np.isfinite(decoded.pixels).all()
    assert decoded.pixels.min() >= 0.0 and decoded.pixels.max() <= 1.0


@pytest.mark.parametrize("kind", ["png", "jpeg", "dicom", "dicom_jpeg"])
def test_mutated_real_files_decode_or_raise_imaging_error(seed_files: dict[str, bytes], kind: str) -> None:
    seed = seed_files[kind]

    @FUZZ
    @given(edits=mutations())
    def run(edits: list[tuple[str, float, int]]) -> None:
        check(mutate(seed, edits))

    run()
