"""Single flight: two runs that need the same step fingerprint at once execute it once.

The first run to need a fingerprint takes a lease: a blob `inflight/{fingerprint}` in the system
container, created create-only (If-None-Match: *), naming the run and step that compute it and
when the lease expires. A second run finds the lease held and waits (its step shows Queued);
when the first completes, its reuse record makes the second reuse its outputs; if the first
fails or is canceled it releases the lease and the second computes the step itself.

The holder refreshes the expiry every time it polls its job, so only a holder that died
(a host killed and never restarted) lets its lease expire; then the next run takes it over.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError

from shared.settings import get_settings
from shared.storage import ensure_container, translate_storage_errors

LEASE_SECONDS = 300.0


@dataclass(frozen=True)
class Holder:
    run_id: str
    step: str


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _metadata(run_id: str, step: str) -> dict[str, str]:
    expires = _now() + timedelta(seconds=LEASE_SECONDS)
    return {"runid": run_id, "step": step, "expires": expires.isoformat()}


# ETags of the leases this process holds, so releasing one is a single conditional delete.
_held: dict[tuple[str, str, str], str] = {}


class StepLeases:
    def __init__(self, container: str | None = None):
        self._container_name = container

    def _blob(self, fingerprint: str):
        container = ensure_container(self._container_name or get_settings().system_container)
        return container.get_blob_client(f"inflight/{fingerprint}")

    def acquire(self, fingerprint: str, run_id: str, step: str) -> Holder | None:
        """Take the lease for (run, step); None when we hold it, else who does."""
        blob = self._blob(fingerprint)
        with translate_storage_errors(f"in-flight lease '{fingerprint}'"):
            for _ in range(5):
                try:
                    created = blob.upload_blob(b"", overwrite=False, metadata=_metadata(run_id, step))
                    _held[(fingerprint, run_id, step)] = created["etag"]
                    return None
                except ResourceExistsError:
                    pass
                try:
                    properties = blob.get_blob_properties()
                except ResourceNotFoundError:
                    continue  # released in between: try to create it again
                meta = {k.lower(): v for k, v in (properties.metadata or {}).items()}
                holder = Holder(meta.get("runid", ""), meta.get("step", ""))
                if holder == Holder(run_id, step):
                    return None  # ours already (this activity ran before, e.g. after a restart)
                if datetime.fromisoformat(meta.get("expires", "1970-01-01T00:00:00+00:00")) > _now():
                    return holder
                try:  # the holder stopped refreshing: take the expired lease over
                    blob.delete_blob(etag=properties.etag, match_condition=MatchConditions.IfNotModified)
                except (ResourceModifiedError, ResourceNotFoundError):
                    pass
        return Holder("unknown", "unknown")  # contended five times in a row: wait and try later

    def refresh(self, fingerprint: str, run_id: str, step: str) -> None:
        blob = self._blob(fingerprint)
        with translate_storage_errors(f"in-flight lease '{fingerprint}'"):
            try:
                updated = blob.set_blob_metadata(_metadata(run_id, step))
                _held[(fingerprint, run_id, step)] = updated["etag"]
            except ResourceNotFoundError:
                pass

    def release(self, fingerprint: str, run_id: str, step: str) -> None:
        """Drop the lease if (run, step) holds it; anything else is left alone."""
        blob = self._blob(fingerprint)
        etag = _held.pop((fingerprint, run_id, step), None)
        with translate_storage_errors(f"in-flight lease '{fingerprint}'"):
            if etag is not None:  # taken by this process: one conditional delete
                try:
                    blob.delete_blob(etag=etag, match_condition=MatchConditions.IfNotModified)
                    return
                except (ResourceNotFoundError, ResourceModifiedError):
                    pass  # refreshed elsewhere or gone: check the holder below
            try:
                properties = blob.get_blob_properties()
                meta = {k.lower(): v for k, v in (properties.metadata or {}).items()}
                if Holder(meta.get("runid", ""), meta.get("step", "")) == Holder(run_id, step):
                    blob.delete_blob(etag=properties.etag, match_condition=MatchConditions.IfNotModified)
            except (ResourceNotFoundError, ResourceModifiedError):
                pass
