"""bbarc.bench's measuring helpers, and the benchmark scripts running on small data through them."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

import bbarc
from bbarc import bench
from tests.helpers import SHARED_MNIST

ROOT = Path(__file__).resolve().parents[1]


def test_random_access_timing(tmp_path, mnist):
    path = tmp_path / "a.bbarc"
    bbarc.compress(mnist[:20], path, model="zstd", chunk_size=5)
    seconds, same = bench.read_latencies(path, [0, 7, 19], mnist[:20])
    assert len(seconds) == 3 and same and min(seconds) > 0
    assert not bench.read_latencies(path, [3], mnist[1:21])[1]
    assert set(bench.latency_summary(seconds)) == {"median_ms", "p90_ms", "max_ms"}
    assert bench.fresh_process_read(path, 3) > 0


@pytest.mark.skipif(not Path("/usr/bin/time").exists(), reason="needs GNU time")
def test_measure_command():
    pytest.importorskip("psutil")
    m = bench.measure_command([sys.executable, "-c", "print(sum(range(10**6)))"], interval=0.01)
    assert m["stdout"].strip() == str(sum(range(10**6)))
    assert m["wall_s"] > 0 and m["cpu_s"] >= 0 and m["largest_rss_bytes"] > 0


def test_bbarc_row_round_trips(tmp_path, mnist):
    row = bench.bbarc_row(mnist[:12], "zstd", 6, tmp_path / "x.bbarc")
    assert row.identical and row.codec == "bbarc zstd (chunk 6)" and row.startup_s > 0
    assert (tmp_path / "x.bbarc").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["x.bbarc"]


def test_coder_throughput_script():
    run = subprocess.run([sys.executable, ROOT / "benchmarks" / "coder_throughput.py", "--symbols", "3000"],
                         capture_output=True, text=True, check=True)
    assert "bbarc uniform 12 bits" in run.stdout


@pytest.mark.skipif(not (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").exists(), reason="needs ../shared MNIST")
def test_mnist_rates_script(tmp_path):
    subprocess.run([sys.executable, ROOT / "benchmarks" / "mnist_rates.py", "--data", SHARED_MNIST, "--limit", "24",
                    "--chunk-sizes", "24", "12", "--models", "mnist-vae-binary", "--out", tmp_path],
                   capture_output=True, text=True, check=True, cwd=tmp_path)
    report = json.loads((tmp_path / "mnist_rates.json").read_text())
    rows = report["results"]["binary"]
    assert {r["codec"] for r in rows} >= {"xz -9e", "bbarc mnist-vae-binary (chunk 12)"}
    assert all(r["identical"] for r in rows) and "binary_per_chunk_overhead_bits" in report["results"]


@pytest.mark.skipif(not (SHARED_MNIST / "train-images-idx3-ubyte.gz").exists(), reason="needs ../shared MNIST")
def test_cli_speed_script(tmp_path):
    """The command-line benchmark on a few images: fresh processes, round trips checked, xz and zstd alongside."""
    subprocess.run([sys.executable, ROOT / "benchmarks" / "cli_speed.py", "--data", SHARED_MNIST, "--limit", "20",
                    "--runs", "1", "--models", "mnist-vae-binary", "--out", tmp_path],
                   capture_output=True, text=True, check=True, cwd=tmp_path)
    report = json.loads((tmp_path / "cli_speed.json").read_text())
    rows = report["coding"]["mnist-vae-binary"]
    assert [r["codec"] for r in rows] == ["bbarc mnist-vae-binary", "xz -9e", "zstd -19"]
    assert all(r["identical"] and r["compress_cpu_s"] > 0 for r in rows)
    cold = report["cold_start"]
    assert cold["identical"] and set(cold["commands"]) == {"baseline", "info", "get", "models", "--help"}
    assert cold["commands"]["baseline"]["ratio"] == 1 and "target <= 4x" in (tmp_path / "cli_speed.txt").read_text()


def test_benchmark_scripts_need_a_data_folder(monkeypatch):
    monkeypatch.delenv("BBARC_DATA", raising=False)
    for script in ("speed.py", "mnist_rates.py", "random_access.py", "scale_1m.py", "cli_speed.py"):
        run = subprocess.run([sys.executable, ROOT / "benchmarks" / script], capture_output=True, text=True)
        assert run.returncode == 2 and "--data" in run.stderr, script


def test_no_timing_code_in_the_benchmark_scripts():
    """Measuring lives in bbarc.bench: the scripts build data sets and report."""
    for script in (ROOT / "benchmarks").glob("*.py"):
        text = script.read_text()
        for clock in ("perf_counter", "process_time", "getrusage", "time.time("):
            assert clock not in text, f"{script.name} times with {clock}; use bbarc.bench"
