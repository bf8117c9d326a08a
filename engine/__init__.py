"""The generation core shared by evaluation and serving: one base model, many
tenant LoRA adapters, continuous batching. Code above this package talks to it
only through `EngineClient` (engine.protocol) and never imports vllm."""

from engine.protocol import AdapterRef, EngineClient, EngineError, GenerationRequest, GenerationResult

__all__ = ["AdapterRef", "EngineClient", "EngineError", "GenerationRequest", "GenerationResult"]
