"""The language model: a GPT whose FFN slots hold memory layers, AltUp widening, and its costs.

``gpt`` builds the model and its analytic cost (parameters, active parameters, FLOPs per token);
``altup`` wraps the blocks in K-times-wider representations; ``flops`` counts what fvcore sees in
the traced model (imported on demand: it pulls in fvcore). See docs/DESIGN.md §1, §4 and §5.
"""

from workbench.model.gpt import GPT, ModelCost, layer_configs, memory_layers, model_cost

__all__ = ["GPT", "ModelCost", "layer_configs", "memory_layers", "model_cost"]
