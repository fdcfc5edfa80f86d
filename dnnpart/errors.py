"""Exceptions for bad input. The CLI turns any DnnpartError into one line and exit status 2."""


class DnnpartError(ValueError):
    """Base class: a user-facing problem with input (file, name, parameter)."""


class UnknownNetworkError(DnnpartError):
    """A network name that is not in the zoo."""


class OnnxImportError(DnnpartError):
    """An ONNX model that is not a chain or uses an operator the layer table cannot describe."""


class ProfileError(DnnpartError):
    """A profile folder or CSV that is missing, malformed or lacks a needed layer type."""


class MissingModelError(DnnpartError):
    """A delay prediction was asked for a layer type with no fitted model."""


class InstanceError(DnnpartError):
    """A malformed optimiser instance (missing, negative or non-finite times, unequal lists)."""


class ScenarioError(DnnpartError):
    """A malformed scenario file; the message names the place in the file."""


class RuntimeConfigError(DnnpartError):
    """A bad setting of the edge runtime (serve/device): address, token or TLS file, device name, network."""


class TestbedError(DnnpartError):
    """A testbed that cannot be set up as asked: a quota, a link rate, a namespace, a cgroup, a scenario field."""

    __test__ = False  # not a pytest test class despite the name
