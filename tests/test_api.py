"""The Python API through its public names only: ``bbarc.open``, ``bbarc.decompress``, ``Archive`` and the CLI.

Decoding work is counted with ``Archive.stats`` (public), never by reading an archive's private state.
"""
import errno
import json
import os
import types

import numpy as np
import pytest
from click.testing import CliRunner

import bbarc
from bbarc import cli, hookspecs, registry
from bbarc.errors import OutputError
from bbarc.plugins.zstd_model import ZstdFamily


@pytest.fixture(scope="module")
def vae_archive(tmp_path_factory, mnist):
    """40 images in chunks of 16 (16 + 16 + 8) with per-item labels, coded by a bits-back model."""
    path = tmp_path_factory.mktemp("api") / "vae.bbarc"
    bbarc.compress(mnist[:40], path, model="mnist-vae", chunk_size=16, labels=np.arange(40, dtype=np.int16))
    return path


@pytest.fixture(scope="module")
def zstd_archive(tmp_path_factory, mnist):
    path = tmp_path_factory.mktemp("api") / "zstd.bbarc"
    bbarc.compress(mnist[:40], path, model="zstd", chunk_size=7)
    return path


SLICES = [slice(None, None, -1), slice(None, None, -3), slice(35, 3, -4), slice(-1, -41, -1), slice(3, 39, 5),
          slice(None, None, 100), slice(5, 2), slice(5, 2, -1), slice(38, None, 1), slice(-5, None), slice(0, 0)]


@pytest.mark.parametrize("key", SLICES, ids=str)
def test_slices_with_any_step_return_the_items_numpy_would(zstd_archive, mnist, key):
    with bbarc.open(zstd_archive) as a:
        got = a[key]
    want = mnist[:40][key]
    assert got.shape == want.shape and got.dtype == want.dtype and np.array_equal(got, want)


def test_reversed_slice_of_a_bits_back_archive_decodes_each_chunk_once(vae_archive, mnist):
    with bbarc.open(vae_archive, cache_chunks=0) as a:
        assert np.array_equal(a[::-1], mnist[:40][::-1])
        assert np.array_equal(a[30:10:-7], mnist[30:10:-7])  # items 30, 23, 16: chunk 1 only
        assert a.stats.chunks == 3 + 1


@pytest.mark.parametrize("cache_chunks", [0, 2])
def test_side_data_reads_without_decoding(vae_archive, cache_chunks):
    """Format v2 keeps side data outside the chain: reading labels decodes nothing."""
    with bbarc.open(vae_archive, cache_chunks=cache_chunks) as a:
        assert a.side(1)["labels"].tolist() == list(range(16, 32))
        assert a.stats.chunks == 0
        assert a.decode_chunks([1])[0].side["labels"].tolist() == list(range(16, 32))


def test_chunk_then_chunk_again_decodes_again_only_without_a_cache(vae_archive):
    for cache_chunks, decodes in ((0, 2), (1, 1)):
        with bbarc.open(vae_archive, cache_chunks=cache_chunks) as a:
            a.chunk(2), a.side(2), a.chunk(2)
            assert a.stats.chunks == decodes


def test_decode_chunks_is_public_and_returns_items_and_side_data_in_the_order_asked(vae_archive, mnist):
    with bbarc.open(vae_archive) as a:
        decoded = a.decode_chunks([2, 0])
        assert [len(items) for items, _ in decoded] == [8, 16]
        assert np.array_equal(decoded[0].items, mnist[32:40]) and np.array_equal(decoded[1].items, mnist[:16])
        assert decoded[0].side["labels"].tolist() == list(range(32, 40))
        assert not decoded[0].items.flags.writeable  # shared with the cache
        assert a.stats.chunks == 2
        a.decode_chunks([0, 2])
        assert a.stats.chunks == 2 and a.stats.cache_hits == 2
        with pytest.raises(bbarc.UsageError, match="chunk 3 does not exist"):
            a.decode_chunks([3])


