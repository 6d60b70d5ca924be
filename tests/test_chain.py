import struct
from pathlib import Path

import numpy as np
import pytest

import bbarc
from bbarc import chain
from bbarc.chain import decode_chunk, decode_chunks, encode_chunk, encode_chunks
from bbarc.payload import HEADERLESS, header_item_count
from bbarc.errors import CorruptArchiveError
from bbarc.formats.container import ArchiveReader
from tests.helpers import bound_model
from tests.golden.make_golden import golden_inputs

GOLDEN = Path(__file__).resolve().parent / "golden"


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
    payload = encode_chunk(model, mnist[:5], header_version=1)
    (n_header,) = struct.unpack_from("<I", payload)
    assert n_header <= 1  # the compressed header alone (plus at most one item) pays for the first pops
    out, _ = decode_chunk(model, payload, 5, (28, 28), np.dtype(np.uint8))
    assert np.array_equal(out, mnist[:5])


@pytest.mark.parametrize("model_id", ["mnist-vae", "mnist-vae-binary"])
def test_version_2_chains_start_without_a_seed_and_cost_less(model_id, mnist, mnist_binary):
    """Version 2: the first item draws its latents from scratch bits and pays for them, no seed header is pushed,
    which costs less than the seed header did; any chunk of a lockstep group decodes alone, either form decodes
    beside the other, and a chunk with side data (format 1's records) keeps its seed header."""
    model = bound_model(model_id)
    items = (mnist_binary if model_id.endswith("binary") else mnist)[:24]
    chunks = [(items[:8], 0, {}), (items[8:20], 1, {}), (items[20:], 2, {})]
    new, old = encode_chunks(model, chunks), encode_chunks(model, chunks, header_version=1)
    assert new == [encode_chunk(model, *c) for c in chunks]
    for p, (part, index, _) in zip(new, chunks):
        assert struct.unpack_from("<I", p)[0] == HEADERLESS and header_item_count(p) == 0
        out, side = decode_chunk(model, p, len(part), (28, 28), np.dtype(np.uint8), chunk=index)
        assert np.array_equal(out, part) and side == {}
    decoded = decode_chunks(model, [(p, len(c[0]), c[1]) for p, c in zip(new + old, chunks + chunks)], (28, 28),
                            np.dtype(np.uint8))
    assert all(np.array_equal(items, c[0]) for (items, _), c in zip(decoded, chunks + chunks))
    # one item per chunk: the difference is the seed header less the first item's bits back, little else
    ones = [(items[i : i + 1], i, {}) for i in range(8)]
    saved = [len(q) - len(p) for p, q in zip(encode_chunks(model, ones), encode_chunks(model, ones, header_version=1))]
    assert min(saved) >= 8
    labelled = encode_chunk(model, items[:4], side={"labels": np.arange(4)})
    assert struct.unpack_from("<I", labelled)[0] == 0
    assert decode_chunk(model, labelled, 4, (28, 28), np.dtype(np.uint8))[1]["labels"].tolist() == [0, 1, 2, 3]


def test_bit_swap_chains_keep_their_seed_header(mnist):
    """Over a bits-back prior (two latent layers), a first item drawing every layer from scratch would cost more
    than the seed header: those chains keep version 1's form."""
    model = bound_model("mnist-hvae")
    assert encode_chunk(model, mnist[:6]) == encode_chunk(model, mnist[:6], header_version=1)


def test_a_version_2_chain_that_restarts_keeps_its_header_items(mnist):
    """A pop after the first item that runs short restarts the chain with an item in a seed header; the first
    coded item still pushes without bits back."""
    model = bound_model("mnist-vae")
    chunk = [(mnist[:6], 0, {})]
    lanes_before = chain._push_round

    def failing_once(codec, lanes, chains, calls=[]):  # noqa: B006 - counts calls across the chain's rounds
        advanced = lanes_before(codec, lanes, chains)
        if len(calls) == 1 and chains and not chains[0].first and chains[0].n_header == 0:
            chains[0].n_header += 1
            chains[0].restart()
            advanced = []
        calls.append(1)
        return advanced

    chain._push_round = failing_once
    try:
        (payload,) = encode_chunks(model, chunk)
    finally:
        chain._push_round = lanes_before
    assert struct.unpack_from("<I", payload)[0] == HEADERLESS | 1
    out, _ = decode_chunk(model, payload, 6, (28, 28), np.dtype(np.uint8))
    assert np.array_equal(out, mnist[:6])


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
    model = bound_model(model_id)
    chunks = [(mnist[0:7], 0, {}), (mnist[7:10], 1, {}), (mnist[10:21], 2, {"labels": np.arange(11)})]
    together = encode_chunks(model, chunks)
    assert together == [encode_chunk(model, items, chunk=i, side=side) for items, i, side in chunks]
    decoded = decode_chunks(model, [(p, len(c[0]), c[1]) for p, c in zip(together, chunks)], (28, 28),
                            np.dtype(np.uint8))
    assert all(np.array_equal(out, c[0]) for (out, _), c in zip(decoded, chunks))
    assert decoded[2][1]["labels"].tolist() == list(range(11))


