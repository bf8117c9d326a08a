"""Vector stores for chunk embeddings, one interface, two back ends.

- `EdgeStore` (default, embedded): Qdrant's engine in process (qdrant-edge-py),
  one shard per tenant under the tenant's index directory. The shard is locked by
  the process that opens it, so the embedded store serves one process at a time;
  several processes (serving replicas plus an indexer) use the service store.
- `ServiceStore`: qdrant-client against a Qdrant service (or ":memory:"), one
  collection for all tenants, `tenant` a keyword field indexed as the tenant
  partition. The store adds the tenant condition to every read, write and delete
  itself; callers never build filters.

A store is opened with the dimension of the encoder that fills it (the index manifest's `dim`):
encoders differ (384 for the transformer, the static encoder's PCA width), and a vector of
another width is refused with `VectorDimensionMismatch` before it reaches the store, as is a
service collection created for another width, so no collection ever holds two widths.

Points carry the chunk id, the source, the path and the generation that wrote
them. A search sees only points at or below the published generation, so points
an unfinished re-index has written stay invisible.
"""

from __future__ import annotations

import shutil
import threading
import uuid
import warnings
from dataclasses import dataclass
from typing import Protocol, Sequence


from codetailor.errors import CodetailorError, Incompatible, Unavailable
from codetailor.home import TenantPaths


class VectorStoreUnavailable(Unavailable):
    pass


class VectorDimensionMismatch(Incompatible):
    """Vectors of one width offered to a store of another (another encoder's collection)."""


def _check_width(where: str, dim: int, vectors) -> None:
    for v in vectors:
        if len(v) != dim:
            raise VectorDimensionMismatch(f"{where} holds {dim}-dimensional vectors, not {len(v)}: it was "
                                          "made for another encoder; re-index the tenant to rebuild it")


@dataclass(frozen=True)
class VecPoint:
    chunk_id: int
    vector: Sequence[float]
    source: str
    path: str
    generation: int


class VectorStore(Protocol):
    def upsert(self, points: list[VecPoint]) -> None: ...
    def search(self, vector: Sequence[float], limit: int, max_generation: int,
               exclude_paths: Sequence[str] = ()) -> list[tuple[int, float]]: ...
    def delete(self, chunk_ids: Sequence[int]) -> None: ...
    def existing(self, chunk_ids: Sequence[int]) -> set[int]: ...
    def delete_newer_than(self, generation: int) -> None: ...
    def count(self) -> int: ...
    def optimize(self) -> None: ...
    def drop(self) -> None: ...


# -- embedded: qdrant-edge ----------------------------------------------------------

_edge_shards: dict[str, object] = {}
_edge_lock = threading.Lock()


