"""Damaged archives and missing models: clear errors, distinct exit codes, undamaged chunks still decode."""
import json

import numpy as np
import pytest

import bbarc
from bbarc.formats.container import ArchiveReader, ArchiveWriter
from bbarc.errors import CorruptArchiveError, ModelError
from bbarc.model import ItemSpec
from bbarc.plugins.mnist_vae import MnistVAE
from bbarc.plugins.weightfiles import WeightsFile
from bbarc.plugins.zstd_model import ZstdModel
from tests.helpers import cli


@pytest.fixture()
def archive(tmp_path, mnist):
    path = tmp_path / "a.bbarc"
    bbarc.compress(mnist[:40], path, model="mnist-vae", chunk_size=10)
    return path


def flip(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


def test_flipped_byte_names_the_bad_chunk_and_the_rest_decodes(archive, mnist):
    with ArchiveReader(archive) as r:
        bad = r.chunks[2]
    flip(archive, bad.offset + bad.length // 2)
    run = cli("verify", archive, "--json", "-q", check=False)
    assert run.returncode == 3
    assert [c["index"] for c in json.loads(run.stdout)["bad"]] == [2]
    with bbarc.open(archive) as a:
        assert np.array_equal(a[5], mnist[5]) and np.array_equal(a[35], mnist[35])
        with pytest.raises(CorruptArchiveError) as info:
            a[25]
        assert info.value.chunk == 2
    run = cli("get", archive, 25, "-o", archive.parent / "x.npy", check=False)
    assert run.returncode == 3 and "chunk 2" in run.stderr
    assert cli("get", archive, 31, "-o", archive.parent / "y.npy").returncode == 0


def test_damage_that_passes_the_checksum_is_caught_by_the_deep_check(archive, tmp_path):
    # Rewrite a payload with fresh checksums, as a buggy tool might: only decoding can notice.
    forged = tmp_path / "forged.bbarc"
    with ArchiveReader(archive) as r, ArchiveWriter(forged, r.metadata, version=r.version) as w:
        for c in r.chunks:
            payload = bytearray(r.read_chunk(c.index))
            if c.index == 1:
                payload[-5] ^= 0x01
            w.write_chunk(bytes(payload), c.first_item, c.item_count, c.raw_hash, scheme=c.scheme,
                          item_shapes=c.shapes, side=r.read_side(c.index) or None)
    assert cli("verify", forged, "-q").returncode == 0
    run = cli("verify", forged, "--deep", "--json", "-q", check=False)
    assert run.returncode == 3 and [c["index"] for c in json.loads(run.stdout)["bad"]] == [1]


def test_truncated_archive_keeps_its_intact_chunks(archive, mnist):
    with ArchiveReader(archive) as r:
        cut = r.chunks[3].offset + 20
    archive.write_bytes(archive.read_bytes()[:cut])
    run = cli("info", archive, check=False)
    assert run.returncode == 3 and "recover" in run.stderr.lower()
    with bbarc.open(archive, recover=True) as a:
        assert len(a) == 30 and np.array_equal(a[:], mnist[:30])
    run = cli("verify", archive, "--deep", "--json", "-q", check=False)
    report = json.loads(run.stdout)  # what is left is intact, but the file is not whole: verify fails
    assert run.returncode == 3 and not report["footer_ok"] and report["intact_chunks"] == 3
    assert report["lost"] == [[30, 40]]


def test_missing_plugin_and_different_weights_exit_4(tmp_path, mnist, monkeypatch):
    # a model value whose family no installed plugin provides
    bbarc.compress(mnist[:5], tmp_path / "g.bbarc", model=MnistVAE("ghost", WeightsFile.shipped("mnist-vae-2.npz"),
                                                                   binary=False))
    run = cli("get", tmp_path / "g.bbarc", 0, "-o", tmp_path / "o.npy", check=False)
    assert run.returncode == 4 and "ghost" in run.stderr
    assert cli("info", tmp_path / "g.bbarc").returncode == 0  # metadata stays readable without the model

    monkeypatch.setattr(MnistVAE, "weights_sha256", lambda self: "0" * 64)
    bbarc.compress(mnist[:5], tmp_path / "w.bbarc", model="mnist-vae")
    monkeypatch.undo()
    run = cli("decompress", tmp_path / "w.bbarc", tmp_path / "w.npy", check=False)
    assert run.returncode == 4 and "weights" in run.stderr and "was written by bbarc" in " ".join(run.stderr.split())
    assert not (tmp_path / "w.npy").exists()
    with pytest.raises(ModelError):
        bbarc.open(tmp_path / "w.bbarc")[0]


def test_failure_while_compressing_leaves_nothing(tmp_path, mnist, monkeypatch):
    target = tmp_path / "x.bbarc"
    target.write_bytes(b"previous content")
    data = mnist[:30].copy()
    data[25, 0, 0] = 7  # binary model refuses values > 1, in the third chunk
    binary = (mnist[:30] > 127).astype(np.uint8)
    binary[25, 0, 0] = 7
    with pytest.raises(bbarc.UsageError):
        bbarc.compress(binary, target, model="mnist-vae-binary", chunk_size=10)
    assert target.read_bytes() == b"previous content"
    assert [p.name for p in tmp_path.iterdir()] == ["x.bbarc"]


def test_stored_chunks_decode_without_their_model(tmp_path, mnist):
    """Chunks coded with the model-free "stored" scheme need no model: an archive whose model is missing still
    gives them back."""

    class Ghost(ZstdModel):
        family = "ghost-zstd"

    bbarc.compress(mnist[:5], tmp_path / "g.bbarc", model=Ghost(ItemSpec((28, 28), "uint8")), chunk_size=2)
    with bbarc.open(tmp_path / "g.bbarc") as a:
        assert np.array_equal(a[3], mnist[3]) and np.array_equal(a[:], mnist[:5])
        with pytest.raises(ModelError):
            a.model()
