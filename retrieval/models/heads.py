"""The trained heads of the towers on pretrained backbones, in numpy (no torch at index or query
time): standardised features -> Linear -> GELU -> Linear -> unit vectors, as trained by
``benchmarks/backbone_image.py`` and ``benchmarks/backbone_audio.py`` (``nn.GELU()``, the exact form)."""

from __future__ import annotations

import numpy as np

from .encoder import l2_normalize


def _erf(x: np.ndarray) -> np.ndarray:
    # Abramowitz and Stegun 7.1.26 (max error 1.5e-7): numpy has no erf and scipy is not installed light.
    sign = np.sign(x)
    x = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * x)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return sign * (1.0 - poly * np.exp(-x * x))


def gelu(x: np.ndarray) -> np.ndarray:
    """GELU as torch's ``nn.GELU()`` computes it (the exact, erf form)."""
    return 0.5 * x * (1.0 + _erf(x / np.sqrt(2.0)))


class MlpHead:
    """A head read from its shipped tensors (``head.fc1/fc2.weight/bias``, ``head.mean/std``)."""

    def __init__(self, tensors: dict[str, np.ndarray]) -> None:
        self.fc1 = (tensors["head.fc1.weight"].T.copy(), tensors["head.fc1.bias"])
        self.fc2 = (tensors["head.fc2.weight"].T.copy(), tensors["head.fc2.bias"])
        self.mean, self.std = tensors["head.mean"], tensors["head.std"]

    def __call__(self, features: np.ndarray) -> np.ndarray:
        """``[N, F]`` features -> unit vectors ``[N, D]``."""
        hidden = gelu((features - self.mean) / self.std @ self.fc1[0] + self.fc1[1])
        return l2_normalize(hidden @ self.fc2[0] + self.fc2[1])
