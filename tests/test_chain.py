import struct

import numpy as np
import pytest

from bbarc.chain import decode_chunk, encode_chunk
from tests.helpers import bound_model
from bbarc.errors import CorruptArchiveError


@pytest.mark.parametrize("model_id", ["mnist-vae", "mnist-vae-binary", "mnist-hvae", "zstd"])
def test_chunk_round_trip(model_id, mnist, mnist_binary):
    items = (mnist_binary if model_id.endswith("binary") else mnist)[:12]
    model = bound_model(model_id)
    payload = encode_chunk(model, items, side={"labels": np.arange(12, dtype=np.int16)})
    out, side = decode_chunk(model, payload, 12, (28, 28), np.dtype(np.uint8))
    assert np.array_equal(out, items)
    assert side["labels"].tolist() == list(range(12))


def test_the_header_seeds_the_chain_and_items_move_into_it_only_when_needed(mnist):
    model = bound_model("mnist-vae")
    payload = encode_chunk(model, mnist[:5])
    (n_header,) = struct.unpack_from("<I", payload)
    assert n_header <= 1  # the compressed header alone (plus at most one item) pays for the first pops
    out, _ = decode_chunk(model, payload, 5, (28, 28), np.dtype(np.uint8))
    assert np.array_equal(out, mnist[:5])


def test_bits_back_rate_is_close_to_the_model_rate(mnist):
    model = bound_model("mnist-vae")
    payload = encode_chunk(model, mnist[:100])
    bpd = 8 * len(payload) / mnist[:100].size
    assert bpd < 1.6  # the model's -ELBO on these images is about 1.35-1.45 bits/dim


def test_damaged_payload_is_reported_not_decoded_into_garbage(mnist):
    model = bound_model("mnist-vae")
    payload = bytearray(encode_chunk(model, mnist[:6]))
    payload[len(payload) // 2] ^= 0x40
    with pytest.raises(CorruptArchiveError, match="chunk 7"):
        decode_chunk(model, bytes(payload), 6, (28, 28), np.dtype(np.uint8), chunk=7)


@pytest.mark.parametrize("model_id", ["mnist-vae", "mnist-hvae"])
def test_lockstep_chains_are_bit_identical_to_single_chains(model_id, mnist):
    from bbarc.chain import decode_chunks, encode_chunks

    model = bound_model(model_id)
    chunks = [(mnist[0:7], 0, {}), (mnist[7:10], 1, {}), (mnist[10:21], 2, {"labels": np.arange(11)})]
    together = encode_chunks(model, chunks)
    assert together == [encode_chunk(model, items, chunk=i, side=side) for items, i, side in chunks]
    decoded = decode_chunks(model, [(p, len(c[0]), c[1]) for p, c in zip(together, chunks)], (28, 28),
                            np.dtype(np.uint8))
    assert all(np.array_equal(out, c[0]) for (out, _), c in zip(decoded, chunks))
    assert decoded[2][1]["labels"].tolist() == list(range(11))


def test_chunk_decoder_decodes_only_the_chunk_tail_and_resumes(mnist):
    """Item i needs only the items after it in its chunk; a later call goes on from there (the Archive side of
    this, caching included, is tests/test_api.py)."""
    from bbarc.chain import ChunkDecoder

    model = bound_model("mnist-hvae")  # seeds with items in the header: reads that reach into it are covered too
    payload = encode_chunk(model, mnist[:9])
    (n_header,) = struct.unpack_from("<I", payload)
    assert n_header >= 1
    dec = ChunkDecoder(model, payload, 9, (28, 28), np.dtype(np.uint8))
    for first in (8, 6):
        assert np.array_equal(dec.down_to(first), mnist[first:9]) and dec.result is None
    assert dec._chain.next == 5  # each call decoded only the items it needed
    assert np.array_equal(dec.down_to(n_header), mnist[n_header:9])
    assert dec.result is not None  # every coded item is out: the header is popped and checked
    assert np.array_equal(dec.down_to(0), mnist[:9])
