"""The servers ours is measured against, as ASGI app factories.

- ``floor``: a bare FastAPI route returning a constant JSON document (the stack's ceiling).
- ``rest``: the blog post's design: an ``HTTPBearer`` dependency decoding the JWT with
  PyJWT, the same SQLAlchemy queries as ours, pydantic models out.
- ``strawberry_default``: a plain ``GraphQLRouter``: no caches, a context getter that
  decodes the JWT, async resolvers and a per-request DataLoader.

All three use the same ``Database`` (engines, SQLite pragmas, pools) and repository
functions as ours, so the comparison is of the HTTP and GraphQL layers, not of the SQL.
The ``*_from_env`` factories are what uvicorn starts (``--factory``); they read
``BENCH_DATABASE_URL`` and ``BENCH_KEYS_FILE``.
"""

# No `from __future__ import annotations`: FastAPI must see the closures' Annotated
# dependencies as objects, not as strings it cannot resolve from module globals.
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import strawberry
from fastapi import Depends, FastAPI, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from strawberry.dataloader import DataLoader
from strawberry.fastapi import GraphQLRouter
from strawberry.permission import BasePermission

from bench.tokens import TokenDecoder
from graphql_api.db.engine import Database
from graphql_api.records import UserRecord
from graphql_api.repositories import categories as categories_repo
from graphql_api.repositories import users as users_repo
from graphql_api.services.validation import clean_name, name_key


def _lifespan(db: Database) -> Any:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await db.dispose()

    return lifespan


def _healthz(app: FastAPI) -> None:
    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}


# ---------------------------------------------------------------------------- floor


def floor() -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    _healthz(app)

    @app.post("/graphql")
    async def graphql() -> dict[str, Any]:
        return {"data": {"__typename": "Query"}}

    return app


# ---------------------------------------------------------------------------- rest


class UserOut(BaseModel):
    id: str
    name: str
    email: str


class OwnerOut(BaseModel):
    id: str
    name: str


class CategoryOut(BaseModel):
    id: str
    name: str
    owner: OwnerOut


class EdgeOut(BaseModel):
    node: CategoryOut


class ConnectionOut(BaseModel):
    edges: list[EdgeOut]


class MeData(BaseModel):
    me: UserOut


class MeOut(BaseModel):
    data: MeData


class CategoriesData(BaseModel):
    categories: ConnectionOut


class CategoriesOut(BaseModel):
    data: CategoriesData


class CategoryIn(BaseModel):
    name: str
    description: str | None = None


class CreatedOut(BaseModel):
    id: str
    name: str


class CreateData(BaseModel):
    createCategory: CreatedOut  # noqa: N815 - the same JSON as the GraphQL answer


class CreateOut(BaseModel):
    data: CreateData


def rest(*, db: Database, decoder: TokenDecoder) -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None, lifespan=_lifespan(db))
    _healthz(app)
    bearer = HTTPBearer()

    def current_user_id(
        credentials: Annotated[HTTPAuthorizationCredentials, Depends(bearer)],
    ) -> int:
        user_id = decoder.user_id(credentials.credentials)
        if user_id is None:
            raise HTTPException(status_code=401, detail="Invalid token")
        return user_id

    async def reader() -> AsyncIterator[AsyncConnection]:
        async with db.reader() as connection:
            yield connection

    CurrentUserId = Annotated[int, Depends(current_user_id)]  # noqa: N806
    Reader = Annotated[AsyncConnection, Depends(reader)]  # noqa: N806

    @app.get("/me", response_model=MeOut)
    async def me(user_id: CurrentUserId, session: Reader) -> MeOut:
        rows = await users_repo.records_by_ids(session=session, ids=[user_id])
        if not rows:
            raise HTTPException(status_code=404, detail="User not found")
        user = rows[0]
        return MeOut(data=MeData(me=UserOut(id=str(user.id), name=user.name, email=user.email)))

    @app.get("/categories", response_model=CategoriesOut)
    async def categories(
        _user_id: CurrentUserId, session: Reader, first: int = 20
    ) -> CategoriesOut:
        if not 0 <= first <= 100:
            raise HTTPException(status_code=400, detail="first must be between 0 and 100")
        rows = await categories_repo.page(session=session, after_id=None, limit=first + 1)
        rows = rows[:first]
        owners = {
            u.id: u
            for u in await users_repo.records_by_ids(
                session=session, ids=sorted({r.owner_id for r in rows})
            )
        }
        edges = [
            EdgeOut(
                node=CategoryOut(
                    id=str(r.id),
                    name=r.name,
                    owner=OwnerOut(id=str(r.owner_id), name=owners[r.owner_id].name),
                )
            )
            for r in rows
        ]
        return CategoriesOut(data=CategoriesData(categories=ConnectionOut(edges=edges)))

    @app.post("/categories", response_model=CreateOut)
    async def create_category(user_id: CurrentUserId, body: CategoryIn) -> CreateOut:
        name = clean_name(body.name)
        key = name_key(name)
        now = datetime.now(UTC)
        try:
            async with db.writer() as session:
                category_id = await categories_repo.insert_row(
                    session=session,
                    name=name,
                    name_key=key,
                    description=body.description,
                    owner_id=user_id,
                    now=now,
                )
        except IntegrityError:
            raise HTTPException(status_code=400, detail="Name taken") from None
        return CreateOut(data=CreateData(createCategory=CreatedOut(id=str(category_id), name=name)))

    return app


