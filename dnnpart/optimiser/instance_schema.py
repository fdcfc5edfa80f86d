"""The instance file's declared schema (pydantic): what `{"devices": [...]}` may hold.

`dnnpart schema instance` prints it as JSON Schema (docs/schemas/instance.schema.json). Device names being
unique is checked by `Instance` itself, as for instances built in code.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Annotated

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from dnnpart.errors import InstanceError
from dnnpart.input_files import describe_errors, show
from dnnpart.limits import MAX_DEVICES, MAX_LAYERS, MAX_MS

LIST_FIELDS = ("local_ms", "server_ms", "upload_ms")
NOUNS = {"devices": "device", **dict.fromkeys(LIST_FIELDS, "layer")}


def _real(value):
    """A number of ms as a float: any real number but a bool; a string such as '2' is refused, not read."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise PydanticCustomError("ms_type", "must be a number of ms, got {value}", {"value": show(value)})
    try:
        ms = float(value)
    except OverflowError:  # an integer with hundreds of digits
        raise PydanticCustomError(
            "ms_too_large", "is too large for a number of ms, got {value}", {"value": show(value)}
        ) from None
    if not math.isfinite(ms):  # before the >= 0 check, which NaN would fail with a misleading message
        raise PydanticCustomError("finite_number", "must be finite, got {value}", {"value": show(value)})
    return ms


Ms = Annotated[float, Field(ge=0, le=MAX_MS, allow_inf_nan=False), BeforeValidator(_real)]  # _real runs first
Times = Annotated[list[Ms], Field(min_length=1, max_length=MAX_LAYERS)]
Name = Annotated[str, StringConstraints(min_length=1, strict=True)]
COMMENT_KEYS = {"patternProperties": {"^_": {}}, "additionalProperties": False}


class DeviceSpec(BaseModel):
    """One device's chain DNN: per layer, in execution order, its local, server and upload time (ms).
    Keys starting with '_' are comments (e.g. `_layers`, the layer names)."""

    model_config = ConfigDict(extra="allow", json_schema_extra=COMMENT_KEYS)

    name: Name
    local_ms: Times = Field(description="time of each layer on the device (ms)")
    server_ms: Times = Field(description="time of each layer on the server (ms)")
    upload_ms: Times = Field(description="upload of each layer's input (ms); index 0 is the raw input")
    download_ms: Ms = Field(0.0, description="download of the result after the last server layer (ms)")

    @model_validator(mode="before")
    @classmethod
    def _only_comment_keys(cls, data):
        if isinstance(data, dict):
            for key in data:
                if key not in cls.model_fields and not (isinstance(key, str) and key.startswith("_")):
                    raise PydanticCustomError(
                        "unknown_key",
                        "unknown key {key} (valid keys: {valid}; keys starting with '_' are comments)",
                        {"key": show(key), "valid": ", ".join(cls.model_fields)},
                    )
        return data

    @model_validator(mode="after")
    def _one_entry_per_layer(self):
        lengths = {field: len(getattr(self, field)) for field in LIST_FIELDS}
        if len(set(lengths.values())) != 1:
            raise PydanticCustomError(
                "lengths",
                "local_ms, server_ms and upload_ms must have one entry per layer, got lengths {lengths}",
                {"lengths": str(lengths)},
            )
        return self


class InstanceFile(BaseModel):
    """An optimiser instance: the devices sharing one MEC server. Other top-level keys are annotations
    (e.g. a known optimum); device objects are checked strictly."""

    model_config = ConfigDict(
        extra="allow",
        title="dnnpart instance",
        json_schema_extra={"$schema": "https://json-schema.org/draft/2020-12/schema"},
    )

    devices: Annotated[list[DeviceSpec], Field(min_length=1, max_length=MAX_DEVICES)]


def validate_instance(data) -> InstanceFile:
    """The validated file; InstanceError with one line naming the place (and the device's name) otherwise."""
    try:
        return InstanceFile.model_validate(data)
    except ValidationError as exc:
        raise InstanceError(
            describe_errors(
                exc.errors(include_url=False), InstanceFile, NOUNS, note=lambda loc: _device_name(data, loc)
            )
        ) from None


def _device_name(data, loc) -> str:
    """' (device NAME)' when the place is inside a device object that has a usable name, so a large file's
    device can be found by name as well as by index."""
    if len(loc) >= 2 and loc[0] == "devices" and isinstance(loc[1], int):
        device = data["devices"][loc[1]]
        name = device.get("name") if isinstance(device, dict) else None
        if isinstance(name, str) and name:
            return f" (device {show(name)})"
    return ""


def validate_device(name, local_ms, server_ms, upload_ms, download_ms) -> DeviceSpec:
    """The same checks for a Device built in code; InstanceError 'device NAME: <place>: <problem>'."""
    fields = {
        "name": name,
        "local_ms": local_ms,
        "server_ms": server_ms,
        "upload_ms": upload_ms,
        "download_ms": download_ms,
    }
    try:
        return DeviceSpec.model_validate(fields)
    except ValidationError as exc:
        line = describe_errors(exc.errors(include_url=False), DeviceSpec, NOUNS)
        raise InstanceError(f"device {show(name)}: {line}") from None
