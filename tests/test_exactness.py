"""Decoding must rebuild exactly the encoder's integers whatever the batching and thread count."""
import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import bbarc
from bbarc.conformance import check_batch_invariance
from tests.helpers import bound_model

SCRIPT = r"""
import hashlib, json, sys
import numpy as np, torch
torch.set_num_threads(int(sys.argv[1]))
from bbarc.chain import encode_chunk
from bbarc.model import ItemSpec
from bbarc.registry import default_registry
bound_model = lambda model_id: default_registry().bind(model_id, ItemSpec((28, 28), "uint8"))
items = np.load(sys.argv[2])
out = {}
for model_id in ("mnist-vae", "mnist-vae-binary", "mnist-hvae"):
    m = bound_model(model_id)
    data = (items > 127).astype(np.uint8) if model_id.endswith("binary") else items
    h = hashlib.sha256()
    below = data
    for layer, spec in enumerate(m.latent_layers, start=1):
        q = m.posterior(layer, below)
        z = (np.arange(spec.size)[None] * (1 + np.arange(len(data))[:, None]) * 7) % (1 << spec.bits)
        p = m.conditional(layer, z)
        for a in (q.mean, q.log_scale, p.mean, p.log_scale, p.weights):
            h.update(a.tobytes())
        below = z
    h.update(encode_chunk(m, data))
    out[model_id] = h.hexdigest()
print(json.dumps(out))
"""


@pytest.mark.parametrize("model_id", ["mnist-vae", "mnist-vae-binary", "mnist-hvae"])
def test_model_integers_do_not_depend_on_the_batch(model_id, mnist, mnist_binary):
    items = (mnist_binary if model_id.endswith("binary") else mnist)[:7]
    check_batch_invariance(bound_model(model_id), items)


def test_same_bytes_with_one_or_two_threads(tmp_path, mnist):
    np.save(tmp_path / "items.npy", mnist[:8])
    digests = []
    for threads in ("1", "2"):
        env = dict(os.environ, OMP_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads, MKL_NUM_THREADS=threads,
                   NUMBA_NUM_THREADS=threads)
        run = subprocess.run([sys.executable, "-c", SCRIPT, threads, str(tmp_path / "items.npy")], env=env,
                             capture_output=True, text=True, check=True)
        digests.append(json.loads(run.stdout.strip().splitlines()[-1]))
    assert digests[0] == digests[1]


def test_one_chunk_alone_decodes_like_all_chunks_together(tmp_path, mnist):
    path = tmp_path / "a.bbarc"
    bbarc.compress(mnist[:30], path, model="mnist-vae", chunk_size=10)
    with bbarc.open(path) as a:
        together = a[:]
    with bbarc.open(path) as b:
        alone = b.chunk(2)
        single = b[25]
    assert np.array_equal(together, mnist[:30])
    assert np.array_equal(alone, together[20:30]) and np.array_equal(single, mnist[25])
    digest = hashlib.sha256(together.tobytes()).hexdigest()
    assert digest == hashlib.sha256(mnist[:30].tobytes()).hexdigest()


def test_archive_pickles_for_data_loader_workers(tmp_path, mnist):
    import pickle

    bbarc.compress(mnist[:12], tmp_path / "p.bbarc", model="mnist-vae", chunk_size=5)
    with bbarc.open(tmp_path / "p.bbarc") as a:
        b = pickle.loads(pickle.dumps(a))
        assert np.array_equal(b[11], mnist[11]) and len(b) == 12
        b.close()


def test_parallel_compression_and_decompression_give_the_same_bytes(tmp_path, mnist):
    from concurrent.futures import ThreadPoolExecutor

    serial, parallel, threaded = (tmp_path / f"{n}.bbarc" for n in ("s", "p", "t"))
    bbarc.compress(mnist[:24], serial, model="mnist-vae", chunk_size=5)
    bbarc.compress(mnist[:24], parallel, model="mnist-vae", chunk_size=5, workers=2)
    with ThreadPoolExecutor(3) as pool:
        bbarc.compress(mnist[:24], threaded, model="mnist-vae", chunk_size=5, executor=pool)
    assert serial.read_bytes() == parallel.read_bytes() == threaded.read_bytes()
    bbarc.decompress(parallel, tmp_path / "out.npy", workers=2)
    assert np.array_equal(np.load(tmp_path / "out.npy"), mnist[:24])
