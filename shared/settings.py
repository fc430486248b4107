"""All configuration is read here, once: the environment first, then local.settings.json Values.

This mirrors Azure Functions: app settings arrive as environment variables in Azure; locally the
host merges `local.settings.json` `Values` under the environment.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from shared.errors import MlpipeError

DEVELOPMENT_STORAGE = "UseDevelopmentStorage=true"
AZURITE_ACCOUNT = "devstoreaccount1"
# The well-known, published Azurite/Storage Emulator key (not a secret).
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def azurite_connection_string(blob_port: int = 10000, queue_port: int = 10001, host: str = "127.0.0.1",
                              scheme: str = "http") -> str:
    return (
        f"DefaultEndpointsProtocol={scheme};"
        f"AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"BlobEndpoint={scheme}://{host}:{blob_port}/{AZURITE_ACCOUNT};"
        f"QueueEndpoint={scheme}://{host}:{queue_port}/{AZURITE_ACCOUNT};"
    )


def expand_connection_string(value: str) -> str:
    """`UseDevelopmentStorage=true` means Azurite on its default ports, as in the Storage SDKs."""
    if value.strip().rstrip(";").lower() == DEVELOPMENT_STORAGE.lower():
        return azurite_connection_string()
    return value


def load_local_settings(app_root: Path) -> dict[str, str]:
    path = app_root / "local.settings.json"
    if not path.is_file():
        return {}
    values = json.loads(path.read_text(encoding="utf-8")).get("Values") or {}
    return {str(k): str(v) for k, v in values.items()}


def apply_local_settings(app_root: Path) -> None:
    """Put local.settings.json Values into the environment under anything already set there."""
    for key, value in load_local_settings(app_root).items():
        os.environ.setdefault(key, value)


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


@dataclass(frozen=True)
class Settings:
    storage_connection: str = field(repr=False)
    blobstore_container: str = "workspaceblobstore"
    system_container: str = "mlpipe"
    data_dir: Path = Path(".mlpipe")
    scheduler_cron: str = "0 * * * * *"
    local_poll_seconds: float = 20.0
    extra_datastores: dict = field(default_factory=dict, repr=False)
    # Remote compute (shared/compute/retry.py): transient errors (429, 5xx, connection resets)
    # are retried this many times, with exponential backoff from base to max seconds plus jitter.
    compute_retry_attempts: int = 5
    compute_retry_base_seconds: float = 0.5
    compute_retry_max_seconds: float = 30.0
    # How long one poll activity waits on a data_transfer copy before handing back.
    transfer_poll_seconds: float = 10.0
    # Triggers (issue 6): Service Bus connection (None: storage queues only), where run events go
    # ("queue": the run-events storage queue, "servicebus": a topic of that name, "off").
    servicebus_connection: str | None = field(default=None, repr=False)
    run_events: str = "queue"
    run_events_queue: str = "run-events"
    submissions_queue: str = "pipeline-submissions"
    # How mlpipe's azure-core clients (storage, Azure ML, ADLA) send requests
    # (shared/http_transport.py azure_transport): "http.client" or "requests".
    http_transport: str = "http.client"
    # How the local backend readies interpreters ahead of local steps: "fork" (steps are forked from
    # a template interpreter kept running, shared/compute/forkserver.py), "on" (one spare interpreter
    # started ahead for the next step, shared/compute/interpreters.py) or "off".
    local_spare_interpreter: str = "fork"

    @classmethod
    def from_env(cls) -> "Settings":
        raw = _env("AzureWebJobsStorage", DEVELOPMENT_STORAGE)
        datastores = json.loads(_env("MLPIPE_DATASTORES", "{}") or "{}")
        return cls(
            storage_connection=expand_connection_string(raw),
            blobstore_container=_env("MLPIPE_BLOBSTORE_CONTAINER", "workspaceblobstore"),
            system_container=_env("MLPIPE_SYSTEM_CONTAINER", "mlpipe"),
            data_dir=Path(_env("MLPIPE_DATA_DIR", ".mlpipe")).resolve(),
            scheduler_cron=_env("MLPIPE_SCHEDULER_CRON", "0 * * * * *"),
            local_poll_seconds=float(_env("MLPIPE_LOCAL_POLL_SECONDS", "20")),
            extra_datastores=datastores,
            compute_retry_attempts=int(_env("MLPIPE_COMPUTE_RETRY_ATTEMPTS", "5")),
            compute_retry_base_seconds=float(_env("MLPIPE_COMPUTE_RETRY_BASE_SECONDS", "0.5")),
            compute_retry_max_seconds=float(_env("MLPIPE_COMPUTE_RETRY_MAX_SECONDS", "30")),
            transfer_poll_seconds=float(_env("MLPIPE_TRANSFER_POLL_SECONDS", "10")),
            servicebus_connection=_env("MLPIPE_SERVICEBUS_CONNECTION"),
            run_events=(_env("MLPIPE_RUN_EVENTS", "queue") or "queue").lower(),
            run_events_queue=_env("MLPIPE_RUN_EVENTS_QUEUE", "run-events"),
            submissions_queue=_env("MLPIPE_SUBMISSIONS_QUEUE", "pipeline-submissions"),
            http_transport=(_env("MLPIPE_HTTP_TRANSPORT", "http.client") or "http.client").lower(),
            local_spare_interpreter=(_env("MLPIPE_LOCAL_SPARE_INTERPRETER", "fork") or "fork").lower(),
        )


def checked_choice(setting: str, value: str, choices: tuple[str, ...]) -> str:
    """`value`, read from the app setting `setting`, if it is one of `choices`; else a
    ConfigurationError naming the setting and what it may be."""
    if value not in choices:
        raise MlpipeError(f"{setting} must be one of {', '.join(choices)}, not '{value}'", code="ConfigurationError")
    return value


def secret_setting(name: str) -> str | None:
    """The value of the app setting `name` that a compute entry names as holding a secret (a
    Databricks token, a client secret). Read at use, never cached in Settings, never logged."""
    return _env(name)


_cached: Settings | None = None


def get_settings() -> Settings:
    """Settings for this process, read once (call reset_settings() after changing the environment)."""
    global _cached
    if _cached is None:
        _cached = Settings.from_env()
    return _cached


def reset_settings() -> None:
    global _cached
    _cached = None
