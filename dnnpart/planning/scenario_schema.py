"""The scenario file's declared schema (pydantic), and the YAML loader that reads it safely.

The schema says what keys, types and ranges a file may hold; `dnnpart schema scenario` prints it as JSON Schema
(docs/schemas/scenario.schema.json). What needs the file system (profile folders, networks, layer-type
coverage) and unique group names are checked afterwards by scenario.load_scenario.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from dnnpart.delay import FAMILIES
from dnnpart.errors import ScenarioError
from dnnpart.input_files import describe_errors
from dnnpart.optimiser.instance_schema import MAX_DEVICES

DEFAULT_FAMILY = "dnnpart"
NOUNS = {"devices": "device group"}

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, strict=True)]
Mbps = Annotated[float, Field(gt=0, allow_inf_nan=False, strict=True)]


class ServerSpec(BaseModel):
    """The MEC server."""

    model_config = ConfigDict(extra="forbid")

    profile: Text = Field(
        description="a profile name under data/profiles/ or a folder (relative to the file) that serves the server role"
    )
    load: Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False, strict=True)] = Field(
        0.0, description="share of the server taken by other work; server times scale by 1 / (1 - load)"
    )


class GroupSpec(BaseModel):
    """`count` identical devices: one network, one device profile, one uplink."""

    model_config = ConfigDict(extra="forbid")

    name: Text | None = Field(None, description="devices are named <name>-0, <name>-1, ...; default group<i>")
    count: Annotated[int, Field(gt=0, le=MAX_DEVICES, strict=True)] = Field(
        description=f"number of identical devices (at most {MAX_DEVICES} in all groups)"
    )
    network: Text = Field(description="a zoo name or a path to a chain-structured .onnx file")
    profile: Text = Field(
        description="a profile name under data/profiles/ or a folder (relative to the file) that serves the device role"
    )
    uplink_mbps: Mbps = Field(description="uplink rate (Mbit/s); uploads take bytes * 8 / (rate * 1000) ms")
    downlink_mbps: Mbps | None = Field(None, description="the result comes back at this rate; default: free")
    cpu_quota: Annotated[float, Field(gt=0, le=64, allow_inf_nan=False, strict=True)] | Literal["native"] = Field(
        "native",
        description="testbed only: the device process's CPU quota, a fraction of one core (0.1: ten times "
        "slower than one core), or native",
    )
    link_delay_ms: Annotated[float, Field(ge=0, le=10_000, allow_inf_nan=False, strict=True)] = Field(
        0.0, description="testbed only: one-way delay added to each direction of the device's link (netem)"
    )


class ScenarioFile(BaseModel):
    """A dnnpart scenario: one MEC server and groups of devices (YAML or JSON)."""

    model_config = ConfigDict(
        extra="forbid",
        title="dnnpart scenario",
        json_schema_extra={"$schema": "https://json-schema.org/draft/2020-12/schema"},
    )

    server: ServerSpec
    devices: Annotated[list[GroupSpec], Field(min_length=1)]
    family: Literal[FAMILIES] = Field(DEFAULT_FAMILY, description="delay-model family fitted on measured profiles")


def validate_scenario(data, label: str) -> ScenarioFile:
    """The validated file; ScenarioError '<label>: <place>: <problem>' (one line) otherwise."""
    try:
        return ScenarioFile.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(f"{label}: {describe_errors(exc.errors(include_url=False), ScenarioFile, NOUNS)}") from None


# --- reading YAML safely ----------------------------------------------------------------------------------

# YAML 1.2 core schema (what JSON and most tools read): `1e1` is a float, `010` is ten, `yes` is a string.
# PyYAML implements YAML 1.1, where `1e1` is a string, `010` is eight and `yes`/`on` are booleans.
YAML12_RESOLVERS = {
    "tag:yaml.org,2002:bool": (re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), "tTfF"),
    "tag:yaml.org,2002:int": (re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), "-+0123456789"),
    "tag:yaml.org,2002:float": (
        re.compile(
            r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
            r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
        ),
        "-+0123456789.",
    ),
}


class ScenarioLoader(yaml.SafeLoader):
    """yaml.SafeLoader that reads YAML 1.2 numbers and booleans and refuses anchors and aliases.

    Refusing anchors stops "billion laughs" (an alias bomb expands a few hundred bytes into gigabytes) at the
    first `&name`; a scenario never needs them.
    """

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise yaml.composer.ComposerError(
                None, None, "anchors and aliases (&name, *name) are not allowed in scenario files", event.start_mark
            )
        return super().compose_node(parent, index)

    def construct_yaml_int(self, node):
        text = self.construct_scalar(node)
        return int(text, 0) if text[:2] in ("0o", "0x") else int(text, 10)


ScenarioLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in YAML12_RESOLVERS]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
for _tag, (_regexp, _first) in YAML12_RESOLVERS.items():
    ScenarioLoader.add_implicit_resolver(_tag, _regexp, list(_first))
ScenarioLoader.add_constructor("tag:yaml.org,2002:int", ScenarioLoader.construct_yaml_int)
