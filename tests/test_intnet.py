"""Integer MLP inference: the float32 fast path returns exactly the integers of exact integer arithmetic."""
import numpy as np
import pytest

from plugins.intnet import IntMLP, load_weights
from plugins.weightfiles import load_model_weights


def _reference(net: IntMLP, x: np.ndarray) -> np.ndarray:
    """The same network in int64 arithmetic (exact by construction), rescaling as IntMLP specifies."""
    a = np.asarray(x, dtype=np.int64)
    for i, (w, b) in enumerate(zip(net.weights, net.biases)):
        acc = a @ w.astype(np.int64).T + b.astype(np.int64)
        if i < len(net.weights) - 1:
            a = np.minimum(np.floor(np.maximum(acc, 0).astype(np.float64) * net.rescale[i]), net.act_max[i])
            a = a.astype(np.int64)
    return acc


@pytest.mark.parametrize("weights", ["mnist-vae-2.npz", "mnist-vae-binary-2.npz"])
def test_float32_layers_are_exact(weights, mnist):
    _, nets, _, _ = load_model_weights("test", weights, load_weights)
    enc, dec = nets["enc"], nets["dec"]
    assert enc._dtypes == (np.float32,) * 3 and dec._dtypes == (np.float64, np.float32, np.float32)
    top = 1 if "binary" in weights else 255
    rng = np.random.default_rng(0)
    # real images, random ones and the worst case for the accumulator bound (every input at its maximum)
    x = np.concatenate([np.minimum(mnist[:16].reshape(16, -1), top), rng.integers(0, top + 1, (8, 784)),
                        np.full((1, 784), top), np.zeros((1, 784))])
    assert np.array_equal(enc(x), _reference(enc, x))
    z = rng.integers(-(1 << 19), 1 << 19, (16, dec.weights[0].shape[1]))
    assert np.array_equal(dec(z), _reference(dec, z))


def test_float32_only_where_the_bound_holds():
    _, nets, _, _ = load_model_weights("test", "mnist-vae.npz", load_weights)  # v1: 15-bit weights, 16-bit acts
    assert set(nets["enc"]._dtypes) == set(nets["dec"]._dtypes) == {np.float64}
    w = np.full((2, 4), 1000.0)
    assert IntMLP((w,), (np.zeros(2),), (), (), in_max=4000.0)._dtypes == (np.float32,)  # 4 * 1000 * 4000 < 2**24
    assert IntMLP((w,), (np.zeros(2),), (), (), in_max=5000.0)._dtypes == (np.float64,)  # 2e7 >= 2**24
