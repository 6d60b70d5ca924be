"""Crafted archives (issue 15): metadata, index and chunk seed headers edited with every checksum recomputed, so
the parsers themselves meet the edit. Every command ends cleanly (exit 0, 2, 3, 4 or 5, never a traceback), uses
at most 100 MB more memory than on the intact archive, and never returns wrong data.

Every case runs through the API in this process; a representative subset runs through the CLI as a user would."""
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import zstandard

import bbarc
import bbarc.chain
from tests.crafting import (CLEAN_EXITS, MEMORY_SLACK_MB, TRACEBACK, check_api, cli_measured, edit, rle_frame,
                            seed_frame, split)
from tests.helpers import ROOT

GOLDEN = ROOT / "tests" / "golden"



def _set(key, value):
    return lambda m: m.__setitem__(key, value)


def _drop(key):
    return lambda m: m.pop(key, None)


def _model(key, value):
    def change(m):
        (m["model"].get("config") or m["model"])[key] = value
    return change


def _final(**values):
    return lambda ix: ix.__setitem__("final", values)


def _chunk(key, value, which=-1):
    return lambda ix: ix["chunks"][which].__setitem__(key, value)


def _swap_numbers(ix):
    ix["chunks"][0]["chunk"], ix["chunks"][1]["chunk"] = 1, 0


META = {
    "item_count_huge": _set("item_count", 2**40), "item_count_more": _set("item_count", 31),
    "item_count_less": _set("item_count", 5), "item_count_float": _set("item_count", 1.5),
    "shape_huge": _set("item_shape", [2**30, 2**30]), "shape_zero": _set("item_shape", [0]),
    "shape_scalar": _set("item_shape", []), "shape_3d": _set("item_shape", [28, 28, 28]),
    "shape_flat": _set("item_shape", [784]), "shape_long": _set("item_shape", [1] * 40),
    "dtype_object": _set("item_dtype", "O"), "dtype_str": _set("item_dtype", "<U8"),
    "dtype_void": _set("item_dtype", "V8"), "dtype_time": _set("item_dtype", "m8"),
    "dtype_list": _set("item_dtype", [1]),
    "source_dtype_object": _set("source_dtype", "O"), "chunk_size_huge": _set("chunk_size", 2**62),
    "chunk_size_zero": _set("chunk_size", 0), "chunk_size_one": _set("chunk_size", 1),
    "model_str": _set("model", "x"), "model_empty": _set("model", {}), "model_id_null": _model("id", None),
    "model_shape": _model("item_shape", [2**31, 5]), "model_dtype": _model("item_dtype", "O"),
    "model_precision": _model("obs_precision", 10**9), "model_layers": _model("latent_layers", -5),
    "codec_str": _set("codec", "x"), "codec_empty": _set("codec", {}), "side_ints": _set("side", [1]),
    "writer_object": _set("writer", {"a": [1]}),
    **{f"missing_{k}": _drop(k) for k in ("format", "item_shape", "item_dtype", "item_count", "chunk_size", "model",
                                          "codec", "side")},
}
META_RAW = {
    "deep_json": lambda m: b'{"a":' + b"[" * 100000 + b"]" * 100000 + b"}",
    "deep_inside": lambda m: m[:-1] + b',"x":' + b"[" * 5000 + b"]" * 5000 + b"}",
    "nan": lambda m: m[:-1] + b',"x":NaN}', "array": lambda m: b"[]", "bad_utf8": lambda m: b'{"\xff":1}',
}
INDEX = {
    "last_count_huge": _chunk("item_count", 2**40), "last_count_more": _chunk("item_count", 11),
    "first_count_zero": _chunk("item_count", 0, 0), "number_off": _chunk("chunk", 5, 0),
    "numbers_swapped": _swap_numbers,
    "final_count": _final(item_count=2**40), "final_count_more": _final(item_count=21, chunks=2),
    "final_shape": _final(item_shape=[2**20, 2**20]),
    "final_flat": _final(item_shape=[784]), "final_dtype": _final(item_dtype="O"),
}
INDEX_FRAME = {
    "index_declares_2_5_gib": lambda: rle_frame(5 << 29),
    "index_declares_2_40": lambda: rle_frame(1 << 40, 0),
    "index_deep_json": lambda: zstandard.ZstdCompressor().compress(b"[" * 100000 + b"]" * 100000),
}