# ---------------------------------------------------------------------------- strawberry


class IsAuthenticated(BasePermission):
    message = "Not authenticated"

    def has_permission(self, source: Any, info: strawberry.Info, **kwargs: Any) -> bool:
        return info.context["user_id"] is not None


@strawberry.type(name="User")
class UserNode:
    id: strawberry.ID
    name: str
    email: str


@strawberry.type(name="Category")
class CategoryNode:
    id: strawberry.ID
    name: str
    owner_id: strawberry.Private[int]

    @strawberry.field
    async def owner(self, info: strawberry.Info) -> UserNode:
        user = await info.context["user_loader"].load(self.owner_id)
        return UserNode(id=strawberry.ID(str(user.id)), name=user.name, email=user.email)


@strawberry.type
class CategoryEdge:
    node: CategoryNode


@strawberry.type
class CategoryConnection:
    edges: list[CategoryEdge]


@strawberry.input
class CreateCategoryInput:
    name: str
    description: str | None = None


@strawberry.type
class Query:
    @strawberry.field(permission_classes=[IsAuthenticated])
    async def me(self, info: strawberry.Info) -> UserNode:
        user = await info.context["user_loader"].load(info.context["user_id"])
        return UserNode(id=strawberry.ID(str(user.id)), name=user.name, email=user.email)

    @strawberry.field(permission_classes=[IsAuthenticated])
    async def categories(self, info: strawberry.Info, first: int = 20) -> CategoryConnection:
        db: Database = info.context["db"]
        async with db.reader() as session:
            rows = await categories_repo.page(session=session, after_id=None, limit=first + 1)
        return CategoryConnection(
            edges=[
                CategoryEdge(
                    node=CategoryNode(id=strawberry.ID(str(r.id)), name=r.name, owner_id=r.owner_id)
                )
                for r in rows[:first]
            ]
        )


@strawberry.type
class Mutation:
    @strawberry.mutation(permission_classes=[IsAuthenticated])
    async def create_category(
        self, info: strawberry.Info, input: CreateCategoryInput
    ) -> CategoryNode:
        db: Database = info.context["db"]
        name = clean_name(input.name)
        key = name_key(name)
        now = datetime.now(UTC)
        try:
            async with db.writer() as session:
                category_id = await categories_repo.insert_row(
                    session=session,
                    name=name,
                    name_key=key,
                    description=input.description,
                    owner_id=info.context["user_id"],
                    now=now,
                )
        except IntegrityError:
            raise ValueError("Name taken") from None
        return CategoryNode(
            id=strawberry.ID(str(category_id)), name=name, owner_id=info.context["user_id"]
        )


async def _load_users(db: Database, ids: Sequence[int]) -> list[UserRecord | None]:
    async with db.reader() as session:
        rows = {u.id: u for u in await users_repo.records_by_ids(session=session, ids=ids)}
    return [rows.get(i) for i in ids]


def strawberry_default(*, db: Database, decoder: TokenDecoder) -> FastAPI:
    schema = strawberry.Schema(query=Query, mutation=Mutation)
    bearer = HTTPBearer(auto_error=False)

    async def context(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> dict[str, Any]:
        user_id = decoder.user_id(credentials.credentials) if credentials else None
        return {
            "user_id": user_id,
            "db": db,
            "user_loader": DataLoader(load_fn=partial(_load_users, db)),
        }

    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None, lifespan=_lifespan(db))
    _healthz(app)
    app.include_router(GraphQLRouter(schema, context_getter=context), prefix="/graphql")
    return app


# ---------------------------------------------------------------------------- uvicorn


def _from_env() -> tuple[Database, TokenDecoder]:
    return Database(os.environ["BENCH_DATABASE_URL"]), TokenDecoder(
        Path(os.environ["BENCH_KEYS_FILE"])
    )


def rest_from_env() -> FastAPI:
    db, decoder = _from_env()
    return rest(db=db, decoder=decoder)


def strawberry_default_from_env() -> FastAPI:
    db, decoder = _from_env()
    return strawberry_default(db=db, decoder=decoder)
