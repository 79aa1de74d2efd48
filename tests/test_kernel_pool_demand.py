"""The warm pool follows demand and holds refills while a search takes its kernels."""

from __future__ import annotations

from lmrepl.repl.kernel_pool import KernelPool


def test_pool_remembers_demand_and_refills_after_a_hold() -> None:
    pool = KernelPool(size=1)
    taken = []
    try:
        pool.prewarm(2)
        assert pool.size == 2
        assert pool.wait_ready(2, timeout=60)
        with pool.refill_held(takes=2, parallel=2):
            taken = [pool.take(), pool.take()]
            # Both candidates got warm kernels; nothing is started during the search.
            assert all(h.alive() for h in taken)
            assert pool._starting == 0 and not pool._ready
        # After the search the pool refills to the remembered size.
        assert pool.wait_ready(2, timeout=60)
    finally:
        pool.shutdown()
        for handle in taken:
            handle.kill()


def test_sequential_takes_during_a_hold_get_one_kernel_ahead() -> None:
    pool = KernelPool(size=1)
    taken = []
    try:
        assert pool.wait_ready(1, timeout=60)
        with pool.refill_held(takes=3, parallel=1):
            taken.append(pool.take())
            # One more candidate is queued: exactly one kernel starts for it.
            assert pool._starting + len(pool._ready) == 1
            assert pool.wait_ready(1, timeout=60)
            taken.append(pool.take())
            taken.append(pool.take())
    finally:
        pool.shutdown()
        for handle in taken:
            handle.kill()