def _seed_edit(change):
    """A stand-in for ``bbarc.chain.seed_header`` writing the real header's JSON after ``change``."""
    def craft(items, n_header, chunk, side):
        meta = dict(v=1, chunk=chunk, items=len(items), shape=list(items.shape[1:]), dtype=items.dtype.str,
                    header_items=n_header, side={k: [v.dtype.str, list(v.shape)] for k, v in side.items()})
        body = np.ascontiguousarray(items[:n_header]).tobytes() + b"".join(v.tobytes() for v in side.values())
        return seed_frame(change(meta) or meta, body)
    return craft


def _seed_raw(make):
    return lambda items, n_header, chunk, side: make()


SEED = {
    "seed_1_gib": _seed_raw(lambda: rle_frame(1 << 30)),
    "seed_declares_2_40": _seed_raw(lambda: rle_frame(1 << 40, 0)),
    "seed_header_items_huge": _seed_edit(lambda m: m.update(header_items=2**40)),
    "seed_items_huge": _seed_edit(lambda m: m.update(items=2**40)),
    "seed_shape_huge": _seed_edit(lambda m: m.update(shape=[2**30, 2**30])),
    "seed_dtype_object": _seed_edit(lambda m: m.update(dtype="O")),
    "seed_side_huge": _seed_edit(lambda m: m.update(side={"x": ["<f8", [2**40]]})),
    "seed_missing_keys": _seed_edit(lambda m: m.clear()),
    "seed_json_deep": _seed_raw(lambda: seed_frame(b"[" * 100000 + b"]" * 100000)),
    "seed_json_nan": _seed_raw(lambda: seed_frame(b'{"items":NaN}')),
    "seed_length_huge": _seed_raw(lambda: zstandard.ZstdCompressor().compress(b"\xff\xff\xff\x7f{}")),
}


@pytest.fixture(scope="module")
def bases(tmp_path_factory, mnist):
    """Intact archives the cases are made from: model-free (zstd) and bits-back (mnist-vae), formats 1 and 2."""
    tmp = tmp_path_factory.mktemp("bases")
    paths = {"zstd2": tmp / "zstd2.bbarc", "vae2": tmp / "vae2.bbarc",
             "zstd1": GOLDEN / "zstd-float32be-v1.bbarc", "vae1": GOLDEN / "mnist-vae-v1.bbarc"}
    bbarc.compress(mnist[:30], paths["zstd2"], model="zstd", chunk_size=10)
    bbarc.compress(mnist[:20], paths["vae2"], model="mnist-vae", chunk_size=10)
    originals = {}
    for name, path in paths.items():
        with bbarc.open(path) as a:
            originals[name] = a[:]
    return paths, originals


def make_case(name: str, base, tmp_path, mnist=None):
    paths, _ = base
    kind, _, rest = name.partition(":")
    path = tmp_path / f"{kind}-{rest}.bbarc"
    if rest in SEED:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(bbarc.chain, "seed_header", SEED[rest])
            mp.setattr(bbarc.chain, "CHAIN_VERSION", 1)  # chains with seed headers (version 2 chains have none)
            items = mnist[:30] if kind == "zstd2" else mnist[:20]
            bbarc.compress(items, path, model="zstd" if kind == "zstd2" else "mnist-vae", chunk_size=10,
                           overwrite=True)  # the same case serves several commands
        return path
    data = paths[kind].read_bytes()
    if rest in META:
        crafted = edit(data, meta=META[rest])
    elif rest in META_RAW:
        crafted = edit(data, meta_raw=META_RAW[rest](split(data)[1]))
    elif rest in INDEX:
        crafted = edit(data, index=INDEX[rest])
    else:
        crafted = edit(data, index_frame=INDEX_FRAME[rest]())
    path.write_bytes(crafted)
    return path


