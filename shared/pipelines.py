"""Published pipelines as the runtime needs them: the record plus its parsed definition, cached.

A published pipeline's definition never changes (publishing always makes a new Id), so the
parsed definition can be cached per process; only Status changes, and the runtime reads Status
from storage where it matters (submit): `get_current` checks the record's ETag in storage (no
download while it is unchanged), with concurrent submits sharing that check (shared/fresh_reads.py).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from shared.fresh_reads import FreshReads
from shared.registry import PipelineRecord, PipelineRegistry
from shared.spec import PipelineDefinition

_CACHE_SIZE = 128


@dataclass(frozen=True)
class PublishedPipeline:
    record: PipelineRecord
    definition: PipelineDefinition

    @property
    def id(self) -> str:
        return self.record.Id


_cache: "OrderedDict[str, PublishedPipeline]" = OrderedDict()
_lock = threading.Lock()


def remember(record: PipelineRecord, definition: PipelineDefinition | None = None) -> PublishedPipeline:
    published = PublishedPipeline(record, definition or PipelineDefinition.model_validate(record.Definition))
    with _lock:
        _cache[record.Id] = published
        _cache.move_to_end(record.Id)
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return published


def from_record(record: PipelineRecord) -> PublishedPipeline:
    """Cache a record just read or written (its definition is parsed only on a cache miss)."""
    with _lock:
        cached = _cache.get(record.Id)
    return remember(record, cached.definition if cached is not None else None)


def get_published(pipeline_id: str, registry: PipelineRegistry | None = None) -> PublishedPipeline:
    """The pipeline and its definition; the definition part is served from the cache."""
    with _lock:
        cached = _cache.get(pipeline_id)
    if cached is not None:
        return cached
    return remember((registry or PipelineRegistry()).get(pipeline_id))


def _read_current(pipeline_id: str) -> PublishedPipeline:
    registry = PipelineRegistry()
    with _lock:
        cached = _cache.get(pipeline_id)
    if cached is not None and cached.record.etag is not None and registry.etag(pipeline_id) == cached.record.etag:
        return cached
    return from_record(registry.get(pipeline_id))  # Status changed: the definition did not


_current = FreshReads(_read_current)


def get_current(pipeline_id: str) -> PublishedPipeline:
    """The pipeline as stored now (Status included): a change that completed before this call, in
    this process or another, is seen. Costs one small ETag read, shared by concurrent callers."""
    return _current.get(pipeline_id)