class EdgeStore:
    def __init__(self, paths: TenantPaths, dim: int, hnsw_ef: int = 64, exact: bool = False):
        self.dir = paths.index_dir / "vectors"
        self.dim, self.hnsw_ef, self.exact = dim, hnsw_ef, exact

    def _shard(self, create: bool):
        import qdrant_edge as q

        key = str(self.dir)
        with _edge_lock:
            shard = _edge_shards.get(key)
            if shard is not None:
                return shard
            try:
                if self.dir.is_dir() and any(self.dir.iterdir()):
                    shard = q.EdgeShard.load(key)
                elif create:
                    self.dir.mkdir(parents=True, exist_ok=True)
                    shard = q.EdgeShard.create(key, q.EdgeConfig(
                        vectors=q.EdgeVectorParams(self.dim, q.Distance.Cosine)))
                    for field, kind in (("generation", q.PayloadSchemaType.Integer),
                                        ("path", q.PayloadSchemaType.Keyword)):
                        shard.update(q.UpdateOperation.create_field_index(field, kind))
                else:
                    return None
            except Exception as e:  # a lock held by another process, a damaged shard
                raise VectorStoreUnavailable(f"embedded vector store at {self.dir} cannot be opened ({e}); "
                                             "it serves one process at a time: use vector_store=service "
                                             "for several") from None
            _edge_shards[key] = shard
            return shard

    def upsert(self, points: list[VecPoint]) -> None:
        import qdrant_edge as q

        if not points:
            return
        _check_width(f"vector store {self.dir}", self.dim, (p.vector for p in points))
        shard = self._shard(create=True)
        shard.update(q.UpdateOperation.upsert_points([
            q.Point(p.chunk_id, [float(x) for x in p.vector],
                    {"chunk_id": p.chunk_id, "source": p.source, "path": p.path, "generation": p.generation})
            for p in points]))
        shard.flush()

    def _filter(self, max_generation: int | None = None, min_generation: int | None = None,
                exclude_paths: Sequence[str] = ()):
        import qdrant_edge as q

        must = []
        if max_generation is not None or min_generation is not None:
            must.append(q.FieldCondition("generation", range=q.RangeFloat(
                lte=None if max_generation is None else float(max_generation),
                gte=None if min_generation is None else float(min_generation))))
        must_not = [q.FieldCondition("path", match=q.MatchAny(list(exclude_paths)))] if exclude_paths else None
        return q.Filter(must=must or None, must_not=must_not)

    def search(self, vector, limit, max_generation, exclude_paths=()):
        import qdrant_edge as q

        shard = self._shard(create=False)
        if shard is None or limit <= 0:
            return []
        _check_width(f"vector store {self.dir}", self.dim, [vector])
        res = shard.query(q.QueryRequest(
            limit=limit, query=q.Query.Nearest([float(x) for x in vector]), with_payload=False,
            filter=self._filter(max_generation=max_generation, exclude_paths=exclude_paths),
            params=q.SearchParams(hnsw_ef=self.hnsw_ef, exact=self.exact)))
        return [(int(p.id), float(p.score)) for p in res]

    def delete(self, chunk_ids):
        import qdrant_edge as q

        shard = self._shard(create=False)
        if shard is not None and chunk_ids:
            shard.update(q.UpdateOperation.delete_points([int(i) for i in chunk_ids]))
            shard.flush()

    def existing(self, chunk_ids):
        shard = self._shard(create=False)
        if shard is None or not chunk_ids:
            return set()
        return {int(p.id) for p in shard.retrieve([int(i) for i in chunk_ids], False, False)}

    def delete_newer_than(self, generation):
        import qdrant_edge as q

        shard = self._shard(create=False)
        if shard is not None:
            shard.update(q.UpdateOperation.delete_points_by_filter(self._filter(min_generation=generation + 1)))
            shard.flush()

    def count(self) -> int:
        import qdrant_edge as q

        shard = self._shard(create=False)
        return 0 if shard is None else int(shard.count(q.CountRequest(exact=True)))

    def optimize(self) -> None:
        shard = self._shard(create=False)
        if shard is not None:
            shard.optimize()

    def drop(self) -> None:
        with _edge_lock:
            shard = _edge_shards.pop(str(self.dir), None)
        if shard is not None:
            shard.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def close_edge_shards() -> None:
    """Close every shard this process opened (releases their locks)."""
    with _edge_lock:
        for shard in _edge_shards.values():
            shard.close()
        _edge_shards.clear()


# -- service: qdrant-client -------------------------------------------------------------

_clients: dict[tuple[str, str | None], object] = {}


def _client(url: str, api_key: str | None = None):
    from qdrant_client import QdrantClient

    with _edge_lock:
        if (url, api_key) not in _clients:
            _clients[(url, api_key)] = (QdrantClient(location=":memory:") if url == ":memory:"
                                        else QdrantClient(url=url, api_key=api_key, timeout=5))
        return _clients[(url, api_key)]


