"""switch: top-1 learned-gate mixture of experts with the load-balancing loss.

Paper: Fedus, Zoph, Shazeer 2021, "Switch Transformers" (JMLR 2022); shared experts from Dai
et al. 2024, "DeepSeekMoE". In the unified view the experts are memory blocks of
g = ``expert_width`` cells, B = ``n_experts``, k = 1, selected by a learned gate ``x . e_b``;
the output is scaled by the router probability of the chosen expert (not renormalised, so the
router gets a gradient from the language-model loss). Fine-grained experts are a small
``expert_width``; the block size and the number of blocks are free axes.

The module is the shared top-k gate (workbench/memory/_gate.py), whose docstring writes down
the choices: float32 router, the load-balancing loss (paper eq. 4), capacity and dropped
tokens, shared experts.

Shapes: B batch, T sequence, D model width, E experts, G expert width, N = B*T tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

from workbench.memory._gate import TopKGateConfig
from workbench.memory.registry import register


@register
@dataclass(frozen=True, kw_only=True)
class SwitchConfig(TopKGateConfig):
    """``n_experts`` blocks of ``expert_width`` cells (0 means 4*d_model); top-1 learned gate;
    ``n_shared`` always-on blocks of the same width."""

    kind = "switch"
    paper = "Fedus et al. 2021, Switch Transformers (+ shared experts, Dai et al. 2024)"
    active_per_token = "router + 1 routed expert + n_shared shared experts of expert_width cells"

    def routing(self) -> tuple[int, bool]:
        return 1, False
