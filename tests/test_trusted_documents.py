"""Trusted documents: manifests in both formats, both ways of naming a document, the three
modes, and the start-up checks that keep a bad manifest from ever serving.

The attacks (free-form documents under ``require``, smuggling a query under a trusted id,
registering one at run time) are in ``tests/security/test_trusted_documents.py``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import strawberry

from graphql_api.app import build_engine, create_app
from graphql_api.engine import (
    Engine,
    EngineConfig,
    EngineSchema,
    GraphQLRequest,
    TrustedDocuments,
    TrustMode,
)
from graphql_api.engine.trusted import APOLLO_FORMAT, document_id
from graphql_api.settings import ConfigurationError, Settings
from tests.conftest import GraphQLClient, error_codes

ME = "query Me {\n  me {\n    id\n    name\n  }\n}"
CREATE = (
    "mutation Create($name: String!) {\n  createCategory(input: {name: $name}) {\n"
    "    id\n    name\n  }\n}"
)
PAGE = (
    "query Page($first: Int) {\n  categories(first: $first) {\n    edges {\n      node {\n"
    "        ...Item\n      }\n    }\n  }\n}\n\nfragment Item on Category {\n  id\n  name\n}"
)
FREE_FORM = "{ me { id } }"


def codegen_manifest(path: Path, *texts: str) -> Path:
    path.write_text(json.dumps({document_id(text): text for text in texts}))
    return path


def apollo_manifest(path: Path, *operations: dict[str, str]) -> Path:
    path.write_text(json.dumps({"format": APOLLO_FORMAT, "version": 1, "operations": operations}))
    return path


def apollo_operation(
    name: str, kind: str, body: str, changes: dict[str, str] | None = None
) -> dict[str, str]:
    return {"id": document_id(body), "name": name, "type": kind, "body": body, **(changes or {})}


def by_id(text: str) -> dict[str, Any]:
    return {"documentId": f"sha256:{document_id(text)}"}


def by_apollo_hash(text: str) -> dict[str, Any]:
    return {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": document_id(text)}}}


async def send(client: GraphQLClient, payload: dict[str, Any], token: str | None = None) -> Any:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return await client.http.post("/graphql", json=payload, headers=headers)


def assert_refused(response: httpx.Response, code: str) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body.get("data") is None and error_codes(body) == [code], body


@dataclass
class Manifests:
    codegen: Path  # ME and PAGE
    apollo: Path  # CREATE

    @property
    def files(self) -> list[Path]:
        return [self.codegen, self.apollo]


@pytest.fixture
def manifests(tmp_path: Path) -> Manifests:
    return Manifests(
        codegen=codegen_manifest(tmp_path / "persisted-documents.json", ME, PAGE),
        apollo=apollo_manifest(
            tmp_path / "persisted-query-manifest.json",
            apollo_operation("Create", "mutation", CREATE),
        ),
    )


@pytest.fixture
def settings_overrides(manifests: Manifests) -> dict[str, Any]:
    # The module's ``app`` (and the clients signed in through it) run in ``allow``: they
    # sign in with free-form queries, as GraphiQL would.
    return {"trusted_documents_files": manifests.files}


@pytest.fixture
async def strict(app_client: Any, manifests: Manifests) -> GraphQLClient:
    """A client of the app under ``require`` with both manifests, on the same database."""
    client: GraphQLClient = await app_client(
        trusted_documents="require", trusted_documents_files=manifests.files
    )
    return client


class TestNamingADocument:
    async def test_a_document_id_runs_the_document_of_a_codegen_manifest(
        self, strict: GraphQLClient, user: GraphQLClient
    ) -> None:
        response = await send(strict, by_id(ME), user.token)
        assert response.status_code == 200, response.text
        assert response.json()["data"]["me"]["id"] == user.user_id

    async def test_apollos_persisted_query_hash_runs_the_document_of_an_apollo_manifest(
        self, strict: GraphQLClient, user: GraphQLClient
    ) -> None:
        payload = {**by_apollo_hash(CREATE), "variables": {"name": "Trusted"}}
        response = await send(strict, payload, user.token)
        assert response.status_code == 200, response.text
        assert response.json()["data"]["createCategory"]["name"] == "Trusted"

    async def test_variables_and_the_operation_name_travel_with_the_id(
        self, strict: GraphQLClient, user: GraphQLClient
    ) -> None:
        for name in ("One", "Two", "Three"):
            await user.data(CREATE, {"name": name})
        payload = {**by_id(PAGE), "variables": {"first": 2}, "operationName": "Page"}
        response = await send(strict, payload, user.token)
        edges = response.json()["data"]["categories"]["edges"]
        assert [edge["node"]["name"] for edge in edges] == ["One", "Two"]

    async def test_the_text_sent_with_its_own_known_id_runs_as_the_trusted_document(
        self, strict: GraphQLClient, user: GraphQLClient
    ) -> None:
        response = await send(strict, {"query": ME, **by_id(ME)}, user.token)
        assert response.json()["data"]["me"]["id"] == user.user_id

    async def test_permissions_apply_to_trusted_documents_as_to_any_other(
        self, strict: GraphQLClient
    ) -> None:
        body = (await send(strict, by_id(ME))).json()
        assert error_codes(body) == ["UNAUTHENTICATED"]

    async def test_page_sizes_from_variables_are_still_checked_per_request(
        self, strict: GraphQLClient, user: GraphQLClient
    ) -> None:
        payload = {**by_id(PAGE), "variables": {"first": 101}}
        body = (await send(strict, payload, user.token)).json()
        assert error_codes(body) == ["BAD_USER_INPUT"]


class TestRefusals:
    async def test_a_free_form_query_under_require_is_trusted_document_required(
        self, strict: GraphQLClient, user: GraphQLClient
    ) -> None:
        assert_refused(await send(strict, {"query": ME}, user.token), "TRUSTED_DOCUMENT_REQUIRED")

    @pytest.mark.parametrize("form", [by_id, by_apollo_hash])
    @pytest.mark.parametrize("mode", ["allow", "require"])
    async def test_an_unknown_id_is_persisted_query_not_found(
        self, app_client: Any, manifests: Manifests, mode: str, form: Any
    ) -> None:
        client = await app_client(trusted_documents=mode, trusted_documents_files=manifests.files)
        assert_refused(await send(client, form(FREE_FORM)), "PERSISTED_QUERY_NOT_FOUND")

    @pytest.mark.parametrize("form", [by_id, by_apollo_hash])
    async def test_a_query_with_an_id_that_is_not_its_hash_is_bad_user_input(
        self, strict: GraphQLClient, user: GraphQLClient, form: Any
    ) -> None:
        response = await send(strict, {"query": FREE_FORM, **form(ME)}, user.token)
        assert_refused(response, "BAD_USER_INPUT")
        assert "SHA-256" in response.json()["errors"][0]["message"]

    async def test_under_require_a_query_with_its_own_unknown_id_is_persisted_query_not_found(
        self, strict: GraphQLClient, user: GraphQLClient
    ) -> None:
        response = await send(strict, {"query": FREE_FORM, **by_id(FREE_FORM)}, user.token)
        assert_refused(response, "PERSISTED_QUERY_NOT_FOUND")

    @pytest.mark.parametrize("mode", ["off", "allow"])
    async def test_elsewhere_a_query_with_its_own_unknown_id_runs_as_the_query_it_is(
        self, app_client: Any, manifests: Manifests, user: GraphQLClient, mode: str
    ) -> None:
        client = await app_client(trusted_documents=mode, trusted_documents_files=manifests.files)
        response = await send(client, {"query": FREE_FORM, **by_id(FREE_FORM)}, user.token)
        assert response.json() == {"data": {"me": {"id": user.user_id}}}
        # ...and it is not registered under that id: documents never are at run time.
        assert_refused(await send(client, by_id(FREE_FORM)), "PERSISTED_QUERY_NOT_FOUND")


class TestModes:
    async def test_allow_runs_ids_and_free_form_queries(
        self, anonymous: GraphQLClient, user: GraphQLClient
    ) -> None:
        # The module's app: development, TRUSTED_DOCUMENTS unset.
        assert (await send(anonymous, {"query": ME}, user.token)).json()["data"]["me"]
        assert (await send(anonymous, by_id(ME), user.token)).json()["data"]["me"]

    async def test_off_runs_free_form_queries_and_refuses_every_id_without_reading_manifests(
        self, app_client: Any, tmp_path: Path, user: GraphQLClient
    ) -> None:
        client = await app_client(
            trusted_documents="off", trusted_documents_files=[tmp_path / "absent.json"]
        )
        assert (await send(client, {"query": ME}, user.token)).json()["data"]["me"]
        assert_refused(await send(client, by_id(ME), user.token), "PERSISTED_QUERY_NOT_FOUND")

    @pytest.mark.parametrize(
        ("env", "setting", "mode"),
        [
            ("development", None, "allow"),
            ("production", None, "require"),
            ("production", "off", "off"),
            ("development", "require", "require"),
            ("production", " Allow ", "allow"),
            ("production", "", "require"),
        ],
    )
    def test_the_default_mode_follows_the_environment(
        self, env: str, setting: str | None, mode: str
    ) -> None:
        settings = Settings.model_validate({"env": env, "trusted_documents": setting})
        assert settings.trusted_documents_mode == mode

    def test_production_under_require_without_a_manifest_refuses_and_says_how_to_opt_out(
        self, keys_file: Path
    ) -> None:
        settings = Settings(env="production", jwt_keys_file=keys_file, google_client_ids=["x"])
        with pytest.raises(ConfigurationError) as refused:
            settings.check_production()
        message = str(refused.value)
        assert "\n" not in message and "GRAPHQL_API_TRUSTED_DOCUMENTS_FILES" in message
        assert "set GRAPHQL_API_TRUSTED_DOCUMENTS=off to serve free-form queries" in message
        Settings(
            env="production",
            jwt_keys_file=keys_file,
            google_client_ids=["x"],
            trusted_documents="off",
        ).check_production()


def start_failure(tmp_path: Path, *files: Path, **settings: Any) -> str:
    """The one line with which ``create_app`` refuses these manifests."""
    with pytest.raises(ConfigurationError) as refused:
        build_engine(Settings(trusted_documents_files=list(files), **settings))
    message = str(refused.value)
    assert "\n" not in message, message
    assert message.startswith("GRAPHQL_API_TRUSTED_DOCUMENTS_FILES: "), message
    return message


class TestStartUpChecks:
    def test_an_entry_edited_after_the_build_stops_the_start(self, tmp_path: Path) -> None:
        path = tmp_path / "m.json"
        path.write_text(json.dumps({document_id(ME): ME.replace("name", "email")}))
        message = start_failure(tmp_path, path)
        assert f"{path}: entry {document_id(ME)}: the id is not the SHA-256 of the text" in message

    def test_an_id_that_is_no_sha256_stops_the_start(self, tmp_path: Path) -> None:
        path = tmp_path / "m.json"
        path.write_text(json.dumps({document_id(ME).upper(): ME}))
        assert "is not 64 lowercase hex digits" in start_failure(tmp_path, path)

    def test_a_document_that_does_not_parse_stops_the_start(self, tmp_path: Path) -> None:
        path = codegen_manifest(tmp_path / "m.json", "query Broken { me {")
        message = start_failure(tmp_path, path)
        assert (
            f"entry {document_id('query Broken { me {')}: does not parse: Syntax Error" in message
        )

    def test_a_document_the_schema_does_not_validate_stops_the_start(self, tmp_path: Path) -> None:
        text = "query Secret { me { passwordHash } }"
        message = start_failure(tmp_path, codegen_manifest(tmp_path / "m.json", text))
        assert f"entry {document_id(text)}: Cannot query field 'passwordHash'" in message
        assert "(line 1, column 21)" in message

    def test_a_document_over_a_query_limit_stops_the_start(self, tmp_path: Path) -> None:
        text = "query Deep { me { categories { edges { node { owner { id } } } } } }"
        path = codegen_manifest(tmp_path / "m.json", text)
        build_engine(Settings(trusted_documents_files=[path]))  # within the default depth
        message = start_failure(tmp_path, path, max_depth=4)
        assert f"entry {document_id(text)}:" in message and "depth" in message.lower()

    def test_a_document_over_the_token_limit_stops_the_start(self, tmp_path: Path) -> None:
        text = "query Long { me { " + "id " * 50 + "} }"
        message = start_failure(
            tmp_path, codegen_manifest(tmp_path / "m.json", text), max_tokens=40
        )
        assert "does not parse" in message and "tokens" in message

    def test_introspection_is_refused_in_production_documents_too(
        self, tmp_path: Path, keys_file: Path
    ) -> None:
        text = "query Types { __schema { types { name } } }"
        path = codegen_manifest(tmp_path / "m.json", text)
        build_engine(Settings(trusted_documents_files=[path]))  # development allows it
        production = {"env": "production", "jwt_keys_file": keys_file, "google_client_ids": ["x"]}
        assert "introspection" in start_failure(tmp_path, path, **production).lower()

    @pytest.mark.parametrize(
        ("content", "reason"),
        [
            (None, "cannot be read (No such file or directory)"),
            ("{not json", "is not JSON"),
            ("[]", "is not a manifest"),
            ('{"abc": 1}', "entry abc: the document is not a string"),
            ('{"format": "relay", "version": 1}', "format 'relay' is not"),
            (f'{{"format": "{APOLLO_FORMAT}", "version": 2}}', "version 2 is not 1"),
            (f'{{"format": "{APOLLO_FORMAT}", "version": 1}}', '"operations" is not a list'),
            (
                f'{{"format": "{APOLLO_FORMAT}", "version": 1, "operations": [{{"id": "x"}}]}}',
                "operations[0]: name, type, body must be strings",
            ),
        ],
    )
    def test_a_manifest_that_does_not_load_stops_the_start(
        self, tmp_path: Path, content: str | None, reason: str
    ) -> None:
        path = tmp_path / "m.json"
        if content is not None:
            path.write_text(content)
        assert f"{path}: {reason}" in start_failure(tmp_path, path)

    @pytest.mark.parametrize(
        ("changes", "reason"),
        [
            ({"name": "Create2"}, "name 'Create2' is not the operation's ('Create')"),
            ({"type": "query"}, "type 'query' is not the operation's ('mutation')"),
        ],
    )
    def test_an_apollo_entry_must_state_its_operations_name_and_type(
        self, tmp_path: Path, changes: dict[str, str], reason: str
    ) -> None:
        path = apollo_manifest(
            tmp_path / "m.json", apollo_operation("Create", "mutation", CREATE, changes)
        )
        label = f'operations[0] "{changes.get("name", "Create")}"'
        assert f"{path}: {label}: {reason}" in start_failure(tmp_path, path)

    def test_an_apollo_entry_holds_one_operation(self, tmp_path: Path) -> None:
        body = f"{ME}\n\n{CREATE}"
        path = apollo_manifest(tmp_path / "m.json", apollo_operation("Me", "query", body))
        assert "holds 2 operations, not one" in start_failure(tmp_path, path)

    def test_the_same_id_with_another_text_in_a_second_manifest_stops_the_start(
        self, tmp_path: Path
    ) -> None:
        first = codegen_manifest(tmp_path / "v1.json", ME)
        second = tmp_path / "v2.json"
        second.write_text(json.dumps({document_id(ME): ME.replace("name", "email")}))
        message = start_failure(tmp_path, first, second)
        assert message.startswith(f"GRAPHQL_API_TRUSTED_DOCUMENTS_FILES: {second}: entry ")

    def test_manifests_of_two_frontend_versions_load_together(self, tmp_path: Path) -> None:
        # A rollout: the old frontend's manifest stays until its users have reloaded.
        old = codegen_manifest(tmp_path / "v1.json", ME, PAGE)
        new = apollo_manifest(
            tmp_path / "v2.json",
            apollo_operation("Me", "query", ME),
            apollo_operation("Create", "mutation", CREATE),
        )
        engine = build_engine(Settings(trusted_documents_files=[old, new]))
        for text in (ME, PAGE, CREATE):
            assert engine.trusted.get(document_id(text)) == text

    def test_create_app_refuses_a_bad_manifest_with_the_same_line(self, tmp_path: Path) -> None:
        path = tmp_path / "absent.json"
        message = start_failure(tmp_path, path)
        with pytest.raises(ConfigurationError) as refused:
            create_app(Settings(trusted_documents_files=[path]))
        assert str(refused.value) == message


# --- the engine, on a small schema of its own ---------------------------------------


@strawberry.type
class Query:
    @strawberry.field
    def hello(self, name: str = "world") -> str:
        return f"hello {name}"


@strawberry.type
class Mutation:
    @strawberry.mutation
    def shout(self, text: str) -> str:
        return text.upper()


HELLO = "query Hello($name: String) {\n  hello(name: $name)\n}"
SHOUT = "mutation Shout($text: String!) {\n  shout(text: $text)\n}"
MAYBE = "query Maybe($polite: Boolean!) {\n  hello @include(if: $polite)\n}"


def small_engine(mode: TrustMode, *texts: str) -> Engine:
    trusted = TrustedDocuments(mode, {document_id(text): text for text in texts})
    return Engine(EngineSchema(query=Query, mutation=Mutation), EngineConfig(), trusted=trusted)


class TestEngine:
    def test_trusted_documents_are_parsed_validated_and_planned_when_the_engine_is_built(
        self,
    ) -> None:
        engine = small_engine(TrustMode.REQUIRE, HELLO, SHOUT, MAYBE)
        assert engine.plans is not None
        for text in (HELLO, SHOUT, MAYBE):
            cached = engine.documents.get(text)
            assert cached is not None and cached.errors == ()
        # One plan: HELLO's. A mutation has none; MAYBE's depends on its variable.
        assert len(engine.plans) == 1

    async def test_a_trusted_query_runs_from_its_start_up_plan_with_or_without_its_name(
        self,
    ) -> None:
        engine = small_engine(TrustMode.REQUIRE, HELLO)
        assert engine.plans is not None
        for name in (None, "Hello"):
            request = GraphQLRequest(
                document_id=document_id(HELLO), variables={"name": "Ada"}, operation_name=name
            )
            result = await engine.execute(request, None)
            assert result.formatted() == {"data": {"hello": "hello Ada"}}
        assert engine.stats.plan_hits == 2 and not engine.stats.fallbacks
        assert len(engine.plans) == 1  # nothing compiled after start-up

    def test_an_entry_given_in_code_is_checked_like_a_manifests(self) -> None:
        from graphql_api.engine.trusted import ManifestError

        with pytest.raises(ManifestError, match="not the SHA-256 of the text"):
            Engine(
                EngineSchema(query=Query),
                EngineConfig(),
                trusted=TrustedDocuments(TrustMode.REQUIRE, {document_id(HELLO): SHOUT}),
            )

    async def test_every_answer_to_a_request_with_an_id_names_the_document(self) -> None:
        engine = small_engine(TrustMode.ALLOW, HELLO, SHOUT)
        unknown = document_id(FREE_FORM)
        requests = [
            GraphQLRequest(document_id=document_id(HELLO)),  # a plan
            GraphQLRequest(document_id=document_id(SHOUT), variables={"text": "hi"}),  # executor
            GraphQLRequest(document_id=document_id(SHOUT)),  # variables missing
            GraphQLRequest(document_id=document_id(HELLO), operation_name="Other"),  # no such op
            GraphQLRequest(document_id=unknown),  # unknown
            GraphQLRequest(query="{ hello }", document_id=document_id("{ hello }")),  # free-form
            GraphQLRequest(query="{ nope", document_id=document_id("{ nope")),  # does not parse
        ]
        for request in requests:
            refused = engine.admit(request)
            result = refused or await engine.execute(request, None)
            assert result.document_id == request.document_id, (request, result.formatted())
        assert engine.admit(GraphQLRequest(document_id=unknown)) is not None

    def test_admit_refuses_without_parsing(self) -> None:
        engine = small_engine(TrustMode.REQUIRE, HELLO)
        refused = engine.admit(GraphQLRequest(query="{ hello }"))
        assert refused is not None and refused.codes == ["TRUSTED_DOCUMENT_REQUIRED"]
        assert refused.status == 400
        assert engine.documents.get("{ hello }") is None


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"query": FREE_FORM, **by_id(ME)}, "SHA-256"),
        ({"query": FREE_FORM, **by_apollo_hash(ME)}, "SHA-256"),
        ({"documentId": document_id(ME)}, "sha256:"),
        ({"documentId": f"sha256:{document_id(ME).upper()}"}, "lowercase"),
        ({**by_id(ME), **by_apollo_hash(CREATE)}, "different documents"),
    ],
)
def test_a_request_naming_a_document_wrongly_is_refused_while_it_is_read(
    payload: dict[str, Any], message: str
) -> None:
    from graphql_api.engine import RequestError

    with pytest.raises(RequestError, match=message) as refused:
        GraphQLRequest.from_payload(payload)
    assert refused.value.code == "BAD_USER_INPUT" and refused.value.status == 400


def test_a_query_sent_with_its_own_id_is_read_as_both() -> None:
    request = GraphQLRequest.from_payload({"query": ME, **by_apollo_hash(ME)})
    assert (request.query, request.document_id) == (ME, document_id(ME))
