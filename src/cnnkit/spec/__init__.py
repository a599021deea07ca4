"""YAML specs: parsing with positions, validation against the registry, round-tripping."""

from cnnkit.spec.loader import dump_spec, load_spec, save_spec, spec_to_dict
from cnnkit.spec.model import INPUT, LayerSpec, Spec, TrainSpec
from cnnkit.spec.schema import json_schema

__all__ = ["INPUT", "LayerSpec", "Spec", "TrainSpec", "dump_spec", "json_schema", "load_spec", "save_spec",
           "spec_to_dict"]
