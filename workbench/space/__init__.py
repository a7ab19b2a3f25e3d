"""The search-space DSL: declare parameters, conditions, constraints, objectives and budget.

Example (``spaces/quickstart.py``)::

    space = Space(
        "quickstart",
        {
            "memory.kind": Categorical(["dense", "switch"]),
            "memory.n_experts": Int(2, 8, log=True, when={"memory.kind": "switch"}),
            "model.d_model": Categorical([64, 128]),
            "memory.expert_width": Derived("4 * model.d_model // 2", when={"memory.kind": "switch"}),
        },
        constraints=["cost.flops_per_token <= 3e6"],
        budget=Budget(tokens=300_000),
    )
"""

from workbench.space._load import load_space
from workbench.space._params import (
    METRICS,
    Budget,
    Categorical,
    Constraint,
    Derived,
    Fixed,
    Float,
    Int,
    Objective,
    Tuned,
)
from workbench.space._space import COST_NAMES, Sample, Space

__all__ = [
    "COST_NAMES",
    "METRICS",
    "Budget",
    "Categorical",
    "Constraint",
    "Derived",
    "Fixed",
    "Float",
    "Int",
    "Objective",
    "Sample",
    "Space",
    "Tuned",
    "load_space",
]
