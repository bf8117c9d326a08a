"""The static encoder: one vector per vocabulary token, distilled once per machine from the transformer.

Embedding a chunk with the transformer costs a forward pass over every token; on 2 CPU cores that
caps a full index at a few dozen chunks/s. The static encoder moves that cost to a one-off
distillation (the technique model2vec published):

- every vocabulary token is embedded alone by the sentence-transformers model ([CLS] token [SEP],
  mean pooled, as the model embeds a one-token text);
- PCA centres those vectors and keeps the `dims` strongest directions (the shared component of all
  tokens would otherwise dominate every cosine);
- each token's vector is scaled by a frequency prior, a / (a + p(token)) with p counted on a code
  corpus (the Python standard library): tokens that are in every chunk (`self`, `(`, `return`) say
  little about which chunk it is, rare identifiers say a lot.

A text's embedding is then the normalised sum of its tokens' scaled vectors: a tokenizer call and
a gather, thousands of chunks/s. It is a different vector space from the transformer's, so it has
its own identity (`<model>+static:<sha256 of the vectors>`) and an index records it.

`distill` needs torch and sentence-transformers (the indexer runs it); `StaticEncoder` loads with
numpy and tokenizers only, checking the vectors against their recorded checksum.
"""

from __future__ import annotations

import sysconfig
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from codetailor.artifacts import ArtifactError, StaticEncoderRecord
from codetailor.atomic import sha256_file
from retrieval.onnx_encoder import TOKENIZER_FILE, EncoderUnavailable, stage_once

VECTORS_FILE = "vectors.npy"
RECORD_FILE = "static.json"
SIF_A = 1e-3            # the prior's smoothing: tokens rarer than about 1 in 1000 keep most of their weight
CORPUS_BYTES = 8 << 20  # enough text for stable counts of the common tokens, seconds to tokenize
MAX_TOKENS = 2048       # a static sum has no attention window; this only bounds pathological lines


def read_record(directory: Path) -> StaticEncoderRecord | None:
    """The distillation's record, None where there is none; a damaged one is refused."""
    try:
        return StaticEncoderRecord.read_or_none(directory / RECORD_FILE)
    except ArtifactError as e:
        raise EncoderUnavailable(f"the static encoder at {directory} is damaged ({e}); delete the directory "
                                 "and index again to distil it again") from None


def stdlib_corpus(limit: int = CORPUS_BYTES) -> Iterator[str]:
    """The Python standard library's sources in path order, up to `limit` bytes: code that every
    machine with this Python has, so the prior is the same wherever it is distilled."""
    total = 0
    for f in sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py")):
        try:
            text = f.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        yield text
        total += len(text)
        if total >= limit:
            return


def token_weights(tokenizer, vocab_size: int, corpus: Iterable[str]) -> np.ndarray:
    """a / (a + p(token)) per token id, p counted over `corpus` (unseen tokens weigh 1)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(tokenizer.to_str())   # a copy: every token of a file counts, no padding
    tokenizer.no_truncation()
    tokenizer.no_padding()
    counts = np.zeros(vocab_size, dtype=np.float64)
    for text in corpus:
        ids = tokenizer.encode(text, add_special_tokens=False).ids
        np.add.at(counts, np.asarray(ids, dtype=np.int64), 1.0)
    p = counts / max(counts.sum(), 1.0)
    return (SIF_A / (SIF_A + p)).astype(np.float32)


def token_vectors(st_model, batch_size: int = 512) -> np.ndarray:
    """The model's embedding of each vocabulary token alone, before normalisation: (vocab, dim)."""
    import torch

    tok = st_model.tokenizer
    transformer = st_model[0].auto_model.eval()
    ids = torch.arange(len(tok), dtype=torch.long)
    out = []
    with torch.no_grad():
        for start in range(0, len(ids), batch_size):
            t = ids[start:start + batch_size, None]
            batch = torch.cat([torch.full_like(t, tok.cls_token_id), t, torch.full_like(t, tok.sep_token_id)], 1)
            hidden = transformer(input_ids=batch, attention_mask=torch.ones_like(batch),
                                 token_type_ids=torch.zeros_like(batch)).last_hidden_state
            out.append(hidden.mean(dim=1).numpy())   # mean pooling over the three positions
    return np.concatenate(out).astype(np.float32)


def reduce(vectors: np.ndarray, dims: int) -> np.ndarray:
    """PCA: centre and project on the `dims` principal directions (all of them if dims >= width)."""
    centred = vectors - vectors.mean(axis=0)
    _, _, vt = np.linalg.svd(centred.astype(np.float64), full_matrices=False)
    return (centred @ vt[:min(dims, vt.shape[0])].T).astype(np.float32)


