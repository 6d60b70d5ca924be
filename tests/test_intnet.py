"""Integer MLP inference: every backend returns exactly the integers of exact integer arithmetic."""
import numpy as np
import pytest

from bbarc.plugins.intnet import IntMLP, load_weights


def _reference(net: IntMLP, x: np.ndarray) -> np.ndarray:
    """The same network in int64 arithmetic (exact by construction), rescaling as IntMLP specifies."""
    a = np.asarray(x, dtype=np.int64)
    for i, (w, b) in enumerate(zip(net.weights, net.biases)):
        acc = a @ w.astype(np.int64).T + b.astype(np.int64)
        if i < len(net.weights) - 1:
            a = np.minimum(np.floor(np.maximum(acc, 0).astype(np.float64) * net.rescale[i]), net.act_max[i])
            a = a.astype(np.int64)
    return acc


def _without_int8(net: IntMLP) -> IntMLP:
    return IntMLP(net.weights, net.biases, net.rescale, net.act_max, net.in_max, int8=False)


def _torch_from(monkeypatch, batch: int) -> None:
    """int8 layers take torch's product from ``batch`` rows up (a huge value: the float32 product always)."""
    import bbarc.plugins.intnet as intnet

    monkeypatch.setattr(intnet, "TORCH_MIN_BATCH", batch)


@pytest.mark.parametrize("weights", ["mnist-vae-2.npz", "mnist-vae-binary-2.npz"])
@pytest.mark.parametrize("torch_from", [1, 1 << 30])  # torch's int8 product everywhere, or the float32 one
def test_int8_layers_are_exact(weights, torch_from, mnist, monkeypatch):
    if torch_from == 1:
        pytest.importorskip("torch")
    _torch_from(monkeypatch, torch_from)
    _, nets, _, _ = load_weights(weights)
    enc, dec = nets["enc"], nets["dec"]
    assert enc.backends == ("int8",) * 3 and dec.backends == ("float64", "int8", "int8")
    top = 1 if "binary" in weights else 255
    rng = np.random.default_rng(0)
    # real images, random ones and the extremes of the input range
    x = np.concatenate([np.minimum(mnist[:16].reshape(16, -1), top), rng.integers(0, top + 1, (8, 784)),
                        np.full((1, 784), top), np.zeros((1, 784))])
    for batch in (x, x[:1], x[7:10]):  # batch sizes take different int8 kernels
        assert np.array_equal(enc(batch), _reference(enc, batch))
        assert np.array_equal(enc(batch), _without_int8(enc)(batch))
    z = rng.integers(-(1 << 19), 1 << 19, (16, dec.weights[0].shape[1]))
    assert np.array_equal(dec(z), _reference(dec, z))
    assert np.array_equal(dec(z[:1]), _without_int8(dec)(z[:1]))


