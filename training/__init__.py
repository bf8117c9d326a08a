"""Fine-tuning: a LoRA adapter per tenant from its selected code, with public-code replay.

Public surface:
- `train_tenant(settings, paths, TrainOptions(...))` -> the `codetailor train --json` summary
- `TrainOptions`, `TrainingError`
Training never imports serving; prompts come from codetailor.prompt_format.
"""

from training.corpus import TrainingError
from training.run import TrainOptions, train_tenant

__all__ = ["TrainOptions", "TrainingError", "train_tenant"]
