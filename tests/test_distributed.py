"""A Dask distributed cluster (local, on loopback) codes chunks through its ``concurrent.futures`` executor."""
import numpy as np
import pytest

import bbarc

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                       dashboard_address=None)
    with cluster, distributed.Client(cluster) as c:
        yield c


def test_dask_executor_writes_the_same_archive(client, tmp_path, mnist):
    serial, dask_made = tmp_path / "serial.bbarc", tmp_path / "dask.bbarc"
    bbarc.compress(mnist[:30], serial, model="mnist-vae", chunk_size=7)
    bbarc.compress(mnist[:30], dask_made, model="mnist-vae", chunk_size=7, executor=client.get_executor(),
                      lockstep=2)
    assert serial.read_bytes() == dask_made.read_bytes()
    assert all(w["host"] == "127.0.0.1" for w in client.scheduler_info()["workers"].values())


def test_dask_executor_decodes(client, tmp_path, mnist):
    path = tmp_path / "a.bbarc"
    bbarc.compress(mnist[:30], path, model="mnist-vae", chunk_size=7)
    with bbarc.open(path) as a:
        a.extract(str(tmp_path / "out.npy"), executor=client.get_executor(), lockstep=1)
    assert np.array_equal(np.load(tmp_path / "out.npy"), mnist[:30])