@pytest.mark.parametrize("torch_from", [1, 1 << 30])
def test_int8_products_are_exact_at_the_bound(torch_from, monkeypatch):
    """Fan-in 1024, weights and inputs at their extremes: the float32 product's partial sums reach 2**24, its
    exactness bound, and still equal int64 arithmetic (so do torch's and the float64 backend's)."""
    if torch_from == 1:
        pytest.importorskip("torch")
    _torch_from(monkeypatch, torch_from)
    rng = np.random.default_rng(1)
    top = (1 << 14) - 1
    # w = -128 splits into lo = -128, hi = 0: with inputs 0 (-128 after the offset) its lo plane sums 1024 * 2**14
    # = 2**24 exactly; the largest weights (hi = +-64), and random rows
    w = np.vstack([np.full(1024, top), np.full(1024, -top), np.full(1024, -(1 << 14) + 256), np.full(1024, -128),
                   np.full(1024, 127 * 256 // 2), rng.integers(-top, top + 1, (11, 1024))]).astype(np.float64)
    net = IntMLP((w,), (np.zeros(len(w)),), (), (), in_max=255.0)
    assert net.backends == ("int8",)
    x = np.vstack([np.zeros(1024), np.full(1024, 255), np.arange(1024) % 2 * 255, rng.integers(0, 256, (5, 1024))])
    for batch in (x[:1], x[1:2], x[:3], x):
        assert np.array_equal(net(batch), _reference(net, batch))
        assert np.array_equal(net(batch), _without_int8(net)(batch))
    # and through a hidden layer: requantised int8 inputs (offset by -128) at both ends of their range
    deep = IntMLP((w, w[:, :16].copy()), (np.zeros(len(w)), np.zeros(len(w))), (np.full(len(w), 2.0**-10),),
                  (255.0,), in_max=255.0)
    for batch in (x[:1], x):
        assert np.array_equal(deep(batch), _reference(deep, batch))


def test_float32_product_is_checked(monkeypatch):
    """A BLAS whose float32 product is not exact leaves the int8 layers to torch's product at every batch size
    (one row included), or to the float64 backend where torch is missing too."""
    import bbarc.plugins.intnet as intnet

    assert intnet._float32_exact()
    monkeypatch.setattr(intnet, "_float32_exact", lambda: False)
    if intnet._torch() is not None:
        _, nets, _, _ = load_weights("mnist-vae-2.npz")
        enc = nets["enc"]
        assert set(enc.backends) == {"int8"}
        x = np.random.default_rng(1).integers(0, 256, (3, 784))
        for rows in (x[:1], x):
            assert np.array_equal(enc(rows), _reference(enc, rows))
    monkeypatch.setattr(intnet, "_torch", lambda: None)
    _, nets, _, _ = load_weights("mnist-vae-2.npz")
    assert set(nets["enc"].backends) == {"float64"}


def test_int8_only_where_inputs_and_weights_fit():
    _, nets, _, _ = load_weights("mnist-vae.npz")  # v1: 15-bit weights, 16-bit acts
    assert set(nets["enc"].backends) == set(nets["dec"].backends) == {"float64"}
    w = np.full((2, 4), 16383.0)
    assert IntMLP((w,), (np.zeros(2),), (), (), in_max=255.0).backends == ("int8",)
    assert IntMLP((w,), (np.zeros(2),), (), (), in_max=256.0).backends == ("float64",)  # inputs too large
    assert IntMLP((w + 1,), (np.zeros(2),), (), (), in_max=255.0).backends == ("float64",)  # weights too large
    assert IntMLP((w,), (np.zeros(2),), (), ()).backends == ("float64",)  # input range unknown


def test_archives_are_the_same_bytes_without_torch(monkeypatch, mnist):
    """Without torch the float32 product codes the int8 layers, and without an exact float32 product the float64
    backend: each must give the very same payload (and decode the int8 one)."""
    pytest.importorskip("torch")
    import bbarc.plugins.intnet as intnet
    from bbarc.chain import decode_chunk, encode_chunk
    from bbarc.plugins.mnist_vae import MnistVAE
    from bbarc.plugins.weightfiles import WeightsFile

    _torch_from(monkeypatch, 1)
    fast = MnistVAE("mnist-vae", WeightsFile.shipped("mnist-vae-2.npz"), binary=False)
    payload = encode_chunk(fast, mnist[:6])
    monkeypatch.setattr(intnet, "_torch", lambda: None)
    for float32 in (True, False):
        monkeypatch.setattr(intnet, "_float32_exact", lambda: float32)
        slow = MnistVAE("mnist-vae", WeightsFile.shipped("mnist-vae-2.npz"), binary=False)
        assert set(slow._nets[0]["dec"].backends) == ({"float64", "int8"} if float32 else {"float64"})
        assert encode_chunk(slow, mnist[:6]) == payload
        assert np.array_equal(decode_chunk(slow, payload, 6, (28, 28), np.dtype(np.uint8))[0], mnist[:6])


def test_small_batches_take_the_compiled_product_only_where_int32_sums_are_exact(monkeypatch):
    """Up to SMALL_BATCH rows, int8 layers sum in int32 without _int_mm: only while 255 * sum(|w|) of every column
    stays below 2**31; the results are the exact integers either way."""
    pytest.importorskip("torch")
    from bbarc.plugins import intnet

    monkeypatch.setenv("BBARC_KERNELS", "compiled")  # light kernels in use, few rows take float32 products

    rng = np.random.default_rng(4)
    narrow = rng.integers(-16383, 16384, (6, 512)).astype(np.float64)
    wide = np.full((2, 1024), 16383.0)  # 255 * 16383 * 1024 > 2**31
    for w, small in ((narrow, True), (wide, False)):
        net = IntMLP((w,), (np.arange(len(w), dtype=np.float64),), (), (), in_max=255.0)
        assert net.backends == ("int8",) and (net._layers[0].small is not None) == small
        x = rng.integers(0, 256, (intnet.SMALL_BATCH + 3, w.shape[1]))
        x[:, ::3] = 0  # the compiled loop skips zero inputs
        x[0] = 255
        for rows in (x[:1], x[: intnet.SMALL_BATCH], x):
            assert np.array_equal(net(rows), _reference(net, rows))


def test_affine_bound_holds_for_the_extreme_inputs():
    """``affine_bound`` lets the binary model skip checking its logits: it must bound the outputs of any input,
    the inputs that drive every last-layer activation to 0 or to its clip included."""
    _, nets, extra, _ = load_weights("mnist-vae-binary-2.npz")
    dec = nets["dec"]
    bound = dec.affine_bound(extra["dec.out_mul"], extra["dec.out_add"])
    assert bound < 1 << 30  # (so the check is skipped)
    rng = np.random.default_rng(5)
    width = dec.weights[0].shape[1]
    z = np.concatenate([rng.integers(-(1 << 20), 1 << 20, (64, width)), np.full((1, width), 1 << 20),
                        np.full((1, width), -(1 << 20))])
    assert np.abs(dec.affine(z, extra["dec.out_mul"], extra["dec.out_add"])).max() <= bound
    w, b = dec.weights[-1], dec.biases[-1]
    mul, add = extra["dec.out_mul"], extra["dec.out_add"]
    # the largest and smallest sums each output can reach: its positive (negative) weights times the clip
    top = np.clip(w, 0, None).sum(axis=1) * dec.act_max[-1] + b
    low = np.clip(w, None, 0).sum(axis=1) * dec.act_max[-1] + b
    assert np.abs(np.floor(np.stack([top, low]) * mul + add)).max() <= bound


@pytest.mark.parametrize("kernels", ["light", "compiled"])
def test_few_rows_are_exact_on_either_path_at_the_extremes(kernels, monkeypatch):
    """One to SMALL_BATCH rows take the light float64 sums over nonzero inputs (light kernels) or the compiled
    int16 loop: both exact at the largest weights and inputs, zeros and all-255 rows included."""
    from bbarc.plugins import intnet

    monkeypatch.setenv("BBARC_KERNELS", kernels)
    rng = np.random.default_rng(7)
    w1 = np.concatenate([np.full((2, 1024), 16383.0), np.full((2, 1024), -16383.0),
                         rng.integers(-16383, 16384, (4, 1024)).astype(np.float64)])
    w2 = rng.integers(-16383, 16384, (3, 8)).astype(np.float64)
    net = IntMLP((w1, w2), (np.arange(8.0) - 4, np.array([1.0, -(2.0**40), 2.0**40])), (np.full(8, 2.0**-30),),
                 (255.0,), in_max=255.0)
    assert net.backends == ("int8", "int8")
    x = np.concatenate([np.full((1, 1024), 255), np.zeros((1, 1024), int), rng.integers(0, 256, (2, 1024))])
    for rows in (x[:1], x[1:2], x[: intnet.SMALL_BATCH]):
        assert np.array_equal(net(rows), _reference(net, rows))
