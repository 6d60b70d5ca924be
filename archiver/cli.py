"""The ``bbarc`` command line: thin commands over the API. Progress goes to stderr, results to stdout.

Exit codes: 0 ok, 1 other failure, 2 usage error / bad input (an existing output without --force included),
3 corrupt archive, 4 missing model or weights, 5 coding error, 6 an output could not be written (permission
denied, read-only filesystem, disk full). SIGTERM cleans up like Ctrl-C: no temp file is left.

Text from files (archive metadata, error messages quoting them, plugin descriptions) goes through
``bbarc.display`` before it is shown. Both consoles print without markup or highlighting unless a call asks for
it, so that nothing printed is read as rich markup by accident.
"""
from __future__ import annotations

import json
import os
import signal
import sys
from contextlib import contextmanager
from pathlib import Path

import click
from rich.console import Console

from bbarc.errors import BbarcError, CorruptArchiveError, UsageError

from .display import markup, plain
from .metadata import DEFAULT_CHUNK

# Commands import what they use when they run (api, pipeline, registry, the coder): `bbarc --help`, `info` and
# `models` start in a fraction of the time `compress` needs. click rather than typer: typer builds a pydantic
# validator per parameter on every run, which cost more than the rest of `bbarc info` together.

_PATH = click.Path(path_type=Path)
_POSITIVE = click.IntRange(min=1)


def _console(stderr: bool) -> Console:
    """Results are lines to read or parse: not wrapped at 80 columns when the stream is a pipe or a file (a
    number cut in two), and soft-wrapped by the terminal otherwise."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, markup=False, highlight=False, soft_wrap=True,
                   width=None if stream.isatty() else 10_000)


err = _console(stderr=True)
out = _console(stderr=False)
SAMPLE = "mnist-t10k-first1000-images-idx3-ubyte.gz"


def _show_version(ctx: click.Context, param, value: bool) -> None:
    if value:
        from . import pipeline

        out.print(f"bbarc {pipeline.bbarc_version()}")
        ctx.exit()


@click.group(no_args_is_help=True, context_settings=dict(show_default=True, help_option_names=["--help"]))
@click.option("--version", is_flag=True, callback=_show_version, expose_value=False, is_eager=True,
              help="show bbarc's version and exit")
def app() -> None:
    """Lossless dataset archiver (bits-back ANS)."""


@contextmanager
def progress_bar(label: str, total: int | None, quiet: bool):
    """Yields ``advance(k, total=None)``; the total may also arrive with the first advance (streaming inputs)."""
    if quiet or not err.is_terminal:  # a bar on a log or a pipe prints only a blank line when it ends
        yield lambda k, *_: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task(label, total=total)

        def advance(k: int, new_total: int | None = None) -> None:
            bar.update(task, advance=k, **({"total": new_total} if new_total is not None else {}))

        yield advance


def emit(data: dict, as_json: bool, text: str) -> None:
    """The result: ``data`` as exact JSON (``json.dumps``, so every control character and non-ASCII character is
    escaped), or ``text``, whatever it quotes from a file shown escaped (``bbarc.display.plain``)."""
    if as_json:
        out.file.write(json.dumps(data, indent=2) + "\n")
        out.file.flush()
    else:
        out.print(plain(text, newlines=True))


@contextmanager
def status(label: str):
    """A spinner on a terminal, yielding its ``update(text)``; nothing elsewhere (it would end in a blank line)."""
    if not err.is_terminal:
        yield lambda text: None
        return
    with err.status(label) as spinner:
        yield spinner.update


@app.command()
@click.argument("input")
@click.argument("output", type=_PATH)
@click.option("--dataset", "-d", help="HDF5 dataset path, e.g. /images")
@click.option("--model", "-m", default="mnist-vae", help="model id (see `bbarc models`)")
@click.option("--chunk-size", "-c", type=_POSITIVE, default=DEFAULT_CHUNK,
              help="items per independently decodable chunk")
@click.option("--labels", help="per-item side data stored with the items")
@click.option("--workers", "-w", type=_POSITIVE, default=1, help="encode chunks in this many processes")
@click.option("--json", "as_json", is_flag=True, help="machine-readable result on stdout")
@click.option("--quiet", "-q", is_flag=True, help="no progress bar")
@click.option("--force", "-f", is_flag=True, help="replace an existing archive (never the input)")
def compress(input: str, output: Path, dataset: str | None, model: str, chunk_size: int, labels: str | None,
             workers: int, as_json: bool, quiet: bool, force: bool):
    """Compress a dataset into an indexed archive.

    INPUT: a .npy, .h5 (file.h5:/key), or MNIST IDX (.gz) file; OUTPUT: the archive to write."""
    from . import pipeline

    with progress_bar("compressing", None, quiet) as tick:
        result = pipeline.compress(input, output, model=model, chunk_size=chunk_size, dataset=dataset, labels=labels,
                                   progress=tick, workers=workers, overwrite=force)
    r = result.as_dict()
    emit(r, as_json, f"{r['path']}: {r['items']} items in {r['chunks']} chunks, {r['archive_bytes']} bytes, "
                     f"{r['bits_per_dim']:.4f} bits/dim, {r['seconds']:.1f} s")


@app.command()
@click.argument("archive", type=_PATH)
@click.argument("output")
@click.option("--dataset", "-d", help="HDF5 dataset path to write")
@click.option("--workers", "-w", type=_POSITIVE, default=1, help="decode chunks in this many processes")
@click.option("--quiet", "-q", is_flag=True, help="no progress bar")
@click.option("--labels", help="also write the stored labels to this .npy/.h5")
@click.option("--force", "-f", is_flag=True, help="replace an existing output (an HDF5 file's other datasets are "
                                                   "always kept)")
def decompress(archive: Path, output: str, dataset: str | None, workers: int, quiet: bool, labels: str | None,
               force: bool):
    """Decode a whole archive into .npy or HDF5 (same dtype and shape as the input).

    ARCHIVE: the archive to read; OUTPUT: a .npy or .h5 file (file.h5:/key)."""
    from . import api

    with api.open(archive) as a, progress_bar("decompressing", len(a), quiet) as tick:
        result = a.extract(output, dataset=dataset, progress=tick, workers=workers, overwrite=force, labels=labels)
    err.print(plain(f"wrote {result.output}" + (f" and labels to {labels}" if labels else "")))


@app.command()
@click.argument("archive", type=_PATH)
@click.option("--json", "as_json", is_flag=True, help="machine-readable result on stdout")
def info(archive: Path, as_json: bool):
    """Show an archive's metadata and chunk index."""
    from . import api

    with api.open(archive) as a:
        chunks = [dict(index=c.index, first_item=c.first_item, items=c.item_count, bytes=c.length) for c in a.chunks]
        m = a.metadata
        size = archive.stat().st_size
        data = dict(path=str(archive), bytes=size, metadata=m.raw, chunks=chunks,
                    bits_per_dim=round(m.bits_per_dim(size), 5))
    if as_json:
        return emit(data, True, "")
    out.print(f"[bold]{markup(archive)}[/bold]: {len(chunks)} chunks, {m.item_count} items of "
              f"{markup(m.item_shape)} {markup(m.dtype)}, {size} bytes = {data['bits_per_dim']:.4f} bits/dim",
              markup=True)
    out.print(plain(f"model {m.model.id} ({m.model.distribution} {m.model.version}, weights sha256 "
                    f"{m.model.weights_sha256[:16]}…), written by {m.writer} from {m.source}"))


