"""The reuse index and single flight, in one blob per fingerprint: `reuse/{fingerprint}`.

An empty blob in the system container whose metadata is one of two things:

  a reuse record   {runid, step, pipelineid, outputs (JSON {name: path}), createdutc, metrics}:
                   the run/step whose committed outputs can stand in for a new run;
  a claim          {state: "inflight", runid, step, expires}: that run is computing the
                   fingerprint right now (single flight: a second run that needs it waits).

A run that needs a fingerprint claims it with one create-only request (If-None-Match: *). The
claim succeeds when nobody has the blob; otherwise the blob says who computed it (reuse it) or who
is computing it (wait). When the step's outputs are committed, the claim is replaced by the reuse
record (If-Match on the claim's ETag); a failed or canceled step deletes its claim, so a waiting run
computes the step itself. The holder refreshes the expiry while its job runs, so only a holder
that died lets its claim expire; the next run then takes it over. A record whose outputs were
deleted is taken over the same way, and replaced when the step has run again.

Fresh step: one request to start (claim) and one to finish (record), where a separate lookup,
lease, record and lease release took four. Lookups (the run plan, `runs explain`) see claims as
"no record".
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import BlobClient, ContainerClient

from shared.datastore import Datastore, default_datastore
from shared.errors import InvalidRequest
from shared.runs import utc_now
from shared.settings import get_settings
from shared.storage import ensure_container, lower_keys, parallel_map, translate_storage_errors

_FINGERPRINT = re.compile(r"^[A-Za-z0-9_-]{8,128}$")
CLAIM_SECONDS = 300.0
# A running job's claim is refreshed at most this often (polls come every half second locally).
_REFRESH_EVERY_SECONDS = 60.0
_MAX_METRICS_METADATA = 4096  # blob metadata is 8 KiB in all; larger metrics stay on the step record
_CLAIM_ATTEMPTS = 5


@dataclass(frozen=True)
class ReuseRecord:
    fingerprint: str
    run_id: str
    step: str
    pipeline_id: str | None
    outputs: dict[str, str] = field(default_factory=dict)  # output name -> path on the default datastore
    created_utc: str | None = None
    metrics: dict = field(default_factory=dict)  # the producing step's metrics, shown on reused steps


@dataclass(frozen=True)
class Holder:
    """Who computes a fingerprint right now."""

    run_id: str
    step: str


@dataclass(frozen=True)
class Claim:
    """What claiming a fingerprint found: exactly one of these is set, or none (the claim is ours)."""

    reusable: ReuseRecord | None = None  # computed already, outputs committed
    held_by: Holder | None = None  # another run computes it now

    @property
    def ours(self) -> bool:
        return self.reusable is None and self.held_by is None


def _blob_name(fingerprint: str) -> str:
    if not isinstance(fingerprint, str) or not _FINGERPRINT.match(fingerprint):
        raise InvalidRequest(f"fingerprint {fingerprint!r} is not valid")
    return f"reuse/{fingerprint}"


def _claim_metadata(run_id: str, step: str) -> dict[str, str]:
    expires = datetime.now(timezone.utc) + timedelta(seconds=CLAIM_SECONDS)
    return {"state": "inflight", "runid": run_id, "step": step, "expires": expires.isoformat()}


def _is_claim(meta: dict[str, str]) -> bool:
    return meta.get("state") == "inflight"


def _expired(meta: dict[str, str]) -> bool:
    try:
        return datetime.fromisoformat(meta.get("expires", "")) <= datetime.now(timezone.utc)
    except ValueError:
        return True


# The ETag of each claim this process holds (so finishing is one conditional write), and when it
# was last refreshed.
_held: dict[tuple[str, str, str], tuple[str, float]] = {}
_held_lock = threading.Lock()


def _hold(key: tuple[str, str, str], etag: str) -> None:
    with _held_lock:
        _held[key] = (etag, time.monotonic())


def _held_etag(key: tuple[str, str, str], *, pop: bool = False) -> tuple[str, float] | None:
    with _held_lock:
        return _held.pop(key, None) if pop else _held.get(key)


class ReuseIndex:
    def __init__(self, container: str | None = None, datastore: Datastore | None = None):
        self._container_name = container
        self._datastore = datastore

    def _container(self) -> ContainerClient:
        return ensure_container(self._container_name or get_settings().system_container)

    def _blob(self, fingerprint: str) -> BlobClient:
        return self._container().get_blob_client(_blob_name(fingerprint))

    def _outputs_datastore(self) -> Datastore:
        return self._datastore or default_datastore()

    # ----- lookups -------------------------------------------------------------------------

    def lookup(self, fingerprint: str) -> ReuseRecord | None:
        """The record for `fingerprint`, or None if there is none (or only a claim), or any of its
        outputs is gone."""
        blob = self._blob(fingerprint)
        with translate_storage_errors(f"reuse record '{fingerprint}'"):
            try:
                meta = lower_keys(blob.get_blob_properties().metadata)
            except ResourceNotFoundError:
                return None
        record = self._record_of(fingerprint, meta)
        return record if record is not None and self._outputs_committed(record) else None

    @staticmethod
    def _record_of(fingerprint: str, meta: dict[str, str]) -> ReuseRecord | None:
        if _is_claim(meta):
            return None
        try:
            return ReuseRecord(fingerprint=fingerprint, run_id=meta["runid"], step=meta["step"],
                               pipeline_id=meta.get("pipelineid") or None,
                               outputs=json.loads(meta.get("outputs") or "{}"),
                               created_utc=meta.get("createdutc"),
                               metrics=json.loads(meta.get("metrics") or "{}"))
        except (KeyError, ValueError):
            return None  # a malformed record is no reason to fail a run: just do not reuse

    def _outputs_committed(self, record: ReuseRecord) -> bool:
        datastore = self._outputs_datastore()
        return all(parallel_map(datastore.is_committed, list(record.outputs.values())))

    # ----- single flight -------------------------------------------------------------------

    def claim(self, fingerprint: str, run_id: str, step: str) -> Claim:
        """Claim the fingerprint for (run, step) unless it can be reused or another run computes it."""
        blob, key = self._blob(fingerprint), (fingerprint, run_id, step)
        with translate_storage_errors(f"reuse record '{fingerprint}'"):
            for _ in range(_CLAIM_ATTEMPTS):
                try:
                    created = blob.upload_blob(b"", overwrite=False, metadata=_claim_metadata(run_id, step))
                    _hold(key, created["etag"])
                    return Claim()
                except ResourceExistsError:
                    pass
                try:
                    properties = blob.get_blob_properties()
                except ResourceNotFoundError:
                    continue  # released in between: try to create it again
                meta = lower_keys(properties.metadata)
                if _is_claim(meta):
                    holder = Holder(meta.get("runid", ""), meta.get("step", ""))
                    if holder != Holder(run_id, step) and not _expired(meta):
                        return Claim(held_by=holder)
                    # Ours already (this activity ran before), or the holder stopped refreshing.
                else:
                    record = self._record_of(fingerprint, meta)
                    if record is not None and self._outputs_committed(record):
                        return Claim(reusable=record)
                    # Its outputs are gone (or the record is unreadable): compute the step again.
                with contextlib.suppress(ResourceModifiedError, ResourceNotFoundError):
                    taken = blob.upload_blob(b"", overwrite=True, metadata=_claim_metadata(run_id, step),
                                             etag=properties.etag, match_condition=MatchConditions.IfNotModified)
                    _hold(key, taken["etag"])
                    return Claim()
        return Claim(held_by=Holder("unknown", "unknown"))  # contended every time: wait and try later

    def refresh(self, fingerprint: str, run_id: str, step: str) -> None:
        """Push the claim's expiry out while the job runs (at most once a minute per claim)."""
        key = (fingerprint, run_id, step)
        held = _held_etag(key)
        if held is not None and time.monotonic() - held[1] < _REFRESH_EVERY_SECONDS:
            return
        blob = self._blob(fingerprint)
        with translate_storage_errors(f"reuse record '{fingerprint}'"), \
                contextlib.suppress(ResourceModifiedError, ResourceNotFoundError):
            etag = held[0] if held is not None else self._our_claim_etag(blob, run_id, step)
            if etag is not None:
                updated = blob.set_blob_metadata(_claim_metadata(run_id, step), etag=etag,
                                                 match_condition=MatchConditions.IfNotModified)
                _hold(key, updated["etag"])

    def release(self, fingerprint: str, run_id: str, step: str) -> None:
        """Drop the claim if (run, step) holds it (the step failed or was canceled); else nothing."""
        held = _held_etag((fingerprint, run_id, step), pop=True)
        blob = self._blob(fingerprint)
        with translate_storage_errors(f"reuse record '{fingerprint}'"):
            if held is not None:
                with contextlib.suppress(ResourceModifiedError, ResourceNotFoundError):
                    blob.delete_blob(etag=held[0], match_condition=MatchConditions.IfNotModified)
                    return
            with contextlib.suppress(ResourceModifiedError, ResourceNotFoundError):
                etag = self._our_claim_etag(blob, run_id, step)
                if etag is not None:
                    blob.delete_blob(etag=etag, match_condition=MatchConditions.IfNotModified)

    @staticmethod
    def _our_claim_etag(blob: BlobClient, run_id: str, step: str) -> str | None:
        properties = blob.get_blob_properties()
        meta = lower_keys(properties.metadata)
        return properties.etag if _is_claim(meta) and Holder(meta.get("runid", ""), meta.get("step", "")) == \
            Holder(run_id, step) else None

    # ----- records -------------------------------------------------------------------------

    def record(self, fingerprint: str, run_id: str, step: str, pipeline_id: str | None,
               outputs: dict[str, str], metrics: dict | None = None) -> bool:
        """Record the committed outputs of (run, step) under `fingerprint`.

        Replaces this step's own claim, or creates the record if there is no blob. True if this call
        wrote it; False if another run's record or claim is there (not an error: its outputs are as good,
        or it is computing the same thing)."""
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
        blob = self._blob(fingerprint)
        held = _held_etag((fingerprint, run_id, step), pop=True)
        with translate_storage_errors(f"reuse record '{fingerprint}'"):
            for etag in ([held[0]] if held else []) + [None]:
                try:
                    if etag is None:
                        blob.upload_blob(b"", overwrite=False, metadata=metadata)
                    else:
                        blob.upload_blob(b"", overwrite=True, metadata=metadata, etag=etag,
                                         match_condition=MatchConditions.IfNotModified)
                    return True
                except (ResourceModifiedError, ResourceNotFoundError):
                    continue  # our claim changed hands or is gone: create-only below
                except ResourceExistsError:
                    pass
            # Not created: replace it only if it is still our own claim (e.g. claimed by an earlier host process).
            with contextlib.suppress(ResourceModifiedError, ResourceNotFoundError):
                etag = self._our_claim_etag(blob, run_id, step)
                if etag is not None:
                    blob.upload_blob(b"", overwrite=True, metadata=metadata, etag=etag,
                                     match_condition=MatchConditions.IfNotModified)
                    return True
        return False

    def forget(self, fingerprint: str) -> None:
        """Delete the record (e.g. when its outputs are known to be bad); no error if absent."""
        blob = self._blob(fingerprint)
        with translate_storage_errors(f"reuse record '{fingerprint}'"), contextlib.suppress(ResourceNotFoundError):
            blob.delete_blob()
