"""The exported SDL is the frontend's manual, and at least the contract."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLObjectType,
    build_schema,
    is_specified_scalar_type,
)

ROOT = Path(__file__).parents[1]
SCHEMA = build_schema((ROOT / "schema" / "schema.graphql").read_text())
CONTRACT = ROOT.parent / "shared" / "contract.md"


def _public_types() -> list[str]:
    return sorted(
        name
        for name, type_ in SCHEMA.type_map.items()
        if not name.startswith("__") and not is_specified_scalar_type(type_)
    )


@pytest.mark.parametrize("name", _public_types())
def test_every_public_type_field_and_argument_is_described(name: str) -> None:
    type_ = SCHEMA.type_map[name]
    missing = [] if type_.description else [name]
    if isinstance(type_, GraphQLObjectType | GraphQLInputObjectType):
        for field_name, field in type_.fields.items():
            if not field.description:
                missing.append(f"{name}.{field_name}")
            for arg_name, arg in getattr(field, "args", {}).items():
                if not arg.description:
                    missing.append(f"{name}.{field_name}({arg_name})")
    if isinstance(type_, GraphQLEnumType):
        missing += [f"{name}.{v}" for v, value in type_.values.items() if not value.description]
    assert not missing, f"undescribed: {missing}"


@pytest.mark.skipif(not CONTRACT.exists(), reason="the contract lives beside the project")
def test_the_sdl_contains_every_type_and_field_of_the_contract() -> None:
    sdl = CONTRACT.read_text().split("```graphql", 1)[1].split("```", 1)[0]
    for kind, name, body in re.findall(r"(type|input|enum)\s+(\w+)\s*\{([^}]*)\}", sdl):
        assert name in SCHEMA.type_map, name
        type_ = SCHEMA.type_map[name]
        if kind == "enum":
            assert isinstance(type_, GraphQLEnumType)
            assert set(body.split()) <= set(type_.values), name
            continue
        assert isinstance(type_, GraphQLObjectType | GraphQLInputObjectType), name
        for field_name in re.findall(r"^\s*(\w+)\s*[(:]", body, flags=re.MULTILINE):
            assert field_name in type_.fields, f"{name}.{field_name}"