# A selector may be negative (`-1`, `-10:`): not an option, so unknown options are passed on as arguments.
@app.command(context_settings={"ignore_unknown_options": True})
@click.argument("archive", type=_PATH)
@click.argument("selector")
@click.option("--output", "-o", required=True, help=".npy (or .h5, file.h5:/key) file to write")
@click.option("--labels", help="also write the selected items' labels here")
@click.option("--force", "-f", is_flag=True, help="replace an existing output")
def get(archive: Path, selector: str, output: str, labels: str | None, force: bool):
    """Decode one item or a range of items (only the chunks holding them).

    SELECTOR: an item index `i` or a range `a:b` (negative counts from the end)."""
    from bbarc.formats.outputs import save_array

    from . import api

    key = _parse_selector(selector)
    if labels is not None and os.path.realpath(labels) == os.path.realpath(output):
        raise UsageError(f"items and labels would both be written to {output}; give the labels another file")
    with api.open(archive) as a:
        if labels is not None and "labels" not in a.metadata.side:
            raise UsageError(f"{archive} stores no labels (it was compressed without --labels)")
        items = a[key]
        chosen = a.side_data("labels", key) if labels is not None else None
    written = save_array(output, items, overwrite=force, inputs=[archive])
    if chosen is not None:
        save_array(labels, chosen, overwrite=force, inputs=[archive])
    err.print(plain(f"wrote {written} {items.shape} {items.dtype}" + (f" and labels to {labels}" if labels else "")))


