"""The engine: one entry point from a GraphQL request and a context to a result.

Transports (HTTP, WebSocket) hand it a ``GraphQLRequest`` and the context their context
getter built; it resolves trusted document ids, parses and validates once per text (with
the query limits first), then runs the operation. Trusted documents are parsed, validated
and planned once, when the engine is built: a manifest entry that fails stops the start.

Read-only queries run from a compiled plan (``plans.py``) when one exists; everything
else, and every plan that cannot finish (an error to report, a null where the schema
says non-null), runs through Strawberry's own executor, the reference path, with a
renewed context. Every such fallback is counted by reason; in strict mode (the test
suite) a fallback the plan machinery did not expect fails the request instead of hiding
a bug.

Errors come out mapped to the contract's codes (``errors.py``), whichever path ran.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import strawberry
from graphql import (
    ASTValidationRule,
    DocumentNode,
    ExecutionResult,
    GraphQLError,
    GraphQLSyntaxError,
    OperationDefinitionNode,
    OperationType,
    parse,
    specified_rules,
    subscribe,
)
from strawberry.exceptions import MissingQueryError
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import ExecutionContext
from strawberry.types.graphql import OperationType as StrawberryOperationType

from graphql_api.engine.documents import (
    MULTIPLE_OPERATIONS,
    CachedDocument,
    CachedValidation,
    DocumentCache,
    check_variables,
)
from graphql_api.engine.errors import client_error
from graphql_api.engine.limits import (
    TOKENS_RULE,
    DirectiveUseRule,
    IntrospectionDepthRule,
    MaxAliasesRule,
    MaxCostRule,
    MaxDepthRule,
    MaxDirectivesRule,
    MaxDuplicateFieldsRule,
    NoIntrospectionRule,
    QueryLimitError,
    token_limit_hit,
)
from graphql_api.engine.plans import (
    DEFAULT_MAX_NODES,
    Compiler,
    Fallback,
    FallbackReason,
    Plan,
    PlanCache,
    condition_variables,
    plain_attribute,
    prefetched_attribute,
    select_operation,
)
from graphql_api.engine.request import GraphQLRequest
from graphql_api.engine.trusted import TrustedDocuments, TrustedEntry, TrustMode, error_line

logger = logging.getLogger("graphql_api.engine")

CANNOT_RUN = "The operation cannot be run (check operationName)."
HTTP_OPERATIONS = frozenset({OperationType.QUERY, OperationType.MUTATION})
# The same, as Strawberry names them.
_STRAWBERRY_HTTP_OPERATIONS = frozenset(
    {StrawberryOperationType.QUERY, StrawberryOperationType.MUTATION}
)


class EngineSchema(strawberry.Schema):
    """A Strawberry schema whose errors the engine maps and logs (once, with the request
    id), instead of Strawberry logging every error on its own."""

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        return


class UnexpectedFallback(AssertionError):
    """Strict mode: the plan machinery failed in a way it should not (a bug)."""


@dataclass(frozen=True, slots=True)
class EngineConfig:
    max_depth: int = 10
    max_aliases: int = 15
    max_tokens: int = 2000
    max_cost: int = 5000
    max_duplicate_fields: int = 20
    max_directives: int = 50
    introspection: bool = False
    hide_hints: bool = True
    compiled: bool = True
    strict: bool = False
    max_plan_nodes: int = DEFAULT_MAX_NODES


def validation_rules(config: EngineConfig) -> list[type[ASTValidationRule]]:
    """The query limits, then GraphQL's own rules, built once per engine.

    The limits replace Strawberry's ``QueryDepthLimiter`` and ``MaxAliasesLimiter``,
    which walk every fragment spread path (exponential in a 1 KiB document).
    """
    rules: list[type[ASTValidationRule]] = [
        MaxDepthRule.with_limit(config.max_depth),
        MaxAliasesRule.with_limit(config.max_aliases),
        MaxDuplicateFieldsRule.with_limit(config.max_duplicate_fields),
        MaxDirectivesRule.with_limit(config.max_directives),
        DirectiveUseRule,
        MaxCostRule.with_limit(config.max_cost),
    ]
    rules.extend(specified_rules)
    # Circular introspection (types { fields { type { fields ... ) where it is on.
    rules.append(IntrospectionDepthRule)
    if not config.introspection:
        rules.append(NoIntrospectionRule)
    return rules


@dataclass(slots=True)
class Result:
    """What the engine answers; ``errors`` already carry the contract's codes."""

    data: dict[str, Any] | None
    errors: list[GraphQLError] = field(default_factory=list)
    # 200, or 400 when the request was refused before any operation could run.
    status: int = 200
    operation_type: str | None = None
    operation_name: str | None = None
    document_id: str | None = None
    # The text came from a trusted document (so its operation name is from a manifest).
    trusted: bool = False
    # The query limit that refused the document (``QueryLimitRule.rule``), if one did.
    limit_rule: str | None = None

    @property
    def codes(self) -> list[str]:
        return [str((error.extensions or {}).get("code")) for error in self.errors]

    def formatted(self) -> dict[str, Any]:
        body: dict[str, Any] = {"data": self.data}
        if self.errors:
            body["errors"] = [error.formatted for error in self.errors]
        return body


