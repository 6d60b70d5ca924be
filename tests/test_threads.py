"""The one-thread cap of coding holds inside the coder, however torch is loaded, and is lifted after the call.

Each case runs in a fresh process with ``OMP_NUM_THREADS=3``, so that without the cap torch would run its
products on more than one thread wherever the machine has more than one core (torch takes that variable, up to
the number of cores); the case where the user set torch's count holds on any machine."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np

PROBE = textwrap.dedent("""
    import json, sys
    import numpy as np
    from threadpoolctl import threadpool_info

    preload = sys.argv[3] == "preload"
    if preload:  # a library user who set torch's threads before coding
        import torch
        torch.set_num_threads(2)
    import bbarc
    from bbarc.plugins import intnet

    seen = []
    inner = intnet._Int8Layer.__call__

    def spy(self, *args, **kwargs):  # a network call of the coder (torch's product from TORCH_MIN_BATCH rows)
        out = inner(self, *args, **kwargs)
        torch = sys.modules.get("torch")
        seen.append(dict(torch=torch.get_num_threads() if torch else None,
                         pools=sorted({p["num_threads"] for p in threadpool_info()})))
        return out

    intnet._Int8Layer.__call__ = spy
    # chunks of 4 coded in lockstep: batches of 4 rows, which take torch's product (imported inside the call)
    bbarc.compress(sys.argv[1], sys.argv[2], model="mnist-vae", chunk_size=16 // intnet.TORCH_MIN_BATCH)
    coded = len(seen)
    with bbarc.open(sys.argv[2]) as a:
        a[3]
    import torch
    print(json.dumps(dict(encode=seen[:coded], decode=seen[coded:], after=torch.get_num_threads(),
                          after_pools=sorted({p["num_threads"] for p in threadpool_info()
                                              if p["internal_api"] == "openmp"}))))
""")


DEFAULTS = textwrap.dedent("""
    import json, torch
    from threadpoolctl import threadpool_info
    print(json.dumps(dict(after=torch.get_num_threads(), after_pools=sorted(
        {p["num_threads"] for p in threadpool_info() if p["internal_api"] == "openmp"}))))
""")


def _run(*args: str) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="3")
    for name in ("MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env.pop(name, None)
    run = subprocess.run([sys.executable, "-c", *args], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.splitlines()[-1])


def _probe(tmp_path, mnist, how: str) -> dict:
    np.save(tmp_path / "in.npy", mnist[:16])
    return _run(PROBE, str(tmp_path / "in.npy"), str(tmp_path / "a.bbarc"), how)


def _all_single(calls: list[dict]) -> bool:
    """Every network call ran on one thread (torch's, where loaded, and every BLAS/OpenMP pool's)."""
    return bool(calls) and all(c["torch"] in (1, None) and c["pools"] == [1] for c in calls)


def test_torch_loaded_during_coding_is_capped(tmp_path, mnist):
    """The CLI's case: torch is first imported when the model's networks are built, inside the coding call."""
    seen = _probe(tmp_path, mnist, "cold")
    assert _all_single(seen["encode"]) and _all_single(seen["decode"]), seen
    assert any(c["torch"] == 1 for c in seen["encode"]), seen  # torch was loaded, and capped, while coding
    defaults = _run(DEFAULTS)  # torch's own settings in a process that never coded
    assert (seen["after"], seen["after_pools"]) == (defaults["after"], defaults["after_pools"]), (seen, defaults)


def test_user_thread_setting_survives_coding(tmp_path, mnist):
    seen = _probe(tmp_path, mnist, "preload")
    assert _all_single(seen["encode"]) and _all_single(seen["decode"]), seen
    assert seen["after"] == 2, seen


def test_overlapping_calls_lift_the_cap_once():
    """Two threads coding at once: the cap is set by the first and lifted by the last, so neither restores the
    other's ``1`` as the user's setting."""
    import threading

    import torch
    from threadpoolctl import threadpool_info

    from bbarc.execution import coding_threads

    before, pools = torch.get_num_threads(), [p["num_threads"] for p in threadpool_info()]
    torch.set_num_threads(2)
    try:
        inside, entered, release = [], threading.Barrier(2), threading.Event()

        def code(wait: bool) -> None:
            with coding_threads():
                entered.wait()
                inside.append(torch.get_num_threads())
                if wait:
                    release.wait(10)
            if not wait:
                release.set()  # the first to leave goes before the other

        threads = [threading.Thread(target=code, args=(w,)) for w in (True, False)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        assert inside == [1, 1] and torch.get_num_threads() == 2
        assert [p["num_threads"] for p in threadpool_info()] == pools
    finally:
        torch.set_num_threads(before)