def _parse_selector(text: str):
    """``i`` or ``a:b`` (either end may be left out), negative numbers counting from the end as in numpy."""
    try:
        if ":" in text:
            a, b = text.split(":", 1)
            return slice(int(a) if a.strip() else None, int(b) if b.strip() else None)
        return int(text)
    except ValueError:
        raise UsageError(f"selector must be an index `i` or a range `a:b`, got {plain(repr(text))}") from None


@app.command()
@click.argument("archive", type=_PATH)
@click.option("--deep", is_flag=True, help="also decode every chunk and check its raw-content hash")
@click.option("--json", "as_json", is_flag=True, help="machine-readable result on stdout")
@click.option("--quiet", "-q", is_flag=True, help="no progress bar")
def verify(archive: Path, deep: bool, as_json: bool, quiet: bool):
    """Check the footer, every chunk's and attachment's checksums (and with --deep, decoded content).
    Exit 3 if anything is missing or damaged."""
    from . import recovery

    with progress_bar("verifying", None, quiet) as tick:
        check = recovery.inspect(archive, deep=deep, progress=tick)
    lines = [f"chunk {r.index} (items {r.first_item}..{r.first_item + r.item_count - 1}): {r.error}"
             for r in check.bad]
    lines += [f"attachment {name!r}: {error}" for name, error in check.bad_attachments]
    found = f"{len(check.intact)} of {len(check.chunks)} chunks OK"
    if check.footer_error is not None:
        lines.append(f"{archive}: the footer (trailer and index) is missing or damaged: {check.footer_error}")
        lines.append(f"{archive}: a recovery scan finds {len(check.intact)} intact chunks holding "
                     f"{check.intact_items} of the {check.item_count} items; `bbarc recover` writes them to a "
                     f"new archive")
    elif check.bad or check.bad_attachments:
        lines.append(f"{archive}: {found}; `bbarc recover` writes the intact ones to a new archive")
    else:
        attachments = f", {len(check.attachments)} attachments OK" if check.attachments else ""
        lines.append(f"{archive}: {found}{attachments}")
    emit(check.as_dict(), as_json, "\n".join(lines))
    if not check.ok:
        raise click.exceptions.Exit(CorruptArchiveError.exit_code)


@app.command()
@click.argument("archive", type=_PATH)
@click.argument("output", type=_PATH)
@click.option("--deep/--shallow", default=True, help="decode every chunk and check its content hash (default), "
                                                    "or trust chunks whose checksums match")
@click.option("--force", "-f", is_flag=True, help="replace OUTPUT if it exists")
@click.option("--json", "as_json", is_flag=True, help="machine-readable result on stdout")
@click.option("--quiet", "-q", is_flag=True, help="no progress bar")
def recover(archive: Path, output: Path, deep: bool, force: bool, as_json: bool, quiet: bool):
    """Write every intact chunk of a damaged archive into a new, valid archive; report the item ranges lost.
    Items are renumbered contiguously in the new archive (the report maps old ranges to new).

    ARCHIVE: the damaged archive; OUTPUT: the new archive to write."""
    from . import recovery

    with progress_bar("recovering", None, quiet) as tick:
        result = recovery.recover(archive, output, deep=deep, overwrite=force, progress=tick)
    r = result.as_dict()
    lines = [f"chunk {b['index']} (items {b['first_item']}..{b['first_item'] + b['item_count'] - 1}): {b['error']}"
             for b in r["bad"]]
    lines += [f"kept items {k['old'][0]}..{k['old'][1] - 1} as {k['new'][0]}..{k['new'][1] - 1}" for k in r["kept"]]
    lines += [f"lost items {a}..{b - 1}" for a, b in r["lost"]]
    lines += [f"lost attachment {name!r}" for name in r["lost_attachments"]]
    lines.append(f"wrote {output}: {r['items']} of {r['declared_items']} items in {r['chunks']} chunks"
                 + (f", {len(r['attachments'])} attachments" if r["attachments"] else ""))
    emit(r, as_json, "\n".join(lines))


@app.command()
@click.option("--json", "as_json", is_flag=True, help="machine-readable result on stdout")
def models(as_json: bool):
    """List installed model plugins."""
    from rich.table import Table

    from . import registry

    reg = registry.default_registry()
    plugins = reg.list_plugins()
    hooks = {p["name"]: p["hooks"] for p in plugins}
    rows = [dict(id=e.id, plugin=e.plugin, distribution=e.distribution, version=e.version,
                 hooks=hooks.get(e.plugin, []), description=e.family.description) for e in reg.entries.values()]
    if as_json:
        return emit(dict(models=rows, plugins=plugins), True, "")
    table = Table("model", "plugin", "distribution", "version", "description")
    for r in rows:
        table.add_row(*(plain(r[k]) for k in ("id", "plugin", "distribution", "version", "description")))
    out.print(table)


