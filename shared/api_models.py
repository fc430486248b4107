"""Pydantic models of the HTTP API bodies (API.md section 3): requests the handlers validate, and
responses as the API returns them. The OpenAPI document (shared/openapi.py) and the Python client
(shared/client.py) are both generated from / typed by these, so they cannot drift apart.

Response models allow extra fields: the API may add fields (the contract is "extend, never break").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Number = int | float
ActiveStatus = Literal["Active", "Disabled"]
RunStatusName = Literal["NotStarted", "Queued", "Running", "CancelRequested", "Finished", "Failed", "Canceled"]
StepStatusName = Literal["NotStarted", "Queued", "Running", "CancelRequested", "Completed", "Failed", "Canceled",
                         "Skipped"]

MAX_TAGS = 50
MAX_TAG_KEY = 128
MAX_TAG_VALUE = 256
TagKey = Field(min_length=1, max_length=MAX_TAG_KEY)


# ----- requests --------------------------------------------------------------------------------


class CreateEndpointRequest(BaseModel):
    """POST /api/endpoints."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    description: str | None = Field(default=None, max_length=4096)
    pipelineId: str = Field(min_length=1, max_length=128)


class AddEndpointVersionRequest(BaseModel):
    """POST /api/endpoints/{name}/versions."""

    model_config = ConfigDict(extra="forbid")
    pipelineId: str = Field(min_length=1, max_length=128)


class SetDefaultVersionRequest(BaseModel):
    """PUT /api/endpoints/{name}/default."""

    model_config = ConfigDict(extra="forbid")
    version: str | int = Field(description='a version of the endpoint, e.g. "1"')


class TagsRequest(BaseModel):
    """POST or PATCH /api/runs/{id}/tags: tags to add or change (a null value removes the tag)."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, str | None] = Field(init=False)


# ----- responses -------------------------------------------------------------------------------


class _Response(BaseModel):
    """A response body: typed attributes (`run.Status`) and, like azure-core's models, read-only
    mapping access (`run["Status"]`, `run.get("Error")`, `"Tags" in run`); `as_dict()` is the JSON."""

    model_config = ConfigDict(extra="allow")

    def as_dict(self) -> dict:
        return self.model_dump(mode="json", exclude_unset=True)

    def _keys(self) -> list[str]:
        return [name for name in type(self).model_fields if name in self.model_fields_set] + \
            list(self.__pydantic_extra__ or {})

    def keys(self):
        return self._keys()

    def values(self):
        return [self[key] for key in self._keys()]

    def items(self):
        return [(key, self[key]) for key in self._keys()]

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __getitem__(self, key: str) -> Any:
        if key in type(self).model_fields or key in (self.__pydantic_extra__ or {}):
            return getattr(self, key)
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return key in self._keys()

    def __iter__(self):  # like a Mapping: the keys (pydantic's own iteration yields pairs)
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping) and not isinstance(other, BaseModel):
            return self.as_dict() == dict(other)
        return super().__eq__(other)

    __hash__ = None  # type: ignore[assignment]


class ErrorDetail(_Response):
    code: str
    message: str


class ErrorResponse(_Response):
    error: ErrorDetail


class Health(_Response):
    status: str
    version: str


class Datastore(_Response):
    Name: str
    Container: str
    AccountName: str | None = None
    IsDefault: bool


class Pipeline(_Response):
    Id: str
    Name: str
    Description: str | None = None
    Version: str | None = None
    Status: ActiveStatus
    Parameters: dict[str, Any] = Field(default_factory=dict)
    Endpoint: str | None = None
    CreatedTimeUtc: str


class EndpointVersionModel(_Response):
    Version: str
    PipelineId: str


class Endpoint(_Response):
    Name: str
    Description: str | None = None
    DefaultVersion: str
    Versions: list[EndpointVersionModel]
    Status: ActiveStatus
    Endpoint: str | None = None
    CreatedTimeUtc: str | None = None


class OutputRefModel(_Response):
    Datastore: str
    Path: str


class StepFields(BaseModel):
    """A step's fields as the API shows them; the stored record (shared/runs.StepRecord) declares
    them through this class too, with its own defaults and storage types where they differ."""

    Name: str
    Status: StepStatusName
    Reused: bool = False
    ReusedFromRunId: str | None = None
    Compute: str | None = None
    Fingerprint: str | None = None
    StartTimeUtc: str | None = None
    EndTimeUtc: str | None = None
    Outputs: dict[str, OutputRefModel] = Field(default_factory=dict)
    Metrics: dict[str, Number | list[Number]] = Field(default_factory=dict)
    Error: ErrorDetail | None = None


class Step(_Response, StepFields):
    pass


class RunFields(BaseModel):
    """A run's fields as the API shows them; shared/runs.RunRecord declares them through this class
    too, with its own defaults and storage types where they differ."""

    Id: str
    Status: RunStatusName
    ExperimentName: str
    PipelineId: str | None = None
    EndpointName: str | None = None
    PipelineVersion: str | None = Field(default=None, description="the endpoint version run (endpoint submits)")
    RunSource: str | None = None
    ParameterAssignments: dict[str, Any] = Field(default_factory=dict)
    DataPathAssignments: dict[str, Any] = Field(default_factory=dict)
    Tags: dict[str, Any] = Field(default_factory=dict)
    Description: str | None = None
    CreatedTimeUtc: str
    StartTimeUtc: str | None = None
    EndTimeUtc: str | None = None
    Error: ErrorDetail | None = None
    RegenerateOutputs: bool = False
    ContinueOnStepFailure: bool = False
    Steps: list[Step] = Field(default_factory=list)


class Run(_Response, RunFields):
    pass


class _Listing(_Response):
    nextLink: str | None = None


class DatastoreList(_Listing):
    value: list[Datastore]


class PipelineList(_Listing):
    value: list[Pipeline]


class EndpointList(_Listing):
    value: list[Endpoint]


class RunList(_Listing):
    value: list[Run]


class Fingerprint(_Response):
    """A step's fingerprint ingredients, each with its hash (shape depends on the step)."""
