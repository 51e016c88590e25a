"""The compiled plans answer exactly what Strawberry's executor answers: a differential
property test over the exported SDL.

hypothesis-graphql writes queries from schema/schema.graphql; a rewriter then moves parts
of them into named and inline fragments (spread once or twice), gives fields aliases,
repeats fields, turns literal arguments into variables (sometimes sent as floats, sometimes
left to their defaults) and adds ``@include``/``@skip``. Every query runs as anonymous, a
user, another user and an admin, against the app with plans and against the app without
(``COMPILED_EXECUTION=false``), on the same data: the data, and the error codes and paths,
must be the same. The app with plans runs in strict mode, so a plan that fails in a way
the plan machinery did not expect fails the test rather than falling back quietly.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from graphql import (
    ArgumentNode,
    BooleanValueNode,
    DirectiveNode,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLNamedType,
    GraphQLObjectType,
    InlineFragmentNode,
    NamedTypeNode,
    NameNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableDefinitionNode,
    VariableNode,
    build_schema,
    get_named_type,
    parse,
    parse_type,
    print_ast,
    value_from_ast_untyped,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import queries

from graphql_api.app import create_app
from graphql_api.auth.keys import KeySet
from graphql_api.container import Container
from graphql_api.services.auth import Client
from tests.conftest import ADMIN_EMAIL, FakeClock, make_settings
from tests.fake_google import FakeGoogle

SDL = (Path(__file__).parents[1] / "schema" / "schema.graphql").read_text()
SCHEMA = build_schema(SDL)
EXAMPLES = 300
DIFFERENTIAL = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
IDENTITIES = ("anonymous", "user", "other", "admin")


# --- the rewriter ------------------------------------------------------------------


class Rewrite:
    """One random rewrite of a document, drawing its choices from Hypothesis."""

    def __init__(self, draw: st.DrawFn) -> None:
        self.draw = draw
        self.names = itertools.count()
        self.fragments: list[FragmentDefinitionNode] = []
        self.variables: list[VariableDefinitionNode] = []
        self.values: dict[str, Any] = {}

    def choose(self, weight: float) -> bool:
        return self.draw(st.floats(0, 1)) < weight

    def document(self, document: DocumentNode) -> DocumentNode:
        operation = document.definitions[0]
        assert isinstance(operation, OperationDefinitionNode)
        query_type = SCHEMA.query_type
        assert query_type is not None
        selection_set = self.selections(operation.selection_set, query_type)
        rewritten = OperationDefinitionNode(
            operation=operation.operation,
            name=NameNode(value="Q") if self.choose(0.5) else None,
            variable_definitions=tuple(self.variables),
            directives=(),
            selection_set=selection_set,
        )
        return DocumentNode(definitions=(rewritten, *self.fragments))

    def selections(
        self, selection_set: SelectionSetNode, parent: GraphQLNamedType
    ) -> SelectionSetNode:
        assert isinstance(parent, GraphQLObjectType)
        out: list[Any] = []
        for selection in selection_set.selections:
            assert isinstance(selection, FieldNode)
            field = self.field(selection, parent)
            placement = self.draw(st.sampled_from(["plain", "plain", "inline", "named", "twice"]))
            if placement == "plain":
                out.append(field)
            elif placement == "inline":
                out.append(
                    InlineFragmentNode(
                        type_condition=NamedTypeNode(name=NameNode(value=parent.name))
                        if self.choose(0.7)
                        else None,
                        directives=self.conditions(),
                        selection_set=SelectionSetNode(selections=(field,)),
                    )
                )
            else:
                name = f"F{next(self.names)}"
                self.fragments.append(
                    FragmentDefinitionNode(
                        name=NameNode(value=name),
                        type_condition=NamedTypeNode(name=NameNode(value=parent.name)),
                        directives=(),
                        selection_set=SelectionSetNode(selections=(field,)),
                    )
                )
                copies = 2 if placement == "twice" else 1
                out.extend(
                    FragmentSpreadNode(name=NameNode(value=name), directives=self.conditions())
                    for _ in range(copies)
                )
            if placement == "plain" and self.choose(0.1):
                out.append(field)  # the same field twice: merged
        return SelectionSetNode(selections=tuple(out))

    def field(self, node: FieldNode, parent: GraphQLObjectType) -> FieldNode:
        name = node.name.value
        selection_set = None
        arguments = tuple(node.arguments or ())
        if name != "__typename":
            definition = parent.fields[name]
            if node.selection_set is not None:
                selection_set = self.selections(node.selection_set, get_named_type(definition.type))
            arguments = tuple(
                self.argument(arg, definition.args[arg.name.value].type) for arg in arguments
            )
        alias = NameNode(value=f"k{next(self.names)}") if self.choose(0.3) else node.alias
        return FieldNode(
            alias=alias,
            name=node.name,
            arguments=arguments,
            directives=self.conditions(),
            selection_set=selection_set,
        )

    def argument(self, argument: ArgumentNode, type_: Any) -> ArgumentNode:
        if not self.choose(0.5):
            return argument
        variable = f"v{next(self.names)}"
        value = value_from_ast_untyped(argument.value)
        type_text = str(type_)
        default: Any = None
        if self.choose(0.25) and not type_text.endswith("!"):
            default = argument.value  # left to the variable's default (a literal: constant)
        else:
            if isinstance(value, int) and not isinstance(value, bool) and self.choose(0.3):
                value = float(value)  # GraphQL coerces 5.0 to the Int 5
            self.values[variable] = value
        self.variables.append(
            VariableDefinitionNode(
                variable=VariableNode(name=NameNode(value=variable)),
                type=parse_type(type_text),
                default_value=default,
                directives=(),
            )
        )
        return ArgumentNode(name=argument.name, value=VariableNode(name=NameNode(value=variable)))

    def conditions(self) -> tuple[DirectiveNode, ...]:
        if not self.choose(0.15):
            return ()
        directive = self.draw(st.sampled_from(["include", "skip"]))
        if self.choose(0.5):
            value: Any = BooleanValueNode(value=self.draw(st.booleans()))
        else:
            variable = f"b{next(self.names)}"
            self.values[variable] = self.draw(st.booleans())
            self.variables.append(
                VariableDefinitionNode(
                    variable=VariableNode(name=NameNode(value=variable)),
                    type=parse_type("Boolean!"),
                    default_value=None,
                    directives=(),
                )
            )
            value = VariableNode(name=NameNode(value=variable))
        return (
            DirectiveNode(
                name=NameNode(value=directive),
                arguments=(ArgumentNode(name=NameNode(value="if"), value=value),),
            ),
        )


@st.composite
def rewritten_queries(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    query = draw(queries(SDL, allow_x00=False))
    rewrite = Rewrite(draw)
    document = rewrite.document(parse(query))
    return print_ast(document), rewrite.values


# --- the two apps ------------------------------------------------------------------


@dataclass
class Twin:
    loop: asyncio.AbstractEventLoop
    planned: httpx.AsyncClient
    reference: httpx.AsyncClient
    tokens: dict[str, str | None]
    engine: Any

    def answer(self, client: httpx.AsyncClient, identity: str, query: str, variables: Any) -> Any:
        token = self.tokens[identity]
        headers = {"authorization": f"Bearer {token}"} if token else {}
        response = self.loop.run_until_complete(
            client.post("/graphql", json={"query": query, "variables": variables}, headers=headers)
        )
        assert response.status_code in (200, 400), response.text
        body = response.json()
        errors = sorted(
            (e["extensions"]["code"], tuple(e.get("path") or ()), e["message"])
            for e in body.get("errors", [])
        )
        return response.status_code, body.get("data"), errors


@pytest.fixture
def twin(database_url: str, fake_google: FakeGoogle, keys: KeySet) -> Iterator[Twin]:
    loop = asyncio.new_event_loop()
    stack: list[Any] = []

    def app_for(**overrides: Any) -> tuple[httpx.AsyncClient, Container, Any]:
        container = Container(
            make_settings(database_url, fake_google, **overrides), clock=FakeClock(), keys=keys
        )
        app = create_app(container=container)
        lifespan = app.lifespan()
        loop.run_until_complete(lifespan.__aenter__())
        stack.append(lifespan)
        transport = httpx.ASGITransport(app=app)
        return httpx.AsyncClient(transport=transport, base_url="http://testserver"), container, app

    planned, container, app = app_for()
    reference, _, _ = app_for(compiled_execution=False)

    async def seed() -> dict[str, str | None]:
        tokens: dict[str, str | None] = {"anonymous": None}
        for identity, email in (
            ("user", "user@example.com"),
            ("other", "other@example.com"),
            ("admin", ADMIN_EMAIL),
        ):
            signed_in = await container.auth.dev_sign_in(
                email=email, client=Client("127.0.0.1", None)
            )
            tokens[identity] = signed_in.access.token
            for n in range(3):
                await container.categories.create(
                    actor_id=signed_in.user.id, name=f"{identity}-{n}", description=None
                )
        return tokens

    tokens = loop.run_until_complete(seed())
    try:
        yield Twin(loop, planned, reference, tokens, app.state.engine)
    finally:
        for client in (planned, reference):
            loop.run_until_complete(client.aclose())
        for lifespan in reversed(stack):
            loop.run_until_complete(lifespan.__aexit__(None, None, None))
        loop.close()


def test_plans_answer_every_generated_query_like_the_executor(twin: Twin) -> None:
    @DIFFERENTIAL
    @given(rewritten_queries())
    def run(example: tuple[str, dict[str, Any]]) -> None:
        query, variables = example
        for identity in IDENTITIES:
            planned = twin.answer(twin.planned, identity, query, variables)
            reference = twin.answer(twin.reference, identity, query, variables)
            assert planned == reference, (identity, query, variables)

    run()
    # The plans were exercised, not only the fallbacks.
    assert twin.engine.stats.plan_hits > EXAMPLES, twin.engine.stats
