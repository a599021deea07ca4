"""Training: losses, optimizers and schedules (registered as built-in plugins), the trainer loop, run-folder
checkpoints and evaluation metrics.

A recipe section names a registered record and its attributes, {"type": name, **attrs}; `from_section`
makes the object it describes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from cnnkit.attrs import parse_attrs
from cnnkit.errors import SpecError


def from_section(find: Callable[[str], Any], section: Mapping[str, Any], *args: Any, **kwargs: Any) -> Any:
    """`find(section["type"]).make(*args, **kwargs, **attrs)` with the record's defaults filled in,
    e.g. from_section(registry.loss, {"type": "cross_entropy"}); a bad attribute is a SpecError."""
    record = find(section["type"])
    given = {k: v for k, v in section.items() if k != "type"}
    by_name = {a.name: a for a in record.attrs}
    for key, value in given.items():
        if key not in by_name:
            raise SpecError(f"'{record.name}' has no attribute '{key}'; its attributes: "
                            f"{', '.join(by_name) or 'none'}")
        try:
            by_name[key].parse(value)
        except ValueError as error:
            raise SpecError(f"attribute '{key}' of '{record.name}': {error}") from None
    try:
        attrs = parse_attrs(record.attrs, given)
    except LookupError as error:
        raise SpecError(f"'{record.name}' needs attribute '{error.args[0]}'") from None
    return record.make(*args, **kwargs, **attrs)


def on_backend(find: Callable[[str], Any], net: Any) -> Callable[[str], Any]:
    """`find` (registry.loss or registry.optimizer) whose records are made by the network's backend's own
    implementation where it registers one (Registry.on_backend), e.g.
    from_section(on_backend(registry.loss, net), {"type": "cross_entropy"})."""
    return lambda name: net.registry.on_backend(find(name), net.backend)
