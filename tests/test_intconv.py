"""The integer conv ops compute exactly what torch computes on the same integers."""
import numpy as np
import torch
from torch.nn import functional as F

from bbarc.plugins.intconv import Conv, Residual, Shuffle, conv2d


def test_conv2d_matches_torch_exactly_on_integers():
    rng = np.random.default_rng(0)
    a = rng.integers(-(1 << 15), 1 << 15, (3, 5, 9, 9)).astype(np.float64)
    w = rng.integers(-(1 << 15), 1 << 15, (4, 5, 3, 3)).astype(np.float64)
    b = rng.integers(-(1 << 20), 1 << 20, 4).astype(np.float64)
    for stride in (1, 2):
        ours = conv2d(a, w, b, stride)
        ref = F.conv2d(torch.from_numpy(a), torch.from_numpy(w), torch.from_numpy(b), stride=stride, padding=1).numpy()
        assert np.array_equal(ours, ref)
        assert np.array_equal(conv2d(a[1:2], w, b, stride), ours[1:2])  # batch independent


def test_shuffle_and_residual():
    x = np.arange(2 * 8 * 3 * 3, dtype=np.float64).reshape(2, 8, 3, 3)
    assert np.array_equal(Shuffle(2)(x), torch.nn.PixelShuffle(2)(torch.from_numpy(x)).numpy())
    eye = np.zeros((8, 8, 3, 3))
    eye[np.arange(8), np.arange(8), 1, 1] = 1
    conv = Conv(eye, np.zeros(8), 1, np.full(8, 0.5), relu=True)
    out = Residual(conv, conv)(x - 20)
    assert np.array_equal(out, np.clip(x - 20 + np.floor(np.floor(np.maximum(x - 20, 0) * 0.5) * 0.5), -32768, 32768))
