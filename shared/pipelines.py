"""Published pipelines as the runtime needs them: the record plus its parsed definition, cached.

A published pipeline's definition never changes (publishing always makes a new Id), so the
parsed definition can be cached per process; only Status changes, and the runtime reads Status
from storage where it matters (submit).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

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
    """The cached parse of a record just read from storage (re-parsed only on a cache miss)."""
    with _lock:
        cached = _cache.get(record.Id)
    if cached is not None:
        return PublishedPipeline(record, cached.definition)
    return remember(record)


def get_published(pipeline_id: str, registry: PipelineRegistry | None = None) -> PublishedPipeline:
    """The pipeline and its definition; the definition part is served from the cache."""
    with _lock:
        cached = _cache.get(pipeline_id)
    if cached is not None:
        return cached
    return remember((registry or PipelineRegistry()).get(pipeline_id))
