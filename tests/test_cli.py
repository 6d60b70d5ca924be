"""The CLI end to end, through a real subprocess (exit codes included)."""
import json

import h5py
import numpy as np
import pytest

from tests.helpers import SAMPLE, cli


@pytest.fixture(scope="module")
def archive(tmp_path_factory, mnist):
    tmp = tmp_path_factory.mktemp("cli")
    np.save(tmp / "in.npy", mnist[:40])
    out = cli("compress", tmp / "in.npy", tmp / "a.bbarc", "--chunk-size", 15, "--json", "-q")
    return tmp, json.loads(out.stdout)


def test_compress_reports_json(archive):
    _, result = archive
    assert result["items"] == 40 and result["chunks"] == 3 and 0.5 < result["bits_per_dim"] < 2.5


def test_decompress_get_info_verify(archive, mnist):
    tmp, _ = archive
    cli("decompress", tmp / "a.bbarc", tmp / "out.npy", "-q")
    assert np.array_equal(np.load(tmp / "out.npy"), mnist[:40])
    cli("get", tmp / "a.bbarc", 17, "-o", tmp / "one.npy")
    assert np.array_equal(np.load(tmp / "one.npy"), mnist[17])
    cli("get", tmp / "a.bbarc", "10:31", "-o", tmp / "range.npy")
    assert np.array_equal(np.load(tmp / "range.npy"), mnist[10:31])
    info = json.loads(cli("info", tmp / "a.bbarc", "--json").stdout)
    meta = info["metadata"]
    config = meta["model"]["config"]
    assert config["id"] == "mnist-vae" and len(config["weights_sha256"]) == 64
    assert meta["item_count"] == 40 and [c["items"] for c in info["chunks"]] == [15, 15, 10]
    assert meta["codec"]["scheme"] == "logistic-v1" and config["obs_precision"] == 20
    assert json.loads(cli("verify", tmp / "a.bbarc", "--deep", "--json", "-q").stdout)["ok"]


def test_hdf5_in_and_out_with_dataset_key(tmp_path, mnist_binary):
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f.create_dataset("grp/images", data=mnist_binary[:20])
        f.create_dataset("other", data=np.zeros(3))
    cli("compress", f"{tmp_path / 'd.h5'}:/grp/images", tmp_path / "b.bbarc", "-m", "mnist-vae-binary", "-q")
    cli("decompress", tmp_path / "b.bbarc", f"{tmp_path / 'o.h5'}:/x", "-q")
    with h5py.File(tmp_path / "o.h5") as f:
        assert f["x"].dtype == np.uint8 and np.array_equal(f["x"][:], mnist_binary[:20])
    missing = cli("compress", tmp_path / "d.h5", tmp_path / "c.bbarc", "--dataset", "/nope", check=False)
    assert missing.returncode == 2 and "grp/images" in missing.stderr
    assert not (tmp_path / "c.bbarc").exists()


def test_idx_input_with_labels_and_zstd_for_any_dtype(tmp_path):
    cli("compress", SAMPLE, tmp_path / "s.bbarc", "-m", "zstd", "-c", 300, "-q")
    floats = np.random.default_rng(0).normal(size=(50, 3, 5)).astype(">f8")
    np.save(tmp_path / "f.npy", floats)
    cli("compress", tmp_path / "f.npy", tmp_path / "f.bbarc", "-m", "zstd", "-c", 7, "-q")
    cli("decompress", tmp_path / "f.bbarc", tmp_path / "f_out.npy", "-q")
    out = np.load(tmp_path / "f_out.npy")
    assert out.shape == (50, 3, 5) and np.array_equal(out, floats)


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["compress", "{tmp}/missing.npy", "{tmp}/x.bbarc"], 2, "missing.npy"),
        (["compress", "{tmp}/f32.npy", "{tmp}/x.bbarc"], 2, "uint8"),
        (["compress", "{tmp}/shape.npy", "{tmp}/x.bbarc"], 2, "shape"),
        (["compress", "{tmp}/empty.npy", "{tmp}/x.bbarc"], 2, "item"),
        (["compress", "{tmp}/u8.npy", "{tmp}/x.bbarc", "-m", "mnist-vae-binary"], 2, "binar"),
        (["compress", "{tmp}/u8.npy", "{tmp}/x.bbarc", "-m", "no-such-model"], 4, "no-such-model"),
        (["compress", "{tmp}/u8.npy", "{tmp}/x.bbarc", "--chunk-size", "0"], 2, "chunk"),
        (["info", "{tmp}/u8.npy"], 3, "not a bbarc"),
        (["get", "{tmp}/ok.bbarc", "99", "-o", "{tmp}/o.npy"], 2, "out of range"),
        (["get", "{tmp}/ok.bbarc", "x", "-o", "{tmp}/o.npy"], 2, "selector"),
        (["compress"], 2, "Missing argument"),
    ],
)
def test_bad_input_gets_a_clear_message_and_distinct_exit_code(tmp_path, mnist, args, code, message):
    np.save(tmp_path / "f32.npy", mnist[:3].astype(np.float32))
    np.save(tmp_path / "shape.npy", mnist[:3, :20])
    np.save(tmp_path / "empty.npy", mnist[:0])
    np.save(tmp_path / "u8.npy", mnist[:3])
    cli("compress", tmp_path / "u8.npy", tmp_path / "ok.bbarc", "-m", "zstd", "-q")
    run = cli(*[a.format(tmp=tmp_path) for a in args], check=False)
    assert run.returncode == code, run.stderr
    assert message.lower() in run.stderr.lower()
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "x.bbarc").exists()


def test_models_lists_builtins_with_distribution_and_hooks():
    data = json.loads(cli("models", "--json").stdout)
    ids = {m["id"]: m for m in data["models"]}
    assert {"mnist-vae", "mnist-vae-binary", "zstd"} <= set(ids)
    assert ids["mnist-vae"]["distribution"] == "bbarc" and ids["mnist-vae"]["hooks"] == ["register_models"]
    assert all(p["hooks"] == ["register_models"] for p in data["plugins"])


def test_bench_reports_bbarc_and_baselines_with_a_plot(tmp_path):
    run = cli("bench", SAMPLE, "--limit", 30, "--chunk-size", 10, "--json", "--plot", tmp_path / "p.png")
    rows = {r["codec"]: r for r in json.loads(run.stdout)["rows"]}
    assert {"xz -9e", "zstd -19", "gzip -9", "bzip2 -9", "PNG (per image, optimize)"} <= set(rows)
    assert all(r["identical"] for r in rows.values())
    assert rows["bbarc mnist-vae (chunk 10)"]["bits_per_dim"] < rows["PNG (per image, optimize)"]["bits_per_dim"]
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    report = json.loads(run.stdout)
    bb = rows["bbarc mnist-vae (chunk 10)"]
    assert bb["startup_s"] > 0 and report["compress_speed_vs_xz_9e"] == pytest.approx(
        bb["compress_items_per_cpu_s"] / rows["xz -9e"]["compress_items_per_cpu_s"])
    table = cli("bench", SAMPLE, "--limit", 12, "--chunk-size", 6)
    assert "as many items per CPU-second as xz -9e" in " ".join(table.stdout.split())
