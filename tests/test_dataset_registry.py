"""Readers register themselves and hold their dataset's facts; the params schema lists exactly
the registered readers and what their protocols can take, so neither can change alone."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import jsonschema
import pytest
import yaml

import ferbench.datasets as datasets_package
from ferbench.data import protocols
from ferbench.config import SCHEMA_PATH
from ferbench.datasets import READERS, Reader, dataset_facts, dataset_names, get_reader
from ferbench.datasets.base import EMOTIONS
from ferbench.errors import FerbenchError

SCHEMA = yaml.safe_load(SCHEMA_PATH.read_text())
PROTOCOL_SCHEMA = SCHEMA["properties"]["datasets"]["additionalProperties"]["properties"]["protocol"]
NAMES = dataset_names()


def _package_readers() -> dict[str, type[Reader]]:
    """Every Reader subclass with its own ``name`` found in the package's modules."""
    found = {}
    for info in pkgutil.iter_modules(datasets_package.__path__):
        module = importlib.import_module(f"ferbench.datasets.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, Reader) and cls.__module__ == module.__name__ and "name" in cls.__dict__:
                found[cls.name] = cls
    return found


def test_every_reader_of_the_package_is_registered_without_a_list():
    assert NAMES == sorted(_package_readers())
    assert all(READERS[name] is cls for name, cls in _package_readers().items())


def test_schema_dataset_names_are_the_registered_readers():
    assert sorted(SCHEMA["$defs"]["dataset_name"]["enum"]) == NAMES


def test_schema_protocol_enums_are_what_the_readers_and_protocols_take():
    props = PROTOCOL_SCHEMA["properties"]
    assert sorted(props) == sorted(protocols.PROTOCOL_KEYS)
    assert props["kind"]["enum"] == list(protocols.KINDS)
    assert props["selection"]["enum"] == list(protocols.SELECTIONS)
    assert props["task"]["enum"] == list(protocols.TASKS)
    sizes = {size for name in NAMES for size in READERS[name].class_sets}
    assert sorted(props["classes"]["enum"]) == sorted(sizes)


@pytest.mark.parametrize("name", NAMES)
def test_reader_declares_its_facts(name):
    cls = READERS[name]
    own = vars(cls)
    for fact in ("name", "kind", "task", "has_landmarks", "default_protocol"):
        assert fact in own, f"{name}: {fact} is not declared on {cls.__name__}"
    assert cls.kind in ("sequence", "image") and cls.has_sequences == (cls.kind == "sequence")
    assert cls.task in ("classification", "va", "both")
    assert isinstance(cls.has_landmarks, bool) and isinstance(cls.fixed_camera, bool)
    default = cls.default_protocol
    jsonschema.Draft202012Validator(PROTOCOL_SCHEMA).validate(default)
    assert cls.task in ("both", default["task"])
    if cls.task != "va":
        assert "class_sets" in own, f"{name}: class_sets is not declared on {cls.__name__}"
        assert default["classes"] in cls.class_sets
    for size, members in cls.class_sets.items():
        assert len(set(members)) == size and set(members) <= set(EMOTIONS)


@pytest.mark.parametrize("name", NAMES)
def test_protocols_read_the_facts_from_the_reader(name):
    cls = dataset_facts(name)
    assert cls is READERS[name] and isinstance(get_reader(name), cls)
    resolved = protocols.resolve_protocol(name)
    assert {k: resolved[k] for k in cls.default_protocol} == cls.default_protocol
    for size in cls.class_sets:
        assert set(protocols.class_list(name, size)) == set(cls.class_sets[size])


def test_a_name_without_reader_gets_the_base_facts():
    assert dataset_facts("fake") is Reader
    assert protocols.resolve_protocol("fake")["class_names"] == protocols.class_list("fake", 7)
    known = "afewva, affectnet, affwild2, ckplus, fer2013, jaffe, mmi, oulu"
    with pytest.raises(FerbenchError, match=f"unknown dataset 'fake'; known: {known}$"):
        get_reader("fake")


def test_readers_outside_the_package_stay_out_and_names_are_unique():
    class Elsewhere(Reader):
        name = "elsewhere"
        kind = "image"
        task = "classification"

    assert "elsewhere" not in READERS and Elsewhere.has_sequences is False
    with pytest.raises(TypeError, match="'ckplus' registered twice"):
        type("Impostor", (Reader,), {"name": "ckplus", "__module__": "ferbench.datasets.impostor"})
    assert dataset_names() == NAMES


def test_schema_method_keys_are_declared_by_some_method_class():
    """The schema names a method key only once a method class declares it in ``defaults``."""
    from ferbench.config import METHOD_BLOCK_KEYS, TRAIN_KEYS
    from ferbench.methods import get_method, method_names

    block = SCHEMA["$defs"]["method_block"]
    declared = {key for name in method_names() for key in get_method(name).all_defaults()}
    known = set(TRAIN_KEYS) | set(METHOD_BLOCK_KEYS) | declared
    assert set(block.get("properties", {})) <= known
