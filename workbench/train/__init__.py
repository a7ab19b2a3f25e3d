"""Training one design for its budget: the loop, the CUDA-graph step, AdamW with float32 master
weights (a fused Triton update on GPU), a lazy row-wise AdamW for memory value tables and the
count of host synchronisations.

``loop`` owns the run (schedule, evaluation, budget, measurement); ``master``, ``fused_adamw``
and ``sparse_adamw`` the optimizer; ``syncs`` the check that a step never waits on the host.
See docs/DESIGN.md §5.
"""

from workbench.train.loop import (
    WARMUP_STEPS,
    TrainResult,
    TrainStep,
    compiled_loss,
    evaluate,
    lr_at,
    make_optimizer,
    memory_value_parameters,
    model_loss,
    set_lr,
    side_stream,
    train,
    uses_master_weights,
)
from workbench.train.sparse_adamw import SparseRowAdamW, lazy_adamw_rows

__all__ = [
    "WARMUP_STEPS",
    "SparseRowAdamW",
    "TrainResult",
    "TrainStep",
    "compiled_loss",
    "evaluate",
    "lazy_adamw_rows",
    "lr_at",
    "make_optimizer",
    "memory_value_parameters",
    "model_loss",
    "set_lr",
    "side_stream",
    "train",
    "uses_master_weights",
]
