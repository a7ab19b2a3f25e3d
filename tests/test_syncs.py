"""Only torch's per-operation warning counts as a host synchronisation: the notice torch prints
the first time the debug mode is switched on once made every compiled step look synchronising
(and so never captured as a CUDA graph)."""

from __future__ import annotations

import warnings

import pytest
import torch

from workbench.train.syncs import SYNC_WARNING, count_host_syncs, count_sync_warnings

PROTOTYPE_NOTICE = (
    "Synchronization debug mode is a prototype feature and does not yet detect all synchronizing "
    "operations (Triggered internally at /pytorch/torch/csrc/cuda/Module.cpp:1003.)"
)


def test_the_prototype_notice_and_other_warnings_are_not_syncs() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.warn(PROTOTYPE_NOTICE, stacklevel=1)
        warnings.warn("torch.cuda.synchronize() is slow here", stacklevel=1)
        warnings.warn(SYNC_WARNING, stacklevel=1)
        warnings.warn(SYNC_WARNING, stacklevel=1)
    assert count_sync_warnings(caught) == 2
    assert count_sync_warnings([PROTOTYPE_NOTICE, SYNC_WARNING]) == 1


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_counts_an_item_but_not_device_only_work() -> None:
    x = torch.ones(4, device="cuda")
    assert count_host_syncs(lambda: (x * 2).sum())[1] == 0
    value, syncs = count_host_syncs(lambda: x.sum().item())
    assert value == 4.0 and syncs == 1
