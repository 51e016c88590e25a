"""Validation rules that bound what one document may cost, before any resolver runs.

Each rule looks at every fragment once and remembers its result, so a document that
spreads fragments 2**n times costs n steps, not 2**n (Strawberry's own depth and alias
limiters walk every spread path, which a 1 KiB document turns into minutes). A spread
that closes a fragment cycle counts as empty here: ``NoFragmentCyclesRule`` reports the
cycle, and these rules never recurse across fragments, so a cycle cannot loop them.

The ``DocumentCache`` runs these rules first and on their own: a document that breaks a
limit is refused before GraphQL's own (costlier) rules see it, with one error, however
many times the document breaks it. ``MaxCostRule`` also re-checks, per request, documents
whose page sizes come from variables, on the variables as GraphQL coerces them (so
``100.0`` is the page of 100 it becomes, and an omitted variable is its default).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar, TypeVar

from graphql import (
    BREAK,
    DirectiveNode,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    MaxIntrospectionDepthRule,
    NoSchemaIntrospectionCustomRule,
    NullValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationRule,
    VariableNode,
    VisitorAction,
    get_named_type,
)

DEFAULT_PAGE = 20  # what a connection returns when ``first`` is absent or null

Rule = TypeVar("Rule", bound="QueryLimitRule")
Summary = TypeVar("Summary")


class QueryLimitError(GraphQLError):
    """A document refused by a query limit; ``rule`` names the limit (a closed set: it
    is a metric label). Clients see an ordinary BAD_USER_INPUT error."""

    def __init__(self, message: str, node: Any, *, rule: str) -> None:
        super().__init__(message, node, extensions={"code": "BAD_USER_INPUT"})
        self.rule = rule

    @classmethod
    def of(cls, error: GraphQLError, rule: str) -> QueryLimitError:
        """graphql-core's own error from one of its rules, named as ours are (and mapped
        to a client error as before: its extensions are kept)."""
        named = cls(error.message, error.nodes, rule=rule)
        named.extensions = error.extensions
        return named


class QueryLimitRule(ValidationRule):
    """A limit on the whole document, checked once when the document is entered."""

    limit: ClassVar[int] = 0
    # The stable name of the limit, reported with its refusals (metrics).
    rule: ClassVar[str] = ""

    @classmethod
    def with_limit(cls: type[Rule], limit: int) -> type[Rule]:
        """This rule with its limit bound (build once per schema, not per request)."""
        return type(cls.__name__, (cls,), {"limit": limit})

    def enter_document(self, node: DocumentNode, *_args: Any) -> VisitorAction:
        for error in self.check(node):
            self.report_error(error)
        return BREAK

    def check(self, document: DocumentNode) -> Iterator[GraphQLError]:
        """The rule's errors for ``document``; every concrete rule overrides this."""
        return iter(())

    @classmethod
    def needs_request_check(cls, document: DocumentNode) -> bool:
        """Whether the verdict depends on the request's variables (see ``check_request``)."""
        return False

    @classmethod
    def check_request(
        cls,
        schema: GraphQLSchema,
        document: DocumentNode,
        variables: Mapping[str, Any] | None,
        operation_name: str | None,
    ) -> list[GraphQLError]:
        return []


# --- walking a document -------------------------------------------------------------


def _fragments(document: DocumentNode) -> dict[str, FragmentDefinitionNode]:
    return {
        node.name.value: node
        for node in document.definitions
        if isinstance(node, FragmentDefinitionNode)
    }


def _operations(document: DocumentNode) -> list[OperationDefinitionNode]:
    return [node for node in document.definitions if isinstance(node, OperationDefinitionNode)]


def _spreads(selection_set: SelectionSetNode) -> list[str]:
    """The fragment names spread anywhere inside ``selection_set`` (without recursion)."""
    names: list[str] = []
    stack = [selection_set]
    while stack:
        for selection in stack.pop().selections:
            if isinstance(selection, FragmentSpreadNode):
                names.append(selection.name.value)
            elif selection.selection_set is not None:  # type: ignore[attr-defined]
                stack.append(selection.selection_set)  # type: ignore[attr-defined]
    return names


