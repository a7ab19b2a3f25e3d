"""Forward FLOPs per token counted by fvcore on the traced model.

fvcore counts one "flop" per multiply-add of the ops it has handles for; we multiply by 2 so
the figure is comparable with the analytic count (:func:`workbench.model.model_cost`).
Conventions shared with the analytic count: attention's two T x T matmuls are counted over
the full context (a handle for SDPA is added here, fvcore has none), norms and element-wise
ops are not counted. Ops fvcore cannot see (embedding lookups, topk, gather/scatter,
``torch._grouped_mm``) are skipped, which is why each memory layer also states its analytic
count and the analytic figure is the one reported as ``flops_per_token``.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn


def _sdpa_flop_jit(inputs: Sequence[Any], outputs: Sequence[Any]) -> int:
    from fvcore.nn.jit_handles import get_shape

    q, k = get_shape(inputs[0]), get_shape(inputs[1])
    *batch, t, d = q
    s = k[-2]
    n = 1
    for b in batch:
        n *= b
    # QK^T (t x d x s) and AV (t x s x d) multiply-adds.
    return 2 * n * t * s * d


def _uncounted(inputs: Sequence[Any], outputs: Sequence[Any]) -> int:
    return 0


def fvcore_flops_per_token(model: nn.Module, seq_len: int, vocab_size: int, seed: int = 0) -> int:
    """FLOPs per token (2 x fvcore's multiply-adds) of one forward pass over ``seq_len`` tokens."""
    from fvcore.nn import FlopCountAnalysis

    from workbench.memory.experts import ExpertBank

    cpu_model = copy.deepcopy(model).to("cpu").eval()
    for param in cpu_model.parameters():
        # Parameters only: float64 routing counters must keep their dtype.
        param.data = param.data.float()
    for module in cpu_model.modules():
        # The loop dispatch exposes each expert's matmul with its real token count to the tracer.
        if isinstance(module, ExpertBank):
            module.impl = "loop"
    generator = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, vocab_size, (1, seq_len), generator=generator)
    logging.getLogger("fvcore").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        analysis = (
            FlopCountAnalysis(cpu_model, (idx,))
            .set_op_handle("aten::scaled_dot_product_attention", _sdpa_flop_jit)
            .set_op_handle("aten::layer_norm", _uncounted)
            .unsupported_ops_warnings(False)
            .uncalled_modules_warnings(False)
            .tracer_warnings("none")
        )
        total = analysis.total()
    return round(2 * total / seq_len)