@app.command()
@click.argument("input")
@click.option("--dataset", "-d", help="HDF5 dataset path, e.g. /images")
@click.option("--model", "-m", default="mnist-vae", help="model id (see `bbarc models`)")
@click.option("--chunk-size", "-c", type=_POSITIVE, default=DEFAULT_CHUNK, help="items per chunk")
@click.option("--limit", type=_POSITIVE, help="first N items only")
@click.option("--workers", "-w", type=_POSITIVE, default=1, help="code chunks in this many processes")
@click.option("--plot", type=_PATH, help="save a rate-vs-speed plot (PNG)")
@click.option("--json", "as_json", is_flag=True, help="machine-readable result on stdout")
def bench(input: str, dataset: str | None, model: str, chunk_size: int, limit: int | None, workers: int,
          plot: Path | None, as_json: bool):
    """Measure bbarc against gzip, bzip2, xz, zstd and PNG on the same data, in the same run.

    INPUT: a .npy, .h5 (file.h5:/key), or MNIST IDX (.gz) file."""
    from rich.table import Table

    from . import bench as bench_mod

    with status("benchmarking") as update:
        rows = bench_mod.bench(input, model, chunk_size, dataset, limit, workers,
                               progress=lambda name: update(f"benchmarking: {name} done"))
    if plot:
        bench_mod.plot(rows, plot, f"{input} ({model}, chunk {chunk_size})")
    ratio = bench_mod.speed_ratio(rows)
    if as_json:
        return emit(dict(input=input, model=model, chunk_size=chunk_size, rows=bench_mod.as_dicts(rows),
                         compress_speed_vs_xz_9e=ratio), True, "")
    table = Table("codec", "bits/dim", "compress items/s", "decompress items/s", "compress /CPU-s",
                  "decompress /CPU-s", "identical")
    for r in rows:
        table.add_row(r.codec, f"{r.bits_per_dim:.4f}", f"{r.compress_items_per_s:,.0f}",
                      f"{r.decompress_items_per_s:,.0f}", f"{r.compress_items_per_cpu_s:,.0f}",
                      f"{r.decompress_items_per_cpu_s:,.0f}", str(r.identical))
    out.print(table)
    out.print(f"bbarc compresses {ratio:.1f}x as many items per CPU-second as xz -9e; start-up "
              f"{rows[-1].startup_s:.2f} s (not in the speeds)")


@app.command()
@click.option("--workdir", type=_PATH, default=Path("bbarc-demo"), help="where to write the demo files")
@click.option("--model", "-m", default="mnist-vae", help="model id (see `bbarc models`)")
def demo(workdir: Path, model: str):
    """Compress the bundled MNIST sample (1,000 test images), check the round trip, and report the rate."""
    from importlib.resources import files

    import numpy as np

    from bbarc.formats.inputs import open_source

    from . import api, pipeline

    sample = str(files("bbarc") / "samples" / SAMPLE)
    workdir.mkdir(parents=True, exist_ok=True)
    target, decoded = workdir / f"sample-{model}.bbarc", workdir / "sample-decoded.npy"
    with progress_bar("compressing", None, False) as tick:
        result = pipeline.compress(sample, target, model=model, chunk_size=DEFAULT_CHUNK, progress=tick,
                                   overwrite=True)  # the demo's own files: a second demo run replaces them
    api.decompress(target, str(decoded), overwrite=True)
    with open_source(sample) as src:
        same = np.array_equal(src.read(0, len(src)), np.load(decoded))
    out.print(f"{plain(target)}: {result.items} MNIST images, {result.archive_bytes} bytes = {result.bits_per_dim:.4f} "
              f"bits/dim in {result.seconds:.1f} s; round trip {'identical' if same else 'DIFFERENT'}")
    if not same:
        raise click.exceptions.Exit(1)


def _terminate(signum, frame) -> None:
    # Raised in the main thread, so every open writer's context manager aborts and removes its temp file.
    raise SystemExit(128 + signum)


def main() -> None:
    # Usage errors are click's (exit 2, with help); bbarc's own errors carry their exit codes.
    signal.signal(signal.SIGTERM, _terminate)
    try:
        app(prog_name="bbarc")
    except BbarcError as exc:
        err.print(f"[red]error:[/red] {markup(exc, newlines=True)}", markup=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
