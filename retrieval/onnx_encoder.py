"""The int8 ONNX Runtime encoder: the same sentence-transformers model, exported once per machine.

`export` turns a sentence-transformers model (a BERT-style transformer, mean pooling,
normalisation) into an ONNX graph with torch's exporter, quantises its weights to int8
(ONNX Runtime's dynamic quantisation) and stores it with the model's tokenizer and an
`EncoderRecord` holding the file's sha256, in a staging directory renamed into place: a
killed export leaves nothing half-written. It needs torch, sentence-transformers and onnx;
the indexer runs it, never a query.

`OnnxEncoder` loads an export (onnxruntime and tokenizers only: no torch import, which
is what makes a query's first embedding cheap) and checks the file against its checksum.
On this machine's 2 cores it embeds code chunks about twice as fast as torch at one
thread and 2.7x at two (docs/bench-retrieval.md); its vectors differ from torch's
(cosine about 0.93), so an index records which encoder built its vectors.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import warnings
import time
from pathlib import Path

import numpy as np

from codetailor.artifacts import EncoderRecord
from codetailor.atomic import sha256_file, staging_dir
from codetailor.errors import Incompatible

MODEL_FILE = "model-int8.onnx"
TOKENIZER_FILE = "tokenizer.json"
RECORD_FILE = "encoder.json"
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class EncoderUnavailable(Incompatible):
    """An encoder cannot be used here (not exported, damaged, or its runtime is missing)."""


def read_record(directory: Path) -> EncoderRecord | None:
    return EncoderRecord.read_or_none(directory / RECORD_FILE)


def stage_once(directory: Path, build, read):
    """`build(tmp)` in a staging directory renamed to `directory` (which must not exist); returns
    its record. Two indexers may make the same artifact at once: when the other renamed its own
    into place first, that one's record is returned and this one's is dropped."""
    try:
        with staging_dir(directory) as tmp:
            return build(tmp)
    except OSError:
        existing = read(directory)
        if existing is None:
            raise
        return existing


@contextlib.contextmanager
def _quiet():
    """The exporter's tracer warnings and the quantiser's advice are about graphs in general, not
    this one: kept out of the indexer's output."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


def export_float32(st_model, path: Path) -> None:
    """The float32 ONNX graph of a SentenceTransformer's transformer: token ids, attention mask and
    token types in (batch and length dynamic), the last hidden state out (pooling is done after)."""
    import torch

    class Hidden(torch.nn.Module):   # keyword arguments: the exporter passes positional ones
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    sample = st_model.tokenizer(["def f(x):\n    return x"], return_tensors="pt")
    with torch.no_grad():
        torch.onnx.export(Hidden(st_model[0].auto_model.eval()), tuple(sample[n] for n in _INPUTS), str(path),
                          input_names=list(_INPUTS), output_names=["last_hidden_state"], opset_version=17,
                          dynamo=False,
                          dynamic_axes={n: {0: "batch", 1: "seq"} for n in (*_INPUTS, "last_hidden_state")})


def export(st_model, model_name: str, directory: Path) -> EncoderRecord:
    """Export and quantise the loaded SentenceTransformer `st_model` into `directory` (which must
    not exist). Returns its record; a concurrent exporter that finished first wins."""
    import onnx
    import onnxruntime
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    modules = [type(m).__name__ for m in st_model]
    pooling = st_model[1].get_config_dict() if len(st_model) > 1 else {}
    if modules[:2] != ["Transformer", "Pooling"] or pooling.get("pooling_mode") != "mean" or \
            any(m != "Normalize" for m in modules[2:]):
        raise EncoderUnavailable(f"embedding model {model_name!r} ({' + '.join(modules)}, pooling "
                                 f"{pooling.get('pooling_mode')!r}) has no int8 ONNX export here: only a "
                                 "transformer with mean pooling is exported; set retrieval.encoder=torch")
    tokenizer = st_model.tokenizer
    if "token_type_ids" not in tokenizer(["x"]):
        raise EncoderUnavailable(f"embedding model {model_name!r} takes no token_type_ids: set retrieval.encoder=torch")

    def build(tmp: Path) -> EncoderRecord:
        with _quiet():
            fp32 = tmp / "model-fp32.onnx"
            export_float32(st_model, fp32)
            quantize_dynamic(str(fp32), str(tmp / MODEL_FILE), weight_type=QuantType.QInt8)
            fp32.unlink()
            tokenizer.backend_tokenizer.save(str(tmp / TOKENIZER_FILE))
            record = EncoderRecord(model=model_name, backend="onnx-int8", sha256=sha256_file(tmp / MODEL_FILE),
                                   dim=int((getattr(st_model, "get_embedding_dimension", None)
                                            or st_model.get_sentence_embedding_dimension)()),
                                   max_seq_length=int(st_model.max_seq_length),
                                   normalize=len(modules) > 2,
                                   pad_token_id=int(tokenizer.pad_token_id or 0),
                                   versions={"torch": torch.__version__, "onnx": onnx.__version__,
                                             "onnxruntime": onnxruntime.__version__},
                                   created_at=time.time())
            record.write(tmp / RECORD_FILE)
        return record

    return stage_once(directory, build, read_record)


class OnnxEncoder:
    """A loaded export: `encode(texts, batch_size)` -> unit-normalised float32 vectors."""

    def __init__(self, directory: Path, threads: int):
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except ImportError as e:
            raise EncoderUnavailable(f"the onnx-int8 encoder needs {e.name}: install codetailor's dependencies "
                                     "or set retrieval.encoder=torch") from None
        record = read_record(directory)
        model = directory / MODEL_FILE
        if record is None or not model.is_file():
            raise EncoderUnavailable(f"no int8 ONNX export at {directory}")
        if sha256_file(model) != record.sha256:
            raise EncoderUnavailable(f"the int8 ONNX export at {directory} does not match its recorded checksum; "
                                     "delete the directory and index again to re-export it")
        self.record = record
        self.tokenizer = Tokenizer.from_file(str(directory / TOKENIZER_FILE))
        self.tokenizer.enable_truncation(max_length=record.max_seq_length)
        self.tokenizer.no_padding()
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads   # 0: ONNX Runtime's default (every core)
        so.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
        self._lock = threading.Lock()

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        out = np.zeros((len(texts), self.record.dim), dtype=np.float32)
        if not texts:
            return out
        encodings = self.tokenizer.encode_batch(texts)
        # batches of similar length pad little: 1.35x on code chunks (bench/embed_bench.py)
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        with self._lock:
            for start in range(0, len(order), batch_size):
                idx = order[start:start + batch_size]
                width = max(len(encodings[i].ids) for i in idx)
                feeds = {n: np.zeros((len(idx), width), dtype=np.int64) for n in _INPUTS}
                feeds["input_ids"][:] = self.record.pad_token_id
                for row, i in enumerate(idx):
                    e = encodings[i]
                    n = len(e.ids)
                    feeds["input_ids"][row, :n] = e.ids
                    feeds["attention_mask"][row, :n] = e.attention_mask
                    feeds["token_type_ids"][row, :n] = e.type_ids
                hidden = self.session.run(None, feeds)[0]
                mask = feeds["attention_mask"][..., None].astype(np.float32)
                pooled = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
                if self.record.normalize:
                    pooled /= np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
                out[idx] = pooled
        return out
