"""``bbarc.execution.run_ordered``: the one orchestration compression and decompression share."""
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from bbarc.errors import UsageError
from bbarc.execution import auto_lockstep, LOCKSTEP_BYTES, MAX_LOCKSTEP, lockstep_groups, run_ordered


def square_all(group):
    time.sleep(0.001 * (len(group) % 3))  # finish out of order
    return [x * x for x in group]


@pytest.mark.parametrize("pool", [False, True])
def test_results_come_in_order_with_progress_summing_to_the_sizes(pool):
    ticks = []

    def local(group, tick):
        tick(1)  # a finer step; the rest of the group is reported when it is done
        return square_all(group)

    groups = list(lockstep_groups(range(23), 4))
    with ThreadPoolExecutor(3) as executor:
        out = list(run_ordered(groups, local=local, remote=lambda g: (square_all, g), size=len,
                               executor=executor if pool else None, progress=ticks.append))
    assert [g for g, _ in out] == groups and [r for _, r in out] == [square_all(g) for g in groups]
    assert sum(ticks) == 23 and (pool or ticks[:2] == [1, 3])


def test_work_in_flight_stays_bounded():
    submitted, consumed, most = [0], [0], [0]
    lock = threading.Lock()

    def groups():
        for g in lockstep_groups(range(40), 1):
            with lock:
                submitted[0] += 1
                most[0] = max(most[0], submitted[0] - consumed[0])
            yield g

    with ThreadPoolExecutor(2) as executor:
        for _ in run_ordered(groups(), local=None, remote=lambda g: (square_all, g), size=len, workers=2,
                             executor=executor):
            consumed[0] += 1
    assert consumed[0] == 40 and most[0] <= 2 * 2


def test_bad_sizes_are_usage_errors():
    with pytest.raises(UsageError, match="lockstep"):
        lockstep_groups(range(3), 0)
    with pytest.raises(UsageError, match="workers"):
        next(run_ordered([[1]], local=None, remote=None, size=len, workers=0))
    assert auto_lockstep(1, 1) == MAX_LOCKSTEP and auto_lockstep(10, LOCKSTEP_BYTES) == 1
    assert auto_lockstep(1, 1, chunks=10, workers=3) == 4 and auto_lockstep(1, 1, chunks=10) == MAX_LOCKSTEP
