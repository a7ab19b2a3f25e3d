"""The Triton master-weight AdamW kernel against its torch reference (GPU only)."""

from __future__ import annotations

import pytest
import torch

from workbench.train.fused_adamw import adamw_master_update, triton_available

CUDA = torch.cuda.is_available()


def _state(n: int, seed: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator(device="cuda").manual_seed(seed)
    master = torch.randn(n, device="cuda", generator=gen)
    return {
        "weight": master.to(torch.bfloat16),
        "master": master,
        "exp_avg": torch.zeros(n, device="cuda"),
        "exp_avg_sq": torch.zeros(n, device="cuda"),
    }


@pytest.mark.gpu
@pytest.mark.skipif(not (CUDA and triton_available()), reason="needs CUDA and Triton")
@pytest.mark.parametrize("n", [1, 2047, 2048, 100_003])
def test_gpu_kernel_matches_reference_and_replays_from_a_graph(n: int) -> None:
    kernel, ref = _state(n, 0), _state(n, 0)
    lr = torch.tensor(3e-3, device="cuda")
    step = torch.zeros((), device="cuda")
    coef = torch.tensor(0.5, device="cuda")
    grad = torch.empty(n, device="cuda", dtype=torch.bfloat16)
    knobs = {"beta1": 0.9, "beta2": 0.95, "eps": 1e-8, "weight_decay": 0.1}

    def update(state: dict[str, torch.Tensor], use_triton: bool) -> None:
        adamw_master_update(
            state["weight"], state["master"], grad, state["exp_avg"], state["exp_avg_sq"],
            lr=lr, step=step, coef=coef, use_triton=use_triton, **knobs,
        )  # fmt: skip

    graph = torch.cuda.CUDAGraph()
    gen = torch.Generator(device="cuda").manual_seed(1)
    for i in range(4):
        grad.copy_(torch.randn(n, device="cuda", generator=gen))
        step += 1
        if i == 1:  # the kernel reads lr, step and coef from the device: a captured update replays
            with torch.cuda.graph(graph):
                update(kernel, True)
        if i >= 1:
            graph.replay()
        else:
            update(kernel, True)
        update(ref, False)
        lr.mul_(0.5)
    for key in ("master", "exp_avg", "exp_avg_sq"):
        torch.testing.assert_close(kernel[key], ref[key], rtol=2e-6, atol=1e-7)
    assert torch.equal(kernel["weight"], kernel["master"].to(torch.bfloat16))
