"""What the CLI shows: text from files escaped, results unwrapped on a pipe, no stray output (issue 15, items 5
and 12)."""
import json

import numpy as np
import pytest

from bbarc.display import markup, plain
from tests.helpers import cli

# A source path (recorded in the archive's metadata) that plants a hyperlink, turns text red and closes a rich
# tag that was never opened; its slashes make folders.
EVIL = "x\x1b]8;;https://evil.example\x1b\\click\x1b]8;;\x1b\\\x1b[31m[/bold][link=https:/evil.example]y\u202e"


@pytest.fixture(scope="module")
def evil(tmp_path_factory, mnist):
    tmp = tmp_path_factory.mktemp("display")
    src = tmp / f"{EVIL}.npy"
    src.parent.mkdir(parents=True)
    np.save(src, mnist[:30])
    cli("compress", src, tmp / "a.bbarc", "-m", "zstd", "-c", 10, "-q")
    return tmp, str(src)


def _inert(text: str) -> bool:
    return "\x1b" not in text and "\u202e" not in text and "\x07" not in text


def test_plain_and_markup_escape_control_characters():
    assert plain("a\x1b[31mb\x07\u202ec\x9b") == "a\\x1b[31mb\\x07\\u202ec\\x9b"
    assert plain("one\ntwo") == "one\\x0atwo" and plain("one\ntwo", newlines=True) == "one\ntwo"
    assert plain("é, 中, C:\\dir") == "é, 中, C:\\dir"  # printable text, backslashes included, stays as it is
    assert markup("[/bold]\x1b") == "\\[/bold]\\x1b"


def test_info_shows_untrusted_metadata_escaped(evil):
    tmp, src = evil
    run = cli("info", tmp / "a.bbarc")
    assert _inert(run.stdout) and _inert(run.stderr)
    assert "[/bold][link=https:/evil.example]y" in run.stdout and "\\x1b]8;;https:" in run.stdout
    assert len(run.stdout.splitlines()) == 2  # long lines are not wrapped on a pipe


def test_json_output_stays_exact(evil):
    tmp, src = evil
    run = cli("info", tmp / "a.bbarc", "--json")
    assert _inert(run.stdout) and json.loads(run.stdout)["metadata"]["source"] == src
    report = json.loads(cli("verify", tmp / "a.bbarc", "--json", "-q").stdout)
    assert report["ok"] and report["chunks"] == 3


def test_verify_output_is_inert(evil):
    tmp, _ = evil
    run = cli("verify", tmp / "a.bbarc")
    assert _inert(run.stdout) and run.stdout.endswith("3 of 3 chunks OK\n")


def test_error_messages_quoting_input_are_escaped(tmp_path, mnist):
    np.save(tmp_path / "in.npy", mnist[:5])
    run = cli("compress", tmp_path / "in.npy", tmp_path / "o.bbarc", "-m", "\x1b[2J[/bold]", check=False)
    assert run.returncode == 4 or run.returncode == 2, run.stderr
    assert _inert(run.stderr) and "\\x1b[2J[/bold]" in run.stderr and "Traceback" not in run.stderr
    run = cli("get", tmp_path / "o.bbarc", "\x1b[2J", "-o", tmp_path / "g.npy", check=False)
    assert run.returncode != 0 and _inert(run.stderr) and "Traceback" not in run.stderr


def test_version():
    run = cli("--version")
    assert run.stdout.startswith("bbarc ") and run.stdout.count("\n") == 1


@pytest.mark.parametrize("selector, expect", [("-1", np.s_[-1]), ("-3:", np.s_[-3:]), ("-5:-2", np.s_[-5:-2]),
                                              (":-27", np.s_[:-27]), ("2:-25", np.s_[2:-25])])
def test_get_takes_negative_selectors(evil, mnist, selector, expect):
    tmp, _ = evil
    out = tmp / f"g{selector}.npy"  # the module's archive is shared: one output per case (no --force needed)
    run = cli("get", tmp / "a.bbarc", selector, "-o", out)
    assert np.array_equal(np.load(out), mnist[:30][expect])
    assert run.stderr.startswith("wrote ") and run.stderr.count("\n") == 1  # one line, no blank one


def test_no_blank_line_on_stderr(tmp_path, mnist):
    np.save(tmp_path / "in.npy", mnist[:30])
    run = cli("compress", tmp_path / "in.npy", tmp_path / "a.bbarc", "-m", "zstd")  # progress bar, not a terminal
    assert run.stderr == "" and run.stdout.count("\n") == 1
    run = cli("decompress", tmp_path / "a.bbarc", tmp_path / "out.npy")
    assert run.stderr.startswith("wrote ") and run.stderr.count("\n") == 1
    assert cli("verify", tmp_path / "a.bbarc").stderr == ""