class ServiceStore:
    def __init__(self, url: str, collection: str, paths: TenantPaths, dim: int, hnsw_ef: int = 64,
                 exact: bool = False, api_key: str | None = None):
        self.client = _client(url, api_key)
        self.collection, self.tenant = collection, str(paths.tenant)
        self.dim, self.hnsw_ef, self.exact = dim, hnsw_ef, exact
        self._width_checked = False

    def _call(self, fn, *args, **kwargs):
        try:
            with warnings.catch_warnings():
                # ":memory:" mode warns that payload indexes and search params do nothing there
                warnings.filterwarnings("ignore", message=".*(Payload indexes|Local mode).*")
                return fn(*args, **kwargs)
        except CodetailorError:
            raise
        except Exception as e:  # connection refused, timeouts: the service is down
            raise VectorStoreUnavailable(f"vector service unavailable: {type(e).__name__}") from None

    def _exists(self) -> bool:
        """Whether the collection exists; one made for another width is refused (once checked,
        remembered: a collection's width never changes)."""
        if not self._call(self.client.collection_exists, self.collection):
            return False
        if not self._width_checked:
            info = self._call(self.client.get_collection, self.collection)
            width = info.config.params.vectors.size
            if self.dim and width != self.dim:
                raise VectorDimensionMismatch(
                    f"Qdrant collection {self.collection!r} holds {width}-dimensional vectors; this index's "
                    f"encoder makes {self.dim}: set retrieval.qdrant_collection to another collection for it")
            self._width_checked = True
        return True

    def _ensure(self) -> None:
        from qdrant_client import models as m

        if self._exists():
            return
        self._call(self.client.create_collection, self.collection,
                   vectors_config=m.VectorParams(size=self.dim, distance=m.Distance.COSINE),
                   hnsw_config=m.HnswConfigDiff(payload_m=16, m=0))  # per-tenant graphs, no global one
        self._call(self.client.create_payload_index, self.collection, "tenant",
                   field_schema=m.KeywordIndexParams(type=m.KeywordIndexType.KEYWORD, is_tenant=True))
        self._call(self.client.create_payload_index, self.collection, "generation",
                   field_schema=m.PayloadSchemaType.INTEGER)
        self._call(self.client.create_payload_index, self.collection, "path",
                   field_schema=m.PayloadSchemaType.KEYWORD)

    def _point_id(self, chunk_id: int) -> str:
        # one collection for all tenants: the id must differ per tenant even for equal chunks
        return str(uuid.uuid5(uuid.NAMESPACE_OID, f"{self.tenant}:{chunk_id}"))

    def _tenant_filter(self, *, max_generation=None, min_generation=None, exclude_paths=(), ids=None):
        from qdrant_client import models as m

        must = [m.FieldCondition(key="tenant", match=m.MatchValue(value=self.tenant))]
        if max_generation is not None or min_generation is not None:
            must.append(m.FieldCondition(key="generation", range=m.Range(lte=max_generation, gte=min_generation)))
        if ids is not None:
            must.append(m.FieldCondition(key="chunk_id", match=m.MatchAny(any=[int(i) for i in ids])))
        must_not = [m.FieldCondition(key="path", match=m.MatchAny(any=list(exclude_paths)))] if exclude_paths else None
        return m.Filter(must=must, must_not=must_not)

    def upsert(self, points):
        from qdrant_client import models as m

        if not points:
            return
        _check_width(f"Qdrant collection {self.collection!r}", self.dim, (p.vector for p in points))
        self._ensure()
        self._call(self.client.upsert, self.collection, points=[
            m.PointStruct(id=self._point_id(p.chunk_id), vector=[float(x) for x in p.vector],
                          payload={"tenant": self.tenant, "chunk_id": p.chunk_id, "source": p.source,
                                   "path": p.path, "generation": p.generation})
            for p in points], wait=True)

    def search(self, vector, limit, max_generation, exclude_paths=()):
        from qdrant_client import models as m

        if limit <= 0 or not self._exists():
            return []
        _check_width(f"Qdrant collection {self.collection!r}", self.dim, [vector])
        res = self._call(self.client.query_points, self.collection, query=[float(x) for x in vector], limit=limit,
                         query_filter=self._tenant_filter(max_generation=max_generation, exclude_paths=exclude_paths),
                         search_params=m.SearchParams(hnsw_ef=self.hnsw_ef, exact=self.exact),
                         with_payload=["chunk_id"])
        return [(int(p.payload["chunk_id"]), float(p.score)) for p in res.points]

    def _delete(self, flt):
        from qdrant_client import models as m

        if self._call(self.client.collection_exists, self.collection):
            self._call(self.client.delete, self.collection, points_selector=m.FilterSelector(filter=flt), wait=True)

    def delete(self, chunk_ids):
        if chunk_ids:
            self._delete(self._tenant_filter(ids=chunk_ids))

    def existing(self, chunk_ids):
        if not chunk_ids or not self._call(self.client.collection_exists, self.collection):
            return set()
        by_point = {self._point_id(i): int(i) for i in chunk_ids}
        found = self._call(self.client.retrieve, self.collection, ids=list(by_point), with_payload=False,
                           with_vectors=False)
        return {by_point[str(p.id)] for p in found}

    def delete_newer_than(self, generation):
        self._delete(self._tenant_filter(min_generation=generation + 1))

    def count(self) -> int:
        if not self._call(self.client.collection_exists, self.collection):
            return 0
        return int(self._call(self.client.count, self.collection, count_filter=self._tenant_filter(), exact=True).count)

    def optimize(self) -> None:
        pass  # the service optimises in the background

    def drop(self) -> None:
        self._delete(self._tenant_filter())


def open_store(settings, paths: TenantPaths, dim: int) -> VectorStore:
    cfg = settings.retrieval
    if cfg.vector_store == "service":
        if not cfg.qdrant_url:
            raise CodetailorError("retrieval.vector_store=service needs retrieval.qdrant_url")
        key = cfg.qdrant_api_key.get_secret_value() if cfg.qdrant_api_key else None
        return ServiceStore(cfg.qdrant_url, cfg.qdrant_collection, paths, dim, cfg.hnsw_ef, cfg.exact_vectors,
                            api_key=key)
    return EdgeStore(paths, dim, cfg.hnsw_ef, cfg.exact_vectors)