def test_random_access_decodes_only_the_chunk_tail_and_resumes(vae_archive, mnist):
    """Item i needs only the items after it in its chunk; a later read goes on from there, and a chunk decoded to
    its start is checked (header, raw-content hash) and cached like any other."""
    with bbarc.open(vae_archive) as a:
        assert np.array_equal(a[20], mnist[20])
        assert (a.stats.chunks, a.stats.items) == (0, 12)  # items 31 down to 20 of chunk 1 (items 16..31)
        assert np.array_equal(a[21], mnist[21]) and np.array_equal(a[17], mnist[17])
        assert (a.stats.chunks, a.stats.items) == (0, 15)  # resumed at 20, not restarted
        assert np.array_equal(a[16], mnist[16])
        assert (a.stats.chunks, a.stats.items) == (1, 16)  # down to its start: whole, checked and cached
        assert all(np.array_equal(a[i], mnist[i]) for i in (15, 0))
        before = a.stats
        assert all(np.array_equal(a[i], mnist[i]) for i in (1, 14, 16, 31))
        assert a.stats.items == before.items and a.stats.cache_hits == before.cache_hits + 4
    with bbarc.open(vae_archive, cache_chunks=0) as a:
        assert np.array_equal(a[39], mnist[39]) and np.array_equal(a[38], mnist[38])
        assert a.stats.items == 1 + 2  # no tail kept: the second read starts again from the chunk's end


def test_decompress_returns_what_it_wrote(vae_archive, tmp_path, mnist):
    result = bbarc.decompress(vae_archive, tmp_path / "out.npy")
    assert (result.items, result.chunks, result.output) == (40, 3, str(tmp_path / "out.npy"))
    assert result.as_dict()["items"] == 40 and result.seconds >= 0
    assert np.array_equal(np.load(tmp_path / "out.npy"), mnist[:40])


def test_one_progress_signature_advance_and_total(zstd_archive, tmp_path, mnist):
    seen = []
    bbarc.compress(mnist[:30], tmp_path / "p.bbarc", model="zstd", chunk_size=4, progress=lambda k, n: seen.append(
        ("compress", k, n)))
    with bbarc.open(zstd_archive) as a:
        a.extract(tmp_path / "p.npy", progress=lambda k, n: seen.append(("extract", k, n)), lockstep=2)
        a.verify(deep=True, progress=lambda k, n: seen.append(("verify", k, n)))
    for step, total in (("compress", 30), ("extract", 40), ("verify", 40)):
        assert {n for s, _, n in seen if s == step} == {total}
        assert sum(k for s, k, _ in seen if s == step) == total


def test_get_writes_atomically(zstd_archive, tmp_path, monkeypatch):
    target = tmp_path / "item.npy"
    target.write_bytes(b"previous content")

    def write_half_then_fail(fd, data, offset):
        os.write(fd, b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", write_half_then_fail)
    run = CliRunner().invoke(cli.app, ["get", str(zstd_archive), "3", "-o", str(target), "--force"])
    assert isinstance(run.exception, OutputError) and "disk is full" in str(run.exception)
    assert target.read_bytes() == b"previous content"
    assert [p.name for p in tmp_path.iterdir()] == ["item.npy"]  # and no temp file left behind
    monkeypatch.undo()
    run = CliRunner().invoke(cli.app, ["get", str(zstd_archive), "3:6", "-o", str(tmp_path / "range")])
    assert run.exit_code != 0 and not (tmp_path / "range.npy").exists()  # no name made up: .npy or .h5 only


class ExtraSpecs:
    @hookspecs.hookspec
    def describe_data(self, path):
        """A hook this bbarc does not have: only the plugin manager can know a plugin implements it."""


class OtherZstd(ZstdFamily):
    id = "other-zstd"


def test_models_lists_the_hooks_each_plugin_implements(monkeypatch):
    plugin = types.SimpleNamespace(register_models=hookspecs.hookimpl(lambda register: register(OtherZstd())),
                                   describe_data=hookspecs.hookimpl(lambda path: None))
    plugin.__name__ = "two_hooks"
    private = registry.Registry(load_entry_points=False, extra_plugins=[plugin])  # the global one stays untouched
    private.pm.add_hookspecs(ExtraSpecs)
    monkeypatch.setattr(registry, "default_registry", lambda: private)
    run = CliRunner().invoke(cli.app, ["models", "--json"])
    assert run.exit_code == 0, run.output
    rows = {r["id"]: (r["plugin"], r["hooks"]) for r in json.loads(run.stdout)["models"]}
    assert rows["other-zstd"] == ("two_hooks", ["describe_data", "register_models"])
    assert rows["mnist-vae"] == ("mnist_vae", ["register_models"])
