"""Thread limits for small models on shared machines."""

from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def one_thread():
    """PyTorch and BLAS on one thread each, restored afterwards.

    Small layers and kernel-ridge fits gain little from extra threads, and on a machine whose
    cores are busy with other work they slow down tenfold.
    """
    import torch
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        torch.set_num_threads(threads)
