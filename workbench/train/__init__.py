"""Training one design for its budget: the loop, the CUDA-graph step, AdamW with float32 master
weights (a fused Triton update on GPU) and the count of host synchronisations.

``loop`` owns the run (schedule, evaluation, budget, measurement); ``master`` and ``fused_adamw``
the optimizer; ``syncs`` the check that a step never waits on the host. See docs/DESIGN.md §5.
"""

from workbench.train.loop import (
    WARMUP_STEPS,
    TrainResult,
    TrainStep,
    compiled_loss,
    evaluate,
    lr_at,
    make_optimizer,
    model_loss,
    side_stream,
    train,
    uses_master_weights,
)

__all__ = [
    "WARMUP_STEPS",
    "TrainResult",
    "TrainStep",
    "compiled_loss",
    "evaluate",
    "lr_at",
    "make_optimizer",
    "model_loss",
    "side_stream",
    "train",
    "uses_master_weights",
]
