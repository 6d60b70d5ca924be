"""Golden archives of every released format version must keep decoding, bit for bit."""
from pathlib import Path

import numpy as np
import pytest

import bbarc
from tests.golden.make_golden import CASES_OF_VERSION, golden_inputs

GOLDEN = Path(__file__).resolve().parent / "golden"
CASES = golden_inputs()


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("*.bbarc")), ids=lambda p: p.name)
def test_golden_archive_decodes(path, tmp_path):
    name = path.name.rsplit("-v", 1)[0]
    model, items, labels, chunk = CASES[name]
    with bbarc.open(path) as a:
        assert a.model_id == model and a.metadata.chunk_size == chunk
        assert a.dtype == items.dtype.newbyteorder("=") and a.shape == items.shape
        assert np.array_equal(a[:], items)
        a.extract(str(tmp_path / "out.npy"))
        out = np.load(tmp_path / "out.npy")
        assert out.dtype == items.dtype and np.array_equal(out, items)  # byte order of the input too
        assert all(r.error is None for r in a.verify(deep=True))
        if labels is not None:
            assert np.array_equal(np.concatenate([a.side(c)["labels"] for c in range(a.chunk_count)]), labels)


def test_every_golden_case_has_a_file():
    for version, cases in CASES_OF_VERSION.items():
        assert {p.name.rsplit("-v", 1)[0] for p in GOLDEN.glob(f"*-v{version}.bbarc")} == set(cases)


def test_archives_of_earlier_weights_still_decode():
    """The v1 golden archives were written with the plugins' first weight files, which are no longer the default:
    decoding them goes through ``Model.with_weights``."""
    from bbarc.model import ItemSpec
    from bbarc.registry import default_registry

    for name in ("mnist-vae", "mnist-vae-binary"):
        with bbarc.open(GOLDEN / f"{name}-v1.bbarc") as a:
            sha = a.metadata.model.weights_sha256
            assert sha != default_registry().bind(name, ItemSpec((28, 28), "uint8")).weights_sha256()
            assert a.model().weights_sha256() == sha