def _dependency_order(fragments: Mapping[str, FragmentDefinitionNode]) -> list[str]:
    """Fragment names with every fragment after those it spreads; cycle edges are dropped."""
    spreads = {name: _spreads(node.selection_set) for name, node in fragments.items()}
    order: list[str] = []
    done: set[str] = set()
    for root in fragments:
        if root in done:
            continue
        path = [(root, iter(spreads[root]))]
        on_path = {root}
        while path:
            name, pending = path[-1]
            for child in pending:
                if child in spreads and child not in done and child not in on_path:
                    path.append((child, iter(spreads[child])))
                    on_path.add(child)
                    break
            else:
                path.pop()
                on_path.discard(name)
                done.add(name)
                order.append(name)
    return order


def summarize_fragments(
    document: DocumentNode,
    summarize: Callable[[FragmentDefinitionNode, Mapping[str, Summary]], Summary],
) -> dict[str, Summary]:
    """``summarize`` each fragment once, after the fragments it spreads.

    ``summarize`` gets the summaries known so far; a spread it cannot find there is
    unknown or closes a cycle, and counts as empty.
    """
    fragments = _fragments(document)
    summaries: dict[str, Summary] = {}
    for name in _dependency_order(fragments):
        summaries[name] = summarize(fragments[name], summaries)
    return summaries


def _selection_sets(selection_set: SelectionSetNode) -> Iterator[SelectionSetNode]:
    stack = [selection_set]
    while stack:
        current = stack.pop()
        yield current
        for selection in current.selections:
            if not isinstance(selection, FragmentSpreadNode) and selection.selection_set:  # type: ignore[attr-defined]
                stack.append(selection.selection_set)  # type: ignore[attr-defined]


def _too_costly(message: str, node: Any, rule: str) -> QueryLimitError:
    return QueryLimitError(message, node, rule=rule)


# --- the rules --------------------------------------------------------------------


class MaxDepthRule(QueryLimitRule):
    """Nested fields multiply work at every level; root fields are at depth 0.

    Introspection fields (``__schema``) are left to graphql-core's
    ``MaxIntrospectionDepthRule``, so that GraphiQL's introspection query still works.
    """

    limit = 10
    rule = "depth"

    def check(self, document: DocumentNode) -> Iterator[GraphQLError]:
        depths = summarize_fragments(document, lambda f, known: self._depth(f, known, 0))
        for operation in _operations(document):
            depth = self._depth(operation, depths, 0)
            if depth > self.limit:
                yield _too_costly(
                    f"Query is nested too deeply: depth {depth}, the maximum is {self.limit}.",
                    operation,
                    self.rule,
                )

    @staticmethod
    def _depth(
        definition: OperationDefinitionNode | FragmentDefinitionNode,
        fragments: Mapping[str, int],
        start: int,
    ) -> int:
        deepest = start
        stack = [(definition.selection_set, start)]
        while stack:
            selection_set, depth = stack.pop()
            for selection in selection_set.selections:
                if isinstance(selection, FragmentSpreadNode):
                    deepest = max(deepest, depth + fragments.get(selection.name.value, 0))
                elif isinstance(selection, InlineFragmentNode):
                    stack.append((selection.selection_set, depth))
                elif isinstance(selection, FieldNode) and not selection.name.value.startswith("__"):
                    deepest = max(deepest, depth)
                    if selection.selection_set is not None:
                        stack.append((selection.selection_set, depth + 1))
        return deepest


