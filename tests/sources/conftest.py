"""PostgreSQL for the source tests: one uniquely named database (and login role) per test session, dropped at
the end. When the server at 127.0.0.1:5432 is unreachable the `postgres` tests are skipped, or fail in CI."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass

import pytest

PG_ADMIN_URL = os.environ.get("CODEX_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@dataclass(frozen=True)
class PgTestServer:
    admin_url: str    # the session database, as the superuser
    url: str          # the session database, as the password-bearing test role (what POSTGRES_DB_URL holds)
    password: str
    role: str
    database: str


def _admin_connect(dbname: str | None = None):
    import psycopg

    url = PG_ADMIN_URL if dbname is None else PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{dbname}"
    return psycopg.connect(url, connect_timeout=3, autocommit=True)


@pytest.fixture(scope="session")
def pg_server() -> PgTestServer:
    import psycopg

    try:
        admin = _admin_connect()
    except psycopg.Error as error:
        message = f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {str(error).strip().splitlines()[0]}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    suffix = f"{os.getpid()}_{secrets.token_hex(4)}"
    database, role = f"codex_test_{suffix}", f"codex_test_user_{suffix}"
    password = f"s3cr3t-{secrets.token_hex(8)}"
    from psycopg import sql

    with admin:
        admin.execute(sql.SQL("create role {} login password {}").format(sql.Identifier(role), sql.Literal(password)))
        # The role owns the database, so it may create public.memories (PostgreSQL 15 restricts schema public).
        admin.execute(sql.SQL("create database {} owner {}").format(sql.Identifier(database), sql.Identifier(role)))
        try:
            host = PG_ADMIN_URL.split("@", 1)[1].rsplit("/", 1)[0]
            yield PgTestServer(
                admin_url=PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{database}",
                url=f"postgresql://{role}:{password}@{host}/{database}",
                password=password, role=role, database=database,
            )
        finally:
            admin.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(database)))
            admin.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(role)))


@pytest.fixture
def pg(pg_server, codex_home, monkeypatch) -> PgTestServer:
    """A clean public.memories for each test, and POSTGRES_DB_URL pointing at it."""
    with _admin_connect(pg_server.database) as admin:
        admin.execute("drop table if exists public.memories cascade")
        admin.execute("drop function if exists public.codex_touch_updated_at() cascade")
    monkeypatch.setenv("POSTGRES_DB_URL", pg_server.url)
    return pg_server


@pytest.fixture
def pg_admin(pg):
    """A superuser connection to the session database (autocommit) for arranging and inspecting rows."""
    with _admin_connect(pg.database) as con:
        yield con
