"""The example plugin as a user meets it: installed, found through its entry point, conforming, coding archives."""
import numpy as np
import pytest

import bbarc
from bbarc.conformance import check_family
from bbarc.errors import ModelError, UsageError
from bbarc.registry import default_registry
from bbarc_example.data import sample_items
from bbarc_example.plugin import FAMILY, BinaryMixtureFamily


@pytest.fixture(scope="module")
def items() -> np.ndarray:
    return sample_items()[800:]  # not the images the weights were fitted to


def test_the_entry_point_registers_the_family():
    entry = default_registry().entry(FAMILY)
    assert entry.distribution == "bbarc-example-plugin" and entry.plugin == "example"
    assert isinstance(entry.family, BinaryMixtureFamily)


def test_the_family_passes_the_conformance_suite(items):
    check_family(BinaryMixtureFamily(), items[:8])


def test_archives_round_trip_through_bbarc(tmp_path, items):
    result = bbarc.compress(items, tmp_path / "digits.bbarc", model=FAMILY, chunk_size=100)
    assert result.chunks == 2
    zstd = bbarc.compress(items, tmp_path / "digits-zstd.bbarc", model="zstd", chunk_size=100)
    assert result.archive_bytes < zstd.archive_bytes  # the model has learnt something about digits
    with bbarc.open(tmp_path / "digits.bbarc") as archive:
        assert archive.model_id == FAMILY
        assert np.array_equal(archive[:], items) and np.array_equal(archive[150], items[150])


def test_what_it_cannot_code_is_refused(items):
    family = BinaryMixtureFamily()
    with pytest.raises(UsageError, match="shape"):
        family.bind(bbarc.model.ItemSpec((28, 28), "uint8"))
    model = family.bind(bbarc.model.ItemSpec((8, 8), "uint8"))
    with pytest.raises(UsageError, match="binary items"):
        model.check_items(items * 2)
    with pytest.raises(ModelError, match="no weights"):
        family.from_config(dict(model.get_config(), weights_sha256="0" * 64))