class _CountingRule(QueryLimitRule):
    """Counts something per operation, through every fragment spread (with repeats)."""

    what: ClassVar[str] = ""

    def check(self, document: DocumentNode) -> Iterator[GraphQLError]:
        counts = summarize_fragments(document, self._count)
        for operation in _operations(document):
            count = self._count(operation, counts)
            if count > self.limit:
                shown = f"{count}" if count <= self.limit * 2 else f"more than {self.limit}"
                yield _too_costly(
                    f"Query has too many {self.what}: {shown}, the maximum is {self.limit}.",
                    operation,
                    self.rule,
                )

    def _count(
        self,
        definition: OperationDefinitionNode | FragmentDefinitionNode,
        fragments: Mapping[str, int],
    ) -> int:
        total = self.own(definition)
        for selection_set in _selection_sets(definition.selection_set):
            for selection in selection_set.selections:
                if isinstance(selection, FragmentSpreadNode):
                    total += fragments.get(selection.name.value, 0)
                total += self.own(selection)
            # Saturate: a doubling fragment chain must not build a 2**200 integer.
            total = min(total, self.limit * 2 + 1)
        return total

    def own(self, node: Any) -> int:
        """What ``node`` itself adds to the count; every concrete rule overrides this."""
        return 0


class MaxAliasesRule(_CountingRule):
    """Aliases let one document run the same field many times (alias overloading).

    Counted through fragment spreads: a fragment with 5 aliases spread 4 times is 20.
    """

    limit = 15
    rule = "aliases"
    what = "aliases"

    def own(self, node: Any) -> int:
        return 1 if isinstance(node, FieldNode) and node.alias is not None else 0


class MaxDirectivesRule(_CountingRule):
    """Directives are work for every validator and executor (directive overloading)."""

    limit = 50
    rule = "directives"
    what = "directives"

    def own(self, node: Any) -> int:
        directives: tuple[DirectiveNode, ...] | None = getattr(node, "directives", None)
        count = len(directives or ())
        if isinstance(node, OperationDefinitionNode):
            count += sum(len(v.directives or ()) for v in node.variable_definitions or ())
        return count


class DirectiveUseRule(QueryLimitRule):
    """Unknown and repeated directives end the document at the first one (directive
    overloading). GraphQL's own rules would answer each copy with an error of its own, so
    ``@aa@aa@aa...`` made the response grow with the request."""

    rule = "directive_use"

    def check(self, document: DocumentNode) -> Iterator[GraphQLError]:
        schema = self.context.schema
        for node in _directive_holders(document):
            seen: set[str] = set()
            for directive in node.directives or ():
                name = directive.name.value
                definition = schema.get_directive(name)
                if definition is None:
                    yield _too_costly(f"Unknown directive '@{name}'.", directive, self.rule)
                    return
                if name in seen and not definition.is_repeatable:
                    yield _too_costly(
                        f"The directive '@{name}' can only be used once at this location.",
                        directive,
                        self.rule,
                    )
                    return
                seen.add(name)


def _directive_holders(document: DocumentNode) -> Iterator[Any]:
    """Every node of ``document`` that can carry directives."""
    for definition in document.definitions:
        if not isinstance(definition, OperationDefinitionNode | FragmentDefinitionNode):
            continue
        yield definition
        if isinstance(definition, OperationDefinitionNode):
            yield from definition.variable_definitions or ()
        for selection_set in _selection_sets(definition.selection_set):
            yield from selection_set.selections


class MaxDuplicateFieldsRule(QueryLimitRule):
    """The same field asked many times in one selection (field duplication).

    GraphQL merges the copies, but checking that they can be merged compares every
    pair, so copies cost quadratic work. Counted per selection, through fragments.
    """

    limit = 20
    rule = "duplicate_fields"

    def check(self, document: DocumentNode) -> Iterator[GraphQLError]:
        cap = self.limit + 1
        keys = summarize_fragments(document, lambda f, known: self._keys(f.selection_set, known))
        definitions = [*_operations(document), *_fragments(document).values()]
        for definition in definitions:
            for selection_set in _selection_sets(definition.selection_set):
                counts = self._keys(selection_set, keys)
                worst = max(counts.values(), default=0)
                if worst >= cap:
                    key = max(counts, key=counts.__getitem__)
                    yield _too_costly(
                        f"Query repeats the field {key!r} too often: "
                        f"the maximum is {self.limit} in one selection.",
                        selection_set,
                        self.rule,
                    )
                    return

    def _keys(
        self, selection_set: SelectionSetNode, fragments: Mapping[str, Counter[str]]
    ) -> Counter[str]:
        """Response keys of one selection, with inline fragments and spreads merged in."""
        cap = self.limit + 1
        counts: Counter[str] = Counter()
        stack = [selection_set]
        while stack:
            for selection in stack.pop().selections:
                if isinstance(selection, FieldNode):
                    key = (selection.alias or selection.name).value
                    counts[key] = min(counts[key] + 1, cap)
                elif isinstance(selection, InlineFragmentNode):
                    stack.append(selection.selection_set)
                elif isinstance(selection, FragmentSpreadNode):
                    for key, count in fragments.get(selection.name.value, Counter()).items():
                        counts[key] = min(counts[key] + count, cap)
        return counts