def write(directory: Path, model_name: str, vectors: np.ndarray, tokenizer, prior: str,
          versions: dict[str, str]) -> StaticEncoderRecord:
    """Store distilled `vectors` (weights folded in) with `tokenizer` (a tokenizers.Tokenizer) in
    `directory`, which must not exist; a concurrent writer that finished first wins."""
    def build(tmp: Path) -> StaticEncoderRecord:
        np.save(tmp / VECTORS_FILE, np.ascontiguousarray(vectors, dtype=np.float32))
        tokenizer.save(str(tmp / TOKENIZER_FILE))
        record = StaticEncoderRecord(model=model_name, sha256=sha256_file(tmp / VECTORS_FILE),
                                     dim=int(vectors.shape[1]), vocab_size=int(vectors.shape[0]),
                                     max_tokens=MAX_TOKENS, prior=prior, versions=versions, created_at=time.time())
        record.write(tmp / RECORD_FILE)
        return record

    return stage_once(directory, build, read_record)


def distill(st_model, model_name: str, directory: Path, dims: int = 256) -> StaticEncoderRecord:
    """Distil the loaded SentenceTransformer `st_model` into `directory` (minutes of CPU, once)."""
    import sys

    import torch

    tok = st_model.tokenizer
    if not getattr(tok, "is_fast", False) or tok.cls_token_id is None or tok.sep_token_id is None:
        raise EncoderUnavailable(f"embedding model {model_name!r} has no BERT-style fast tokenizer: the static "
                                 "encoder cannot be distilled from it; set retrieval.encoder=onnx-int8 or torch")
    print(f"codetailor: distilling a static encoder from {model_name} (once per machine)", file=sys.stderr,
          flush=True)
    weights = token_weights(tok.backend_tokenizer, len(tok), stdlib_corpus())
    vectors = reduce(token_vectors(st_model), dims) * weights[:, None]
    py = sysconfig.get_python_version()
    return write(directory, model_name, vectors, tok.backend_tokenizer,
                 prior=f"sif a={SIF_A} over the Python {py} stdlib ({CORPUS_BYTES} bytes)",
                 versions={"torch": torch.__version__, "numpy": np.__version__})


class StaticEncoder:
    """A loaded distillation: `encode(texts)` -> unit-normalised float32 vectors."""

    def __init__(self, directory: Path):
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise EncoderUnavailable("the static encoder needs the tokenizers package: install codetailor's "
                                     "dependencies or set retrieval.encoder=torch") from None
        record = read_record(directory)
        vectors = directory / VECTORS_FILE
        if record is None or not vectors.is_file() or not (directory / TOKENIZER_FILE).is_file():
            raise EncoderUnavailable(f"no static encoder distilled at {directory}")
        if sha256_file(vectors) != record.sha256:
            raise EncoderUnavailable(f"the static encoder at {directory} does not match its recorded checksum; "
                                     "delete the directory and index again to distil it again")
        self.record = record
        self.vectors = np.load(vectors, allow_pickle=False)
        if self.vectors.shape != (record.vocab_size, record.dim):
            raise EncoderUnavailable(f"the static encoder at {directory} has vectors of shape {self.vectors.shape}, "
                                     f"its record says ({record.vocab_size}, {record.dim})")
        self.tokenizer = Tokenizer.from_file(str(directory / TOKENIZER_FILE))
        self.tokenizer.enable_truncation(max_length=record.max_tokens)
        self.tokenizer.no_padding()

    def encode(self, texts: list[str], batch_size: int = 256, threads: int = 1) -> np.ndarray:
        """In slices of `batch_size` texts: the gathered token vectors of a slice are its only
        temporary (tokens x dim floats)."""
        parts = [self._encode(texts[i:i + batch_size], threads) for i in range(0, len(texts), batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, self.record.dim), dtype=np.float32)

    def _encode(self, texts: list[str], threads: int) -> np.ndarray:
        out = np.zeros((len(texts), self.record.dim), dtype=np.float32)
        if threads == 1:   # the batch call runs a thread pool over every core
            encodings = [self.tokenizer.encode(t, add_special_tokens=False) for t in texts]
        else:
            encodings = self.tokenizer.encode_batch(texts, add_special_tokens=False)
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(texts))
        rows = np.flatnonzero(lengths)    # an empty text has no token: its vector stays zero
        if rows.size:
            ids = np.concatenate([encodings[i].ids for i in rows]).astype(np.int64)
            starts = np.concatenate([[0], np.cumsum(lengths[rows])[:-1]])
            out[rows] = np.add.reduceat(self.vectors[ids], starts, axis=0)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms > 0, norms, 1.0)
