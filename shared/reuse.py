"""The reuse index: fingerprint -> the run/step whose committed outputs can stand in for a new run.

Each record is an empty blob `reuse/{fingerprint}` in the system container whose metadata says
{runid, step, pipelineid, outputs (JSON {name: path}), createdutc}. Metadata comes back with the
properties call, so a lookup costs one request plus one per output manifest. Records are
created with If-None-Match: * after the outputs are committed: the first writer wins.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass, field

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import ContainerClient

from shared.datastore import Datastore, default_datastore
from shared.errors import InvalidRequest
from shared.runs import utc_now
from shared.settings import get_settings
from shared.storage import ensure_container, parallel_map, translate_storage_errors

_FINGERPRINT = re.compile(r"^[A-Za-z0-9_-]{8,128}$")


@dataclass(frozen=True)
class ReuseRecord:
    fingerprint: str
    run_id: str
    step: str
    pipeline_id: str | None
    outputs: dict[str, str] = field(default_factory=dict)  # output name -> path on the default datastore
    created_utc: str | None = None
    metrics: dict = field(default_factory=dict)  # the producing step's metrics, shown on reused steps


_MAX_METRICS_METADATA = 4096  # blob metadata is 8 KiB in all; larger metrics stay on the step record


def _blob_name(fingerprint: str) -> str:
    if not isinstance(fingerprint, str) or not _FINGERPRINT.match(fingerprint):
        raise InvalidRequest(f"fingerprint {fingerprint!r} is not valid")
    return f"reuse/{fingerprint}"


class ReuseIndex:
    def __init__(self, container: str | None = None, datastore: Datastore | None = None):
        self._container_name = container
        self._datastore = datastore

    def _container(self) -> ContainerClient:
        return ensure_container(self._container_name or get_settings().system_container)

    def _outputs_datastore(self) -> Datastore:
        return self._datastore or default_datastore()

    def lookup(self, fingerprint: str) -> ReuseRecord | None:
        """The record for `fingerprint`, or None if there is none or any of its outputs is gone."""
        blob = self._container().get_blob_client(_blob_name(fingerprint))
        with translate_storage_errors(f"reuse record '{fingerprint}'"):
            try:
                metadata = blob.get_blob_properties().metadata or {}
            except ResourceNotFoundError:
                return None
        meta = {k.lower(): v for k, v in metadata.items()}
        try:
            record = ReuseRecord(fingerprint=fingerprint, run_id=meta["runid"], step=meta["step"],
                                 pipeline_id=meta.get("pipelineid") or None,
                                 outputs=json.loads(meta.get("outputs") or "{}"),
                                 created_utc=meta.get("createdutc"),
                                 metrics=json.loads(meta.get("metrics") or "{}"))
        except (KeyError, ValueError):
            return None  # a malformed record is no reason to fail a run: just do not reuse
        datastore = self._outputs_datastore()
        if not all(parallel_map(datastore.is_committed, list(record.outputs.values()))):
            return None
        return record

    def record(self, fingerprint: str, run_id: str, step: str, pipeline_id: str | None,
               outputs: dict[str, str], metrics: dict | None = None) -> bool:
        """Create the record if none exists (If-None-Match: *). True if this call created it;
        False if another writer got there first (not an error: its outputs are as good)."""
        metadata = {
            "runid": run_id,
            "step": step,
            "outputs": json.dumps(outputs, sort_keys=True, ensure_ascii=True),
            "createdutc": utc_now(),
        }
        if pipeline_id:  # empty metadata values are not portable across storage implementations
            metadata["pipelineid"] = pipeline_id
        metrics_json = json.dumps(metrics or {}, sort_keys=True, ensure_ascii=True)
        if metrics and len(metrics_json) <= _MAX_METRICS_METADATA:
            metadata["metrics"] = metrics_json
        blob = self._container().get_blob_client(_blob_name(fingerprint))
        with translate_storage_errors(f"reuse record '{fingerprint}'"):
            try:
                blob.upload_blob(b"", overwrite=False, metadata=metadata)
            except ResourceExistsError:
                return False
        return True

    def forget(self, fingerprint: str) -> None:
        """Delete the record (e.g. when its outputs are known to be bad); no error if absent."""
        blob = self._container().get_blob_client(_blob_name(fingerprint))
        with translate_storage_errors(f"reuse record '{fingerprint}'"), contextlib.suppress(ResourceNotFoundError):
            blob.delete_blob()
