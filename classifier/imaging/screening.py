"""Is this a chest radiograph at all? Checks run on every decoded image before the model.

A classifier answers for whatever it is given: an all-white PNG came out "Normal", an
all-black one "viral pneumonia 0.97" and noise "COVID-19 1.00". These checks refuse such
inputs with a reason instead of a confident result. Thresholds were set on the shared
sample (841 real radiographs: PNG, JPEG and DICOM from five sources; see
tests/classifier/imaging/test_screening.py) far outside what any real image showed:

- blank: the 1st-99th percentile range is under 0.05 (real images: 0.27 or more);
- no structure: neighbouring pixels correlate under 0.7 (real: 0.93 or more; noise ~0,
  a page of text 0.5);
- colour: over 20 % of the pixels clearly coloured (real: at most 1.5 %, arrows drawn
  on a film);
- no lung field: the lung-field network (``lungfield``) finds no plausible pair of
  lungs (real: never).
"""

from __future__ import annotations

import cv2
import numpy as np

from .decode import DecodedImage
from .errors import BlankImage, NotChestRadiograph
from .lungfield import DEFAULT_MODEL, lung_field

__all__ = ["screen_radiograph"]

SIDE = 256
MIN_RANGE = 0.05
MIN_NEIGHBOUR_CORRELATION = 0.7
MAX_COLOUR_FRACTION = 0.2
NOT_ANALYSED = "It was not analysed; upload the radiograph itself."


def _thumbnail(pixels: np.ndarray) -> np.ndarray:
    """At most SIDE pixels on the long side; never enlarged (that would smooth noise)."""
    height, width = pixels.shape
    scale = min(1.0, SIDE / max(height, width))
    if scale == 1.0:
        return pixels.astype(np.float32, copy=False)
    size = (max(2, round(width * scale)), max(2, round(height * scale)))
    return cv2.resize(pixels.astype(np.float32, copy=False), size, interpolation=cv2.INTER_AREA)


def _neighbour_correlation(img: np.ndarray) -> float:
    left, right = img[:, :-1].ravel(), img[:, 1:].ravel()
    if left.std() == 0 or right.std() == 0:
        return 1.0
    return float(np.corrcoef(left, right)[0, 1])


def screen_radiograph(decoded: DecodedImage, *, lung_model: str = DEFAULT_MODEL) -> None:
    """Raise BlankImage or NotChestRadiograph (code ``not_chest_radiograph``) with a
    reason for an image that is not a chest radiograph; return for one that may be."""
    small = _thumbnail(decoded.pixels)
    low, high = np.percentile(small, [1, 99])
    if float(high - low) < MIN_RANGE:
        raise BlankImage(f"The image is blank or nearly uniform: there is no radiograph to read. {NOT_ANALYSED}")
    if decoded.colour_fraction > MAX_COLOUR_FRACTION:
        raise NotChestRadiograph(
            f"The image is in colour, like a photograph; a radiograph is greyscale. {NOT_ANALYSED}"
        )
    if _neighbour_correlation(small) < MIN_NEIGHBOUR_CORRELATION:
        raise NotChestRadiograph(
            f"The image has no anatomical structure (it looks like noise or a document). {NOT_ANALYSED}"
        )
    field = lung_field(small, model=lung_model)
    if field.fallback:
        raise NotChestRadiograph(
            f"No lung field was found in the image ({field.reason}), so it does not look like a chest "
            f"radiograph. {NOT_ANALYSED}"
        )