class MaxCostRule(QueryLimitRule):
    """A budget for the number of objects a query may resolve.

    Every field costs 1. A field with a ``first`` argument (a page of a connection)
    multiplies the cost of what it selects by the page size: the literal, else the
    variable's value (per request, as coerced), else the argument's default (20).
    Fragments are costed per operation, since a variable's default belongs to the
    operation that spreads them. Introspection lists count once; introspection is off in
    production.
    """

    limit = 5000
    rule = "cost"

    def check(self, document: DocumentNode) -> Iterator[GraphQLError]:
        schema = self.context.schema
        yield from self._over_budget(schema, document, None, None)

    @classmethod
    def needs_request_check(cls, document: DocumentNode) -> bool:
        for definition in document.definitions:
            if not isinstance(definition, OperationDefinitionNode | FragmentDefinitionNode):
                continue
            for selection_set in _selection_sets(definition.selection_set):
                for selection in selection_set.selections:
                    if isinstance(selection, FieldNode) and any(
                        argument.name.value == "first" and isinstance(argument.value, VariableNode)
                        for argument in selection.arguments or ()
                    ):
                        return True
        return False

    @classmethod
    def check_request(
        cls,
        schema: GraphQLSchema,
        document: DocumentNode,
        variables: Mapping[str, Any] | None,
        operation_name: str | None,
    ) -> list[GraphQLError]:
        """``variables`` are the *coerced* values of the operation's variables (defaults
        applied), as graphql-core's ``get_variable_values`` returns them."""
        return list(cls._over_budget(schema, document, variables or {}, operation_name))

    @classmethod
    def _over_budget(
        cls,
        schema: GraphQLSchema,
        document: DocumentNode,
        variables: Mapping[str, Any] | None,
        operation_name: str | None,
    ) -> Iterator[GraphQLError]:
        for operation in _operations(document):
            if operation_name is not None and (
                operation.name is None or operation.name.value != operation_name
            ):
                continue
            estimate = _CostEstimate(schema, operation, variables, cap=cls.limit + 1)
            costs = summarize_fragments(document, estimate.fragment)
            cost = estimate.operation(costs)
            if cost > cls.limit:
                shown = f"{cost}" if cost <= cls.limit else f"more than {cls.limit}"
                yield _too_costly(
                    f"Query is too expensive: cost {shown}, the maximum is {cls.limit}. "
                    "Ask for smaller pages (first) or fewer nested connections.",
                    operation,
                    cls.rule,
                )