def test_random_access_decodes_only_the_chunk_tail_and_resumes(mnist, tmp_path):
    """Item i needs only the items after it in its chunk; a later read goes on from there, and a chunk decoded
    to its start is checked (header, raw-content hash) and cached like any other."""
    from bbarc.chain import ChunkDecoder

    model = bound_model("mnist-hvae")  # seeds with items in the header: reads that reach into it are covered too
    payload = encode_chunk(model, mnist[:9])
    (n_header,) = struct.unpack_from("<I", payload)
    assert n_header >= 1
    dec = ChunkDecoder(model, payload, 9, (28, 28), np.dtype(np.uint8))
    for first in (8, 6):
        assert np.array_equal(dec.down_to(first), mnist[first:9]) and dec.result is None
    assert dec.decoded_from == 6  # each call decoded only the items it needed
    assert np.array_equal(dec.down_to(n_header), mnist[n_header:9])
    assert dec.result is not None  # every coded item is out: the header is popped and checked
    assert np.array_equal(dec.down_to(0), mnist[:9])


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("*.bbarc")), ids=lambda p: p.name)
def test_the_chain_writes_the_golden_payloads_byte_for_byte(path):
    """Encoding a golden archive's items again, with the model (and weights) it was written with, gives exactly its
    payloads: the item codecs code as the chain always did."""
    _, items, labels, _ = golden_inputs()[path.name.rsplit("-v", 1)[0]]
    items = items.astype(items.dtype.newbyteorder("="))
    with bbarc.open(path) as archive, ArchiveReader(path) as reader:
        in_chain = labels is not None and reader.version == 1  # version 2 keeps side data outside the chain
        chunks = [(items[c.first_item : c.stop_item], c.index,
                   {"labels": labels[c.first_item : c.stop_item]} if in_chain else {}) for c in reader.chunks]
        version = archive.metadata.coding.params["header_version"]
        assert encode_chunks(archive.model(), chunks, header_version=version) == [
            bytes(reader.read_chunk(c.index)) for c in reader.chunks]


@pytest.mark.parametrize("model_id", ["mnist-vae", "mnist-hvae"])
def test_damage_in_lockstep_decoding_names_the_damaged_chunk(model_id, mnist):
    """Whether the damage shows as a pop that runs short or as a posterior push of a symbol of probability 0, the
    error names the chunk, and only that chunk, among chunks decoded together."""
    model = bound_model(model_id)
    chunks = [(mnist[i * 5 : i * 5 + 5], i, {}) for i in range(3)]
    payloads = encode_chunks(model, chunks)
    for offset in range(12, len(payloads[1]) - 4, max(1, len(payloads[1]) // 40)):
        damaged = bytearray(payloads[1])
        damaged[offset] ^= 0x21
        jobs = [(p, 5, i) for i, p in enumerate(payloads[:1] + [bytes(damaged)] + payloads[2:])]
        with pytest.raises(CorruptArchiveError) as info:
            decode_chunks(model, jobs, (28, 28), np.dtype(np.uint8))
        assert info.value.chunk == 1


def test_a_model_free_payload_must_hold_all_its_items_in_its_header():
    model = bound_model("zstd")
    payload = encode_chunk(model, np.arange(12.0).reshape(4, 3))
    assert np.array_equal(decode_chunk(model, payload, 4, (3,), np.dtype(float))[0], np.arange(12.0).reshape(4, 3))
    with pytest.raises(CorruptArchiveError, match="chunk 0: the payload codes 1 items but the model codes none"):
        decode_chunk(model, struct.pack("<I", 3) + payload[4:], 4, (3,), np.dtype(float))
