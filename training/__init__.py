"""Fine-tuning: a LoRA adapter per tenant from its selected code, with public-code replay.

Public surface:
- `train_tenant(settings, paths, TrainOptions(...))` -> the `codetailor train --json` summary
- `TrainOptions`, `TrainingError`
Training never imports serving; prompts come from codetailor.prompt_format.

`train_tenant` and `TrainOptions` load on first use: the loop and its batches
(training.loop, training.batches, training.lora) import without the configuration
stack (pydantic), so a GPU machine can run bench/train_bench.py with only torch,
transformers and peft.
"""

from training.corpus import TrainingError

__all__ = ["TrainOptions", "TrainingError", "train_tenant"]


def __getattr__(name: str):
    if name in ("TrainOptions", "train_tenant"):
        from training import run

        return getattr(run, name)
    raise AttributeError(f"module 'training' has no attribute {name!r}")
