"""Safety limits applied while decoding untrusted uploads.

The limits are checked from headers *before* pixel data is decoded, so an
oversized or hostile file is refused without allocating its pixel buffer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_LIMITS", "DecodeLimits"]

MIB = 1024 * 1024


@dataclass(frozen=True)
class DecodeLimits:
    """Immutable decoding limits; the defaults suit chest radiograph uploads.

    Attributes:
        max_bytes: largest accepted file, in bytes.
        max_pixels: largest accepted width * height (checked before decoding).
        max_element_length: largest accepted DICOM element value, in bytes.
        max_sequence_depth: deepest accepted DICOM sequence nesting (1 = a
            sequence at top level).
        min_dimension: smallest accepted width or height, in pixels.
        max_dimension: largest accepted width or height, in pixels.
    """

    max_bytes: int = 64 * MIB
    max_pixels: int = 40_000_000
    max_element_length: int = 64 * MIB
    max_sequence_depth: int = 8
    min_dimension: int = 64
    max_dimension: int = 16_384

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"DecodeLimits.{field.name} must be a non-negative int")

    def to_dict(self) -> dict[str, int]:
        """Plain dict of all fields (JSON-serialisable)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DecodeLimits:
        """Build from a mapping; unknown keys raise ValueError, missing keys use defaults."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"Unknown DecodeLimits keys: {sorted(unknown)}")
        return cls(**dict(data))


DEFAULT_LIMITS = DecodeLimits()
