"""One exception family for everything a user can get wrong.

Every message says what was wrong, where (file:line:column, layer name) and what would be right, so the
CLI can print it as one line and exit 2 without a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass


class CnnkitError(Exception):
    """Base of every error cnnkit raises on purpose."""


@dataclass(frozen=True)
class Mark:
    """A position in a spec file, 1-based, as a user's editor shows it."""

    line: int
    column: int


class SpecError(CnnkitError):
    """A spec that cannot be used: bad YAML, unknown layer, wrong attribute, shapes that do not fit."""

    def __init__(self, message: str, *, source: str | None = None, mark: Mark | None = None,
                 layer: str | None = None) -> None:
        self.message = message
        self.source = source
        self.mark = mark
        self.layer = layer
        super().__init__(self._format())

    def _format(self) -> str:
        where = self.source or "<spec>"
        if self.mark is not None:
            where += f":{self.mark.line}:{self.mark.column}"
        layer = f" layer '{self.layer}':" if self.layer else ""
        return f"{where}:{layer} {self.message}"

    def located(self, *, source: str | None = None, mark: Mark | None = None,
                layer: str | None = None) -> SpecError:
        """The same error with missing location details filled in."""
        return SpecError(self.message, source=self.source or source, mark=self.mark or mark,
                         layer=self.layer or layer)


class ShapeError(CnnkitError):
    """Shapes that do not fit a layer; the graph adds the layer and spec location."""


class PluginError(CnnkitError):
    """A plugin that registered something unusable; names the plugin and the problem."""


class RegistryError(CnnkitError):
    """A look-up of a layer type, backend, loss, optimizer, schedule or dataset that does not exist."""


class BackendError(CnnkitError):
    """A backend that is unavailable or was handed arguments it cannot take."""


class DataError(CnnkitError):
    """A dataset file that is missing or holds the wrong shapes, dtypes or labels."""


class CheckpointError(CnnkitError):
    """A checkpoint that is missing, truncated, corrupt or not written by cnnkit."""


class ExportError(CnnkitError):
    """A network that cannot be written as ONNX, or an ONNX file that cannot be verified or inspected."""
