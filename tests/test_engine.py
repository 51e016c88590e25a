"""The engine's own guarantees, on small schemas of their own (no HTTP, no database):
bounded compiling, a bounded plan cache, counted fallbacks, strict mode, renewed
contexts for the retry, and extensions that turn the plans off instead of being skipped."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import strawberry
from graphql import parse
from strawberry.dataloader import DataLoader
from strawberry.extensions import SchemaExtension

from graphql_api.engine import Engine, EngineConfig, EngineSchema, GraphQLRequest
from graphql_api.engine.engine import UnexpectedFallback
from graphql_api.engine.plans import (
    Compiler,
    FallbackReason,
    NotCompilable,
    Plan,
    PlanCache,
    plain_attribute,
    prefetched_attribute,
)


@strawberry.type
class Leaf:
    n: int


@strawberry.type
class Tree:
    n: int

    @strawberry.field
    def left(self) -> Tree:
        return Tree(n=self.n * 2)

    @strawberry.field
    def right(self) -> Tree:
        return Tree(n=self.n * 2 + 1)

    @strawberry.field
    def leaf(self) -> Leaf:
        return Leaf(n=self.n)


@dataclass
class Ctx:
    loads: list[int] = field(default_factory=list)
    fail_first_batch: bool = False
    renewals: int = 0

    def __post_init__(self) -> None:
        self.loader = DataLoader[int, int](self._load)

    async def _load(self, keys: list[int]) -> list[int]:
        self.loads.extend(keys)
        if self.fail_first_batch:
            self.fail_first_batch = False
            raise ConnectionError("transient")
        return [key * 10 for key in keys]

    def renewed(self) -> Ctx:
        self.renewals += 1
        fresh = Ctx(loads=self.loads, renewals=self.renewals)
        return fresh


@strawberry.type
class Query:
    @strawberry.field
    def tree(self) -> Tree:
        return Tree(n=1)

    @strawberry.field
    async def loaded(self, info: strawberry.Info[Ctx, None], key: int) -> int:
        return await info.context.loader.load(key)

    @strawberry.field
    def broken(self) -> int:
        raise ValueError("a resolver's own bug")


def make_engine(**config: Any) -> Engine:
    return Engine(EngineSchema(query=Query), EngineConfig(introspection=True, **config))


def spread_bomb(levels: int, copies: int) -> str:
    """Every level spreads the next fragment ``copies`` times into ``left``."""
    fragments = []
    for i in range(levels):
        inner = f" ...F{i + 1}" * copies if i + 1 < levels else " n"
        fragments.append(f"fragment F{i} on Tree {{ left {{{inner} }} }}")
    return "{ tree {" + " ...F0" * copies + " } }\n" + "\n".join(fragments)


def compiled(query: str, max_nodes: int = 2000) -> Plan:
    schema = EngineSchema(query=Query)
    compiler = Compiler(
        schema._schema, plain_attribute(schema), prefetched_attribute(schema), max_nodes=max_nodes
    )
    return compiler.compile(parse(query), None)


def test_repeated_spreads_compile_to_the_plan_of_one_spread() -> None:
    once = compiled(spread_bomb(8, 1))
    bomb = compiled(spread_bomb(8, 20))
    assert bomb.weight == once.weight == 10  # tree + 8 x left + n


def test_a_document_over_the_node_budget_is_not_compiled() -> None:
    wide = "{ tree { " + " ".join(f"a{i}: left {{ n }}" for i in range(50)) + " } }"
    with pytest.raises(NotCompilable) as refused:
        compiled(wide, max_nodes=60)
    assert refused.value.reason is FallbackReason.TOO_LARGE
    assert compiled(wide, max_nodes=200).weight == 1 + 50 * 2


async def test_over_budget_documents_answer_like_the_reference_path() -> None:
    engine, reference = (
        make_engine(max_plan_nodes=10, max_aliases=100),
        make_engine(compiled=False, max_aliases=100),
    )
    wide = "{ tree { " + " ".join(f"a{i}: left {{ n }}" for i in range(20)) + " } }"
    answer = await engine.execute(GraphQLRequest(query=wide), Ctx())
    assert (
        answer.formatted()
        == (await reference.execute(GraphQLRequest(query=wide), Ctx())).formatted()
    )
    assert engine.stats.fallbacks[FallbackReason.TOO_LARGE] == 1
    assert engine.stats.plan_hits == 0


def test_the_plan_cache_is_bounded_by_weight_least_recently_used_out() -> None:
    schema = EngineSchema(query=Query)
    cache = PlanCache(
        Compiler(schema._schema, plain_attribute(schema), prefetched_attribute(schema)),
        max_weight=100,
    )
    texts = [f"{{ tree {{ a{i}: left {{ n }} }} }}" for i in range(50)]  # weight 3 each
    for text in texts:
        cache.get(text, None, parse(text))
        cache.get(texts[0], None, parse(texts[0]))  # keep the first one recently used
        assert cache.weight <= 100
    assert len(cache) == 33
    assert (texts[0], None, ()) in cache._entries
    assert (texts[1], None, ()) not in cache._entries
    assert (texts[-1], None, ()) in cache._entries


async def test_every_fallback_is_counted_by_its_reason() -> None:
    engine = make_engine()
    ctx = Ctx()
    await engine.execute(GraphQLRequest(query="{ tree { n } }"), ctx)
    await engine.execute(GraphQLRequest(query="{ tree { n @include(if: true) } }"), ctx)
    await engine.execute(
        GraphQLRequest(query="query Q { tree { n } } query R { tree { n } }", operation_name="R"),
        ctx,
    )
    await engine.execute(GraphQLRequest(query="{ __schema { queryType { name } } }"), ctx)
    await engine.execute(GraphQLRequest(query="{ broken }"), ctx)
    await engine.execute(
        GraphQLRequest(query="query($k: Int!) { loaded(key: $k) }", variables={"k": "x"}), ctx
    )
    assert engine.stats.plan_hits == 3
    assert engine.stats.fallbacks == {
        FallbackReason.INTROSPECTION: 1,
        FallbackReason.ERROR: 1,
        FallbackReason.VARIABLES: 1,
    }


async def test_the_retry_after_a_plan_attempt_gets_a_renewed_context() -> None:
    # The plan's attempt fails on a transient error inside a DataLoader batch. Sharing the
    # loader would hand the retry that cached failure; the retry must start afresh, as if
    # the plan had never run.
    engine = make_engine()
    ctx = Ctx(fail_first_batch=True)
    result = await engine.execute(GraphQLRequest(query="{ loaded(key: 4) }"), ctx)
    assert result.formatted() == {"data": {"loaded": 40}}
    assert ctx.renewals == 1
    assert engine.stats.fallbacks == {FallbackReason.ERROR: 1}


async def test_strict_mode_turns_a_plan_machinery_failure_into_an_error() -> None:
    class Exploding(PlanCache):
        def get(self, *args: Any) -> Any:
            raise KeyError("a bug in the compiler")

    lenient, strict = make_engine(), make_engine(strict=True)
    for engine in (lenient, strict):
        assert engine.plans is not None
        engine.plans = Exploding(engine.plans.compiler)
    result = await lenient.execute(GraphQLRequest(query="{ tree { n } }"), Ctx())
    assert result.formatted() == {"data": {"tree": {"n": 1}}}
    assert lenient.stats.fallbacks == {FallbackReason.UNEXPECTED: 1}
    with pytest.raises(UnexpectedFallback):
        await strict.execute(GraphQLRequest(query="{ tree { n } }"), Ctx())


async def test_schema_extensions_turn_the_plans_off_instead_of_being_skipped() -> None:
    calls: list[str] = []

    class Audit(SchemaExtension):
        def on_execute(self) -> Iterator[None]:
            calls.append("execute")
            yield

    engine = Engine(EngineSchema(query=Query, extensions=[Audit]), EngineConfig())
    assert engine.plans is None
    for _ in range(2):
        result = await engine.execute(GraphQLRequest(query="{ tree { n } }"), Ctx())
        assert result.formatted() == {"data": {"tree": {"n": 1}}}
    assert calls == ["execute", "execute"]


@pytest.mark.parametrize(
    ("config", "query", "rule"),
    [
        ({"max_depth": 2}, "{ tree { left { left { n } } } }", "depth"),
        ({"max_aliases": 1}, "{ tree { a: n b: n } }", "aliases"),
        ({"max_tokens": 20}, "{ tree { " + "n " * 30 + "} }", "tokens"),
        ({"max_cost": 3}, "{ tree { left { left { n } } } }", "cost"),
        ({"max_duplicate_fields": 2}, "{ tree { n n n } }", "duplicate_fields"),
        (
            {"max_directives": 1},
            "{ tree { n @skip(if: false) @include(if: true) } }",
            "directives",
        ),
        ({}, "{ tree { n @nope } }", "directive_use"),
        ({"introspection": False}, "{ __schema { queryType { name } } }", "introspection"),
        (
            {},
            "{ __schema { types { fields { type { fields { type { fields { name } } } } } } } }",
            "introspection_depth",
        ),
    ],
)
async def test_a_refused_document_names_the_limit_that_refused_it(
    config: dict[str, Any], query: str, rule: str
) -> None:
    engine = Engine(EngineSchema(query=Query), EngineConfig(**{"introspection": True, **config}))
    for _ in range(2):  # the verdict is cached; the rule is reported every time
        result = await engine.execute(GraphQLRequest(query=query), Ctx())
        assert set(result.codes) == {"BAD_USER_INPUT"}, result.formatted()
        assert result.limit_rule == rule


async def test_a_page_size_from_variables_is_refused_as_cost() -> None:
    @strawberry.type
    class Paged:
        @strawberry.field
        def trees(self, first: int = 20) -> list[Tree]:
            return [Tree(n=i) for i in range(first)]

    engine = Engine(EngineSchema(query=Paged), EngineConfig(max_cost=50))
    query = "query($n: Int) { trees(first: $n) { n } }"
    ok = await engine.execute(GraphQLRequest(query=query, variables={"n": 3}), Ctx())
    assert ok.limit_rule is None and not ok.errors
    refused = await engine.execute(GraphQLRequest(query=query, variables={"n": 100}), Ctx())
    assert refused.codes == ["BAD_USER_INPUT"]
    assert refused.limit_rule == "cost"


async def test_other_errors_name_no_limit() -> None:
    engine = make_engine()
    for query in ("{ tree { nope } }", "{ tree {", "{ broken }"):
        result = await engine.execute(GraphQLRequest(query=query), Ctx())
        assert result.errors and result.limit_rule is None