SEED_CASES = [f"{base}:{seed}" for base in ("zstd2", "vae2") for seed in SEED]
FILE_CASES = [f"{base}:{case}" for base in ("zstd2", "zstd1", "vae1", "vae2")
              for case in [*META, *META_RAW, *INDEX, *INDEX_FRAME]]


@pytest.mark.parametrize("case", FILE_CASES + SEED_CASES)
def test_crafted_archive_through_the_api(case, bases, tmp_path, mnist):
    path = make_case(case, bases, tmp_path, mnist)
    check_api(path, bases[1][case.split(":")[0]], tmp_path)


def test_metadata_is_checked_whole_at_open_so_get_agrees_with_decompress(bases, tmp_path, mnist):
    """An archive whose items do not have the shape its model codes: decoding fills the items by numpy
    broadcasting, so ``get`` of a partly decoded chunk returned wrong items before the whole-chunk check ran."""
    for case in ("vae1:shape_3d", "vae1:final_flat", "vae2:final_count_more", "vae2:last_count_more"):
        path = make_case(case, bases, tmp_path, mnist)
        assert check_api(path, bases[1][case.split(":")[0]], tmp_path) == ["open:3"], case


# Through the CLI, as a user runs it: the cases that used gigabytes or crashed before, on the fast model-free
# archive, each with the commands that meet it.
COMMANDS = {"info": ["info"], "get": ["get", "{}", "3", "-o", "{out}"], "decompress": ["decompress", "{}", "{out}"],
            "verify": ["verify"], "deep": ["verify", "--deep"]}
CLI_CASES = {"zstd2:seed_1_gib": ["decompress", "deep"], "zstd2:seed_declares_2_40": ["get"],
             "zstd2:index_declares_2_5_gib": ["info"], "zstd2:deep_json": ["verify"], "zstd2:shape_huge": ["get"],
             "vae2:seed_1_gib": ["deep"]}


def _run(path, command, out):
    cmd = COMMANDS[command]
    args = [a.format(path, out=out) for a in cmd]
    return cli_measured(*(args if "{}" in cmd else [*args, path]))


def test_crafted_archives_through_the_cli(bases, tmp_path, mnist):
    paths, originals = bases
    jobs = [(paths["zstd2"], c) for c in ("info", "get", "decompress", "verify", "deep")] + [(paths["vae2"], "deep")]
    jobs += [(make_case(case, bases, tmp_path, mnist), c) for case, commands in CLI_CASES.items() for c in commands]
    with ThreadPoolExecutor(2) as pool:
        runs = dict(zip(jobs, pool.map(lambda j: _run(j[0], j[1], tmp_path / f"{j[0].stem}-{j[1]}.npy"), jobs)))
    for case, commands in CLI_CASES.items():
        kind = case.split(":")[0]
        path = tmp_path / f"{case.replace(':', '-')}.bbarc"
        for command in commands:
            run, intact = runs[path, command], runs[paths[kind], command]
            what = f"{case}: bbarc {command}"
            assert run.returncode in CLEAN_EXITS and TRACEBACK not in run.stderr, (what, run.stderr[-2000:])
            assert run.max_rss_mb <= intact.max_rss_mb + MEMORY_SLACK_MB, (what, run.max_rss_mb, intact.max_rss_mb)
            if command == "get" and run.returncode == 0:
                got = np.load(tmp_path / f"{path.stem}-get.npy")
                assert np.array_equal(got, originals[kind][3]), what
            if ":seed" in case or command in ("get", "decompress"):
                assert run.returncode != 0, what  # none of these archives decodes


def test_compress_refuses_a_chunk_readers_would_refuse(tmp_path):
    from bbarc.errors import UsageError
    from bbarc.metadata import MAX_CHUNK_BYTES

    with pytest.raises(UsageError, match="chunk size"):
        bbarc.compress(np.zeros((3, 1024), np.uint8), tmp_path / "x.bbarc", model="zstd",
                       chunk_size=MAX_CHUNK_BYTES // 1024 + 1)