def refusal(message: str, code: str, status: int = 400) -> Result:
    return Result(None, [GraphQLError(message, extensions={"code": code})], status=status)


class Tracer(Protocol):
    """Where the engine opens a span around work worth seeing in a trace."""

    def span(self, name: str) -> AbstractContextManager[object]: ...


@dataclass
class EngineStats:
    """Operational counters; ``listeners`` (e.g. metrics) hear of every fallback."""

    plan_hits: int = 0
    fallbacks: Counter[FallbackReason] = field(default_factory=Counter)
    listeners: list[Callable[[FallbackReason], None]] = field(default_factory=list)

    def fallback(self, reason: FallbackReason) -> None:
        self.fallbacks[reason] += 1
        for listener in self.listeners:
            listener(reason)


class Engine:
    def __init__(
        self,
        schema: strawberry.Schema,
        config: EngineConfig,
        *,
        trusted: TrustedDocuments | None = None,
    ) -> None:
        self.schema = schema
        self.config = config
        self.trusted = trusted or TrustedDocuments(TrustMode.OFF)
        self.graphql_schema = schema._schema
        self.documents = DocumentCache(rules=validation_rules(config), max_tokens=config.max_tokens)
        # Extensions (and custom directives, which Strawberry runs as one) have hooks that
        # only Strawberry's own path runs: with any, every request takes that path.
        self.foreign_extensions = bool(schema.extensions) or bool(schema.directives)
        documents = self.documents
        schema.extensions = (*schema.extensions, lambda: CachedValidation(documents))
        self.plans: PlanCache | None = None
        if config.compiled and not self.foreign_extensions:
            compiler = Compiler(
                self.graphql_schema,
                plain_attribute(schema),
                prefetched_attribute(schema),
                max_nodes=config.max_plan_nodes,
            )
            self.plans = PlanCache(compiler)
        elif config.compiled:
            logger.warning(
                "compiled plans are off: the schema has extensions or directives they cannot run",
                extra={"event": "plans_disabled"},
            )
        self.stats = EngineStats()
        # Tracing, when on: a span around each parse and validation (cache misses only).
        self.tracer: Tracer | None = None
        for entry in self.trusted.entries.values():
            verdict = self.verify(entry)
            self.documents.pin(entry.text, verdict)
            self._precompile(entry.text, verdict.document)

    # --- trusted documents ----------------------------------------------------------

    def verify(self, entry: TrustedEntry) -> CachedDocument:
        """The verdict on a trusted document as a request would get it: its id, its parse
        (token limit included), Apollo's stated name and type, then every rule and query
        limit. Raises ``ManifestError``: a document that would fail every request must
        stop the start, not wait for its first user."""
        entry.check_id()
        try:
            document = parse(entry.text, max_tokens=self.config.max_tokens)
        except GraphQLSyntaxError as error:
            raise entry.problem(f"does not parse: {error_line(error)}") from error
        entry.check_operation(document)
        verdict = self.documents.check(self.graphql_schema, document)
        if verdict.errors:
            raise entry.problem("; ".join(error_line(error) for error in verdict.errors[:3]))
        return verdict

    def _precompile(self, query: str, document: DocumentNode) -> None:
        """Plan each query of a trusted document now, so its first request runs from one.
        Documents whose ``@include``/``@skip`` read variables have a plan per combination
        of values: those compile on first use."""
        if self.plans is None or condition_variables(document):
            return
        for definition in document.definitions:
            if (
                isinstance(definition, OperationDefinitionNode)
                and definition.operation is OperationType.QUERY
            ):
                name = definition.name.value if definition.name else None
                try:
                    self.plans.get(query, name, document)
                except Exception as exc:
                    self._unexpected(exc)

    # --- requests -----------------------------------------------------------------

    def admit(self, request: GraphQLRequest) -> Result | None:
        """The refusal of a request that names no runnable document (an unknown id, a
        free-form query where only trusted documents run), before any parsing, and before
        the transport spends anything on its context."""
        resolved = self._document_text(request)
        if isinstance(resolved, Result):
            resolved.document_id = request.document_id
            return resolved
        return None

    async def execute(self, request: GraphQLRequest, context: Any) -> Result:
        """Run a query or mutation (HTTP's operations)."""
        result = await self._execute(request, context)
        # Metrics and logs name the document on every path, refusals included.
        result.document_id = request.document_id
        return result

    async def _execute(self, request: GraphQLRequest, context: Any) -> Result:
        resolved = self._document_text(request)
        if isinstance(resolved, Result):
            return resolved
        query = resolved
        result = await self._run(query, request, context)
        # The text came from a manifest (a client may also send a query with an unknown id).
        result.trusted = (
            request.document_id is not None
            and self.trusted.mode is not TrustMode.OFF
            and self.trusted.get(request.document_id) is not None
        )
        return result

    async def _run(self, query: str, request: GraphQLRequest, context: Any) -> Result:
        if self.foreign_extensions:
            return await self._strawberry(query, request, context)
        entry = self._entry(query)
        if isinstance(entry, Result):
            return entry
        if entry.errors:
            return self._result(None, list(entry.errors), context)
        operation = select_operation(entry.document, request.operation_name)
        if operation is None:
            if request.operation_name is None:
                return self._result(None, [GraphQLError(MULTIPLE_OPERATIONS)], context)
            return refusal(CANNOT_RUN, "BAD_USER_INPUT")
        meta: dict[str, Any] = {
            "operation_type": operation.operation.value,
            "operation_name": operation.name.value if operation.name else None,
        }
        if operation.operation not in HTTP_OPERATIONS:
            result = refusal(CANNOT_RUN, "BAD_USER_INPUT")
            result.operation_type = operation.operation.value
            return result
        if operation.operation is OperationType.QUERY:
            data = await self._plan(query, entry, operation, request, context)
            if data is not None:
                return Result(data, **meta)
            context = _renewed(context)
        else:
            self.stats.fallback(FallbackReason.NOT_QUERY)
        result = await self._strawberry(query, request, context)
        result.operation_type = meta["operation_type"]
        result.operation_name = meta["operation_name"]
        return result

    async def subscribe(
        self, request: GraphQLRequest, context: Any
    ) -> Result | AsyncGenerator[Result, None]:
        """Run an operation for a streaming transport (WebSocket ``subscribe``): a
        subscription gives its results one by one; a query or mutation, or a request that
        cannot start (refused, invalid, or an error creating the stream), one ``Result``."""
        resolved = self._document_text(request)
        if isinstance(resolved, Result):
            return resolved
        if self.foreign_extensions:
            return await self._strawberry_stream(resolved, request, context)
        entry = self._entry(resolved)
        if isinstance(entry, Result):
            return entry
        meta: dict[str, Any] = {"document_id": request.document_id}
        if entry.errors:
            return self._result(None, list(entry.errors), context, **meta)
        operation = select_operation(entry.document, request.operation_name)
        if operation is None or operation.operation is not OperationType.SUBSCRIPTION:
            return await self.execute(request, context)
        meta["operation_type"] = operation.operation.value
        meta["operation_name"] = operation.name.value if operation.name else None
        _, limit_errors = check_variables(self.graphql_schema, entry, operation, request.variables)
        if limit_errors:
            return self._result(None, limit_errors, context, **meta)
        stream = subscribe(
            self.graphql_schema,
            entry.document,
            context_value=context,
            variable_values=request.variables,
            operation_name=request.operation_name,
        )
        if inspect.isawaitable(stream):
            stream = await stream
        if isinstance(stream, ExecutionResult):
            return self._result(stream.data, list(stream.errors or ()), context, **meta)
        return self._results(stream, context, meta)

    async def _results(
        self, stream: AsyncIterator[ExecutionResult], context: Any, meta: dict[str, Any]
    ) -> AsyncGenerator[Result, None]:
        try:
            async for result in stream:
                yield self._result(result.data, list(result.errors or ()), context, **meta)
        finally:
            close = getattr(stream, "aclose", None)
            if close is not None:
                await close()

    async def _strawberry_stream(
        self, query: str, request: GraphQLRequest, context: Any
    ) -> Result | AsyncGenerator[Result, None]:
        """Strawberry's own streaming path, for schemas whose extensions must run."""
        try:
            stream = await self.schema.stream(
                query,
                variable_values=request.variables,
                context_value=context,
                operation_name=request.operation_name,
            )
        except (MissingQueryError, CannotGetOperationTypeError, InvalidOperationTypeError):
            return refusal(CANNOT_RUN, "BAD_USER_INPUT")

        async def results() -> AsyncGenerator[Result, None]:
            async with contextlib.aclosing(stream):
                async for result in stream:
                    errors = list(getattr(result, "errors", None) or ())
                    yield self._result(getattr(result, "data", None), errors, context)

        return results()

    def _document_text(self, request: GraphQLRequest) -> str | Result:
        """The text to run, or the refusal of a request that names no runnable document.

        Nothing here parses: under ``require`` a free-form query costs a dictionary lookup,
        whatever it holds. ``GraphQLRequest`` has already checked that a query sent with
        an id is the text the id names.
        """
        mode = self.trusted.mode
        if request.document_id is not None:
            text = self.trusted.get(request.document_id) if mode is not TrustMode.OFF else None
            if text is not None:
                return text
            if request.query is not None and mode is not TrustMode.REQUIRE:
                # The client sent the text as well (Apollo's automatic persisted queries
                # retry this way): it runs as the free-form query it is, and is not
                # registered under its id.
                return request.query
            if mode is TrustMode.OFF:
                return refusal(
                    "This service runs no trusted documents: send the query.",
                    "PERSISTED_QUERY_NOT_FOUND",
                )
            return refusal(
                "Unknown document id; documents are not registered at run time.",
                "PERSISTED_QUERY_NOT_FOUND",
            )
        if mode is TrustMode.REQUIRE:
            return refusal(
                "Only trusted documents run here: send a documentId.",
                "TRUSTED_DOCUMENT_REQUIRED",
            )
        assert request.query is not None  # noqa: S101 - GraphQLRequest guarantees one
        return request.query

    def _entry(self, query: str) -> CachedDocument | Result:
        entry = self.documents.get(query)
        if entry is not None:
            return entry
        if self.tracer is None:
            return self._validate(query)
        with self.tracer.span("graphql.validate"):
            return self._validate(query)

    def _validate(self, query: str) -> CachedDocument | Result:
        try:
            document = parse(query, max_tokens=self.config.max_tokens)
        except GraphQLSyntaxError as error:
            result = self._result(None, [error], None)
            if token_limit_hit(error):
                result.limit_rule = TOKENS_RULE
            return result
        return self.documents.validate(self.graphql_schema, query, document)

    async def _plan(
        self,
        query: str,
        entry: CachedDocument,
        operation: Any,
        request: GraphQLRequest,
        context: Any,
    ) -> dict[str, Any] | None:
        """The data from a plan, or None when graphql-core must answer (counted)."""
        if self.plans is None:
            self.stats.fallback(FallbackReason.DISABLED)
            return None
        variables, errors = check_variables(
            self.graphql_schema, entry, operation, request.variables
        )
        if variables is None or errors:
            reason = FallbackReason.VARIABLES if variables is None else FallbackReason.LIMITS
            self.stats.fallback(reason)
            return None
        try:
            # Keyed by the operation's own name: a request that names the only operation
            # and one that does not share a plan (the one compiled at start-up).
            name = operation.name.value if operation.name else None
            found = self.plans.get(query, name, entry.document, variables)
        except Exception as exc:
            self._unexpected(exc)
            return None
        if not isinstance(found, Plan):
            self.stats.fallback(found)
            return None
        try:
            data = await found.run(self.graphql_schema, context, variables)
        except Fallback as fallback:
            self.stats.fallback(fallback.reason)
            logger.debug(
                "plan fell back", extra={"event": "plan_fallback", "reason": str(fallback.reason)}
            )
            return None
        except Exception as exc:
            self._unexpected(exc)
            return None
        self.stats.plan_hits += 1
        return data

    def _unexpected(self, exc: Exception) -> None:
        self.stats.fallback(FallbackReason.UNEXPECTED)
        logger.debug(
            "plan failed unexpectedly",
            exc_info=exc,
            extra={"event": "plan_fallback", "reason": str(FallbackReason.UNEXPECTED)},
        )
        if self.config.strict:
            raise UnexpectedFallback(f"the plan machinery failed: {exc!r}") from exc

    async def _strawberry(self, query: str, request: GraphQLRequest, context: Any) -> Result:
        try:
            result = await self.schema.execute(
                query,
                variable_values=request.variables,
                context_value=context,
                operation_name=request.operation_name,
                allowed_operation_types=_STRAWBERRY_HTTP_OPERATIONS,
            )
        except (MissingQueryError, CannotGetOperationTypeError, InvalidOperationTypeError):
            return refusal(CANNOT_RUN, "BAD_USER_INPUT")
        return self._result(result.data, list(result.errors or ()), context)

    def _result(
        self,
        data: dict[str, Any] | None,
        errors: list[GraphQLError],
        context: Any,
        **meta: Any,
    ) -> Result:
        request_id = getattr(context, "request_id", None)
        mapped = [
            client_error(error, request_id=request_id, hide_hints=self.config.hide_hints)
            for error in errors
        ]
        limit = next((e.rule for e in errors if isinstance(e, QueryLimitError)), None)
        return Result(data, mapped, limit_rule=limit, **meta)


def _renewed(context: Any) -> Any:
    """A context with fresh per-request caches (DataLoaders) for the retry on graphql-core,
    so that what the plan attempt loaded or failed cannot change what the retry reports."""
    renew = getattr(context, "renewed", None)
    return renew() if callable(renew) else context