class _CostEstimate:
    def __init__(
        self,
        schema: GraphQLSchema,
        operation: OperationDefinitionNode,
        variables: Mapping[str, Any] | None,
        *,
        cap: int,
    ) -> None:
        self.schema = schema
        self.operation_node = operation
        # None while validating: variables are then taken at their declared defaults.
        self.variables = variables
        self.defaults: dict[str, Any] = {
            v.variable.name.value: _literal_size(v.default_value)
            for v in operation.variable_definitions or ()
            if v.default_value is not None
        }
        self.cap = cap

    def operation(self, fragments: Mapping[str, int]) -> int:
        root = self.schema.get_root_type(self.operation_node.operation)
        return self._cost(self.operation_node.selection_set, root, fragments)

    def fragment(self, fragment: FragmentDefinitionNode, fragments: Mapping[str, int]) -> int:
        parent = self.schema.get_type(fragment.type_condition.name.value)
        return self._cost(fragment.selection_set, parent, fragments)

    def _cost(
        self,
        selection_set: SelectionSetNode,
        parent: GraphQLNamedType | None,
        fragments: Mapping[str, int],
    ) -> int:
        # Nesting within one definition is bounded by the parser (200 levels).
        total = 0
        for selection in selection_set.selections:
            if isinstance(selection, FragmentSpreadNode):
                total += fragments.get(selection.name.value, 0)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                inner = self.schema.get_type(condition.name.value) if condition else parent
                total += self._cost(selection.selection_set, inner, fragments)
            elif isinstance(selection, FieldNode):
                total += 1
                if selection.selection_set is not None:
                    child, pages = self._field(selection, parent)
                    total += pages * self._cost(selection.selection_set, child, fragments)
            if total >= self.cap:
                return self.cap
        return total

    def _field(
        self, node: FieldNode, parent: GraphQLNamedType | None
    ) -> tuple[GraphQLNamedType | None, int]:
        if not isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
            return None, 1
        definition = parent.fields.get(node.name.value)
        if definition is None:
            return None, 1
        child = get_named_type(definition.type)
        if "first" not in definition.args:
            return child, 1
        return child, self._page(node, definition.args["first"].default_value)

    def _page(self, node: FieldNode, default: Any) -> int:
        fallback = default if isinstance(default, int) else DEFAULT_PAGE
        for argument in node.arguments or ():
            if argument.name.value != "first":
                continue
            value = argument.value
            if isinstance(value, VariableNode):
                name = value.name.value
                if self.variables is not None:
                    # Coerced values: absent means neither given nor defaulted.
                    if name not in self.variables:
                        return fallback
                    return _size(self.variables[name], fallback, self.cap)
                if name not in self.defaults:
                    return fallback
                return _size(self.defaults[name], fallback, self.cap)
            return _size(_literal_size(value), fallback, self.cap)
        return fallback


def _literal_size(value: Any) -> Any:
    """The page size a literal stands for: an int, None for null, or ``_HUGE``."""
    if isinstance(value, IntValueNode):
        # A 5,000-digit literal would make int() raise; it is over any budget.
        return int(value.value) if len(value.value) < 10 else _HUGE
    if isinstance(value, NullValueNode):
        return None
    return None  # not an Int literal: validation refuses the document


_HUGE = object()


def _size(value: Any, fallback: int, cap: int) -> int:
    if value is _HUGE:
        return cap
    if value is None or isinstance(value, bool) or not isinstance(value, int):
        # null asks for the default page; other types never survive coercion.
        return fallback
    return min(max(value, 0), cap)


# --- graphql-core's limits, named ----------------------------------------------------


class NoIntrospectionRule(NoSchemaIntrospectionCustomRule):
    """graphql-core's refusal of introspection (production), reported as a limit."""

    rule = "introspection"

    def report_error(self, error: GraphQLError) -> None:
        super().report_error(QueryLimitError.of(error, self.rule))


class IntrospectionDepthRule(MaxIntrospectionDepthRule):
    """graphql-core's bound on circular introspection, reported as a limit."""

    rule = "introspection_depth"

    def report_error(self, error: GraphQLError) -> None:
        super().report_error(QueryLimitError.of(error, self.rule))


# Parsing stops at ``max_tokens`` (graphql-core's own check, comments included).
TOKENS_RULE = "tokens"
_TOKEN_LIMIT_MESSAGE = re.compile(r"^Syntax Error: Document contains more than \d+ tokens\.")


def token_limit_hit(error: GraphQLError) -> bool:
    """Whether a syntax error is graphql-core's token limit rather than bad syntax."""
    return bool(_TOKEN_LIMIT_MESSAGE.match(error.message))
