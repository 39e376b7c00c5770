"""Engine set-up, migrations and the error boundary of the storage layer.

SQLAlchemy stays inside ``watcher/storage``; callers see our types and ``StorageError``.
"""

from __future__ import annotations

import functools
import json
import re
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import Connection, Engine, Table, create_engine, event, insert, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.pool import StaticPool
from sqlalchemy.sql.dml import Insert

from watcher.exceptions import StorageError
from watcher.storage import fresh

P = ParamSpec("P")
R = TypeVar("R")

MIGRATIONS = Path(__file__).with_name("migrations")
# The newest migration's revision, known without Alembic: importing Alembic and loading
# every migration script to find its head cost a CLI run a quarter of its time, so
# ``ensure_schema`` compares the database's revision with this and loads Alembic only to
# upgrade. tests/test_startup.py holds it equal to Alembic's head: a new migration must
# update it.
HEAD_REVISION = "0014"
VERSION_TABLE = "alembic_version"  # Alembic's default, which env.py keeps


def translate_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn any SQLAlchemy error escaping ``fn`` into ``StorageError``."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except SQLAlchemyError as e:
            raise storage_error(fn.__name__, e) from e

    return wrapper


_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6  # primary result codes (the low byte)


def storage_error(where: str, e: SQLAlchemyError) -> StorageError:
    """A database error as our ``StorageError``: a busy or unreachable database gets a code
    and a plain message (no SQL, no driver text); the driver's text stays in ``detail``."""
    detail = f"database error in {where}: {e.__class__.__name__}: {e}"
    if isinstance(e, OperationalError) and unavailable(e):
        if getattr(e.orig, "sqlite_errorcode", None) is not None:
            error = StorageError(
                "the database is busy: another process held it longer than the busy timeout; "
                "it is tried again on the next poll",
                code="db_busy",
                detail=detail,
            )
        else:
            error = StorageError(
                "the database cannot be reached; it is tried again on the next poll",
                code="db_unavailable",
                detail=detail,
            )
    else:
        error = StorageError(detail, detail=detail)
    error.__cause__ = e
    return error


def insert_ignoring(conn: Connection, table: Table, keys: Sequence[str]) -> Insert:
    """``INSERT`` that skips rows whose ``keys`` are taken (``ON CONFLICT DO NOTHING`` on
    both databases): a race with another process is never an error."""
    # The dialects' modules are imported here, on use: PostgreSQL's alone costs a SQLite
    # process tens of milliseconds at start.
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table).on_conflict_do_nothing(index_elements=list(keys))
    from sqlalchemy.dialects import sqlite

    return sqlite.insert(table).on_conflict_do_nothing(index_elements=list(keys))


@dataclass(frozen=True)
class _Plan:
    """How rows with one set of keys go into one table on SQLite, worked out once: the
    columns (those given and those with a Python-side default), the conversion of each
    column that needs one (the column type's bind processor) and the defaults to fill in.
    ``row`` makes a row's tuple in one expression written for the plan (as dataclasses
    write their ``__init__``): a first round of 2,000 sources makes 180,000 rows, and a
    loop over the columns, the defaults and the conversions cost a tenth of its writer's
    time."""

    columns: tuple[str, ...]
    convert: tuple[tuple[int, Callable[[Any], Any]], ...]  # (position, processor)
    defaults: tuple[tuple[int, Any, bool], ...]  # (position, value or callable, callable?)
    row: Callable[[Mapping[str, Any]], tuple[Any, ...]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        env: dict[str, Any] = {}
        parts = []
        defaults = {i: (arg, is_callable) for i, arg, is_callable in self.defaults}
        converts = dict(self.convert)
        for i, name in enumerate(self.columns):
            if i in defaults:
                arg, is_callable = defaults[i]
                env[f"d{i}"] = arg
                expr = f"d{i}(None)" if is_callable else f"d{i}"
            else:
                expr = f"get({name!r})"
            if i in converts:
                env[f"c{i}"] = converts[i]
                expr = f"c{i}({expr})"
            parts.append(expr)
        body = f"({', '.join(parts)},)" if parts else "()"
        source = f"def row(values):\n    get = values.get\n    return {body}\n"
        exec(source, env)
        object.__setattr__(self, "row", env["row"])


def _quick_json(process: Callable[[Any], Any] | None) -> Callable[[Any], Any] | None:
    """A JSON column's bind processor that hands lists and dicts (all a poll writes) to
    ``json_text`` itself, when SQLAlchemy's processor gives the same text for them, and
    anything else (None, ``JSON.NULL``) to SQLAlchemy's: a first round of 2,000 sources
    converts 336,000 JSON values. Other processors as they are."""
    if process is None:
        return None
    samples: list[Any] = [[], {}, ["2027-03-16T22:59:59+00:00"], {"a": [1, "å", None]}]
    try:
        same = all(process(v) == json_text(v) for v in samples)
    except Exception:  # not a JSON column's: it refuses lists or dicts
        same = False
    if not same:
        return process

    def quick(value: Any) -> Any:
        if type(value) is list or type(value) is dict:
            return json_text(value)
        return process(value)

    return quick


_PLANS: dict[tuple[Table, str, frozenset[str]], _Plan] = {}
_SQLITE_VARIABLES = 32766  # SQLite ≥ 3.32's limit of parameters in one statement


def _plan(table: Table, keys: frozenset[str], dialect: Any) -> _Plan:
    key = (table, dialect.name, keys)
    plan = _PLANS.get(key)
    if plan is None:
        columns: list[str] = []
        defaults: list[tuple[int, Any, bool]] = []
        for col in table.columns:
            if col.name in keys:
                columns.append(col.name)
            elif col.default is None:
                continue  # NULL, the database's default or the next id
            elif getattr(col.default, "is_scalar", False):
                defaults.append((len(columns), col.default.arg, False))  # type: ignore[attr-defined]
                columns.append(col.name)
            elif getattr(col.default, "is_callable", False):
                # SQLAlchemy wraps a callable without arguments to take the context: this
                # passes none, so a default that reads the context fails here, loudly.
                defaults.append((len(columns), col.default.arg, True))  # type: ignore[attr-defined]
                columns.append(col.name)
            else:  # a SQL expression or a sequence: what Core would render, this cannot
                raise ValueError(
                    f"insert_rows cannot fill {table.name}.{col.name}'s default "
                    f"({col.default!r}); give the column a value"
                )
        unknown = keys - set(columns)
        if unknown:
            raise ValueError(f"{table.name} has no column(s) {sorted(unknown)}")
        processors = [
            _quick_json(table.c[c].type.dialect_impl(dialect).bind_processor(dialect))
            for c in columns
        ]
        convert = tuple((i, f) for i, f in enumerate(processors) if f is not None)
        plan = _PLANS[key] = _Plan(tuple(columns), convert, tuple(defaults))
    return plan


def insert_rows(
    conn: Connection,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    skip_taken: Sequence[str] = (),
    returning: Sequence[str] = (),
) -> list[tuple[Any, ...]]:
    """Insert many rows; ``skip_taken``: the unique key whose taken rows are skipped (``ON
    CONFLICT DO NOTHING``); ``returning``: columns of the inserted rows to return (in no set order).

    On SQLite the rows go to the driver as tuples, converted by the columns' own bind
    processors (the same values SQLAlchemy would send): SQLAlchemy's per-row work (a
    parameter dictionary per row, type processing value by value through its compiled
    statement) cost a first poll of 2,000 sources several seconds, several times the
    database's own time. PostgreSQL takes SQLAlchemy's statement as it is."""
    if not rows:
        return []
    # Rows with the same keys go in together: one statement takes one set of columns (an
    # executemany would drop keys that only later rows have).
    by_keys: dict[frozenset[str], list[Mapping[str, Any]]] = {}
    for r in rows:
        by_keys.setdefault(frozenset(r), []).append(r)
    out: list[tuple[Any, ...]] = []
    if conn.dialect.name != "sqlite":
        stmt = insert_ignoring(conn, table, skip_taken) if skip_taken else insert(table)
        if returning:
            stmt = stmt.returning(*(table.c[c] for c in returning))
        for group in by_keys.values():
            result = conn.execute(stmt, list(group))
            if returning:
                out.extend(tuple(r) for r in result)
        return out
    for keys, group in by_keys.items():
        plan = _plan(table, keys, conn.dialect)
        names = ", ".join(f'"{c}"' for c in plan.columns)
        head = f'INSERT INTO "{table.name}" ({names}) VALUES '
        tail = ""
        if skip_taken:
            taken = ", ".join(f'"{k}"' for k in skip_taken)
            tail += f" ON CONFLICT ({taken}) DO NOTHING"
        values = [plan.row(r) for r in group]
        one = "(" + ", ".join("?" * len(plan.columns)) + ")"
        if not returning:
            sqlite_run(conn, head + one + tail, values, many=True)
            continue
        if len(skip_taken) == 1:
            out.extend(
                _sqlite_insert_new(
                    conn, table, plan, head + one + tail, values, skip_taken[0], returning
                )
            )
            continue
        # Several rows per statement, each statement's new rows returned.
        tail += " RETURNING " + ", ".join(f'"{c}"' for c in returning)
        per = max(1, _SQLITE_VARIABLES // len(plan.columns))
        for start in range(0, len(values), per):
            chunk = values[start : start + per]
            sql = head + ", ".join([one] * len(chunk)) + tail
            flat = tuple(v for row in chunk for v in row)
            out.extend(sqlite_run(conn, sql, flat))
    return out


def _sqlite_insert_new(
    conn: Connection,
    table: Table,
    plan: _Plan,
    sql: str,
    values: list[tuple[Any, ...]],
    key: str,
    returning: Sequence[str],
) -> list[tuple[Any, ...]]:
    """``insert_rows`` on SQLite, with ``skip_taken`` one column and ``returning``: the
    keys already taken, read first; one executemany (``sql``, ``ON CONFLICT DO NOTHING``);
    then the rows made, read by their keys. A third less CPU than statements of many rows
    each with ``RETURNING`` (a first poll of 2,000 sources inserts 30,000 items). Exact in
    a transaction that holds the write lock from its start, as ``StorageCore.begin``'s do
    (``BEGIN IMMEDIATE``): nobody else writes between the three statements. (Begun by the
    driver, at its first write, another process could store a taken key between the read
    and the insert, and its row would come back as this one's.) The rows come back in the
    key index's order."""
    at = plan.columns.index(key)
    keys = list(dict.fromkeys(row[at] for row in values))
    by_keys = f'SELECT {{}} FROM "{table.name}" WHERE "{key}" IN (SELECT value FROM json_each(?))'
    taken = {k for (k,) in sqlite_run(conn, by_keys.format(f'"{key}"'), (json.dumps(keys),))}
    sqlite_run(conn, sql, values, many=True)
    fresh = [k for k in keys if k not in taken]
    if not fresh:
        return []
    wanted = ", ".join(f'"{c}"' for c in returning)
    return sqlite_run(conn, by_keys.format(wanted), (json.dumps(fresh),))


_SQLITE_TEXTS: dict[Any, str] = {}


def sqlite_text(stmt: Any, conn: Connection) -> str:
    """The text SQLite runs for ``stmt``, a statement kept for the life of the process
    (module level), compiled on first use: for ``sqlite_run``, with the values in the
    order the statement binds them (``?`` parameters)."""
    found = _SQLITE_TEXTS.get(stmt)
    if found is None:
        found = _SQLITE_TEXTS[stmt] = str(stmt.compile(dialect=conn.dialect))
    return found


def sqlite_run(
    conn: Connection, sql: str, params: Sequence[Any], *, many: bool = False
) -> list[tuple[Any, ...]]:
    """Run a statement on SQLite's own cursor, in ``conn``'s transaction, and return its
    rows. ``conn.exec_driver_sql`` costs tens of microseconds a call in SQLAlchemy's
    execution context and result objects, which a first poll of 2,000 sources pays ten
    thousand times for statements whose text and values are ready. A driver error comes out
    as SQLAlchemy's, as from ``exec_driver_sql`` (``IntegrityError``, ``OperationalError``
    with the driver's error as ``orig``), so ``translate_errors`` and ``unavailable`` see
    it the same."""
    driver = conn.connection.driver_connection
    assert driver is not None
    cursor = driver.cursor()
    try:
        if many:
            cursor.executemany(sql, params)
            return []
        cursor.execute(sql, params)
        found: list[tuple[Any, ...]] = cursor.fetchall()
        return found
    except conn.dialect.loaded_dbapi.Error as e:
        raise DBAPIError.instance(
            sql, params, e, conn.dialect.loaded_dbapi.Error, dialect=conn.dialect
        ) from e
    finally:
        cursor.close()


def unavailable(e: OperationalError) -> bool:
    """The database, not one statement, failed: busy or locked by another writer, or the
    connection gone (by the driver's error codes, not its wording)."""
    if e.connection_invalidated:
        return True
    code = getattr(e.orig, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)
    state = getattr(e.orig, "sqlstate", None) or ""
    # PostgreSQL: no state at all (the server could not be reached), connection exceptions
    # (08…), shutdown (57P01–03), lock not available.
    return not state or state.startswith("08") or state in ("57P01", "57P02", "57P03", "55P03")


BUSY_TIMEOUT = 30.0  # seconds a SQLite writer waits for another process's write lock


def _wal(cur: Any) -> None:
    """Put a SQLite database in WAL mode, which it keeps once set. Switching needs the
    database to itself, and SQLite answers "locked" at once, without the busy timeout, to
    a connection that asks while another one switches it or writes (processes starting
    together on a new database): such a connection waits its turn for the write lock,
    which does wait for the busy timeout, and looks again."""
    for _ in range(3):
        if str(cur.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
            return
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError:
            cur.execute("BEGIN IMMEDIATE")
            cur.execute("ROLLBACK")
    cur.execute("PRAGMA journal_mode=WAL")


_ENCODE = json.JSONEncoder().encode  # what json.dumps uses for default arguments


def json_text(value: Any) -> str:
    """JSON columns' text: ``json.dumps`` with its defaults, empty lists and objects
    answered at once. A first poll writes hundreds of thousands of JSON values, mostly
    empty lists (no history yet, no regions), and ``dumps`` costs a few microseconds
    each even for those."""
    if not value:
        if value == []:  # a list, not any false value: 0 and "" are not "[]"
            return "[]"
        if value == {}:
            return "{}"
    return _ENCODE(value)


def make_engine(
    url: str, base_dir: Path | None = None, busy_timeout: float = BUSY_TIMEOUT
) -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and foreign keys."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite"):
        path = url.split("///", 1)[1] if "///" in url else ""
        kwargs: dict[str, Any] = {
            "connect_args": {"timeout": busy_timeout, "check_same_thread": False}
        }
        if path in ("", ":memory:"):
            kwargs["poolclass"] = StaticPool
        else:
            p = Path(path)
            if not p.is_absolute() and base_dir is not None:
                p = base_dir / p
                url = f"sqlite:///{p}"
            p.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, json_serializer=json_text, **kwargs)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
            _wal(cur)
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    try:
        # No JIT: PostgreSQL compiles a query whose estimated cost passes a threshold, and
        # a search over 1,000,000 items often does; compiling cost 30 to 500 ms of queries
        # that run in a few. Added to the URL's own ``options``, unless they set it.
        given = make_url(url).query.get("options", "")
        given = given if isinstance(given, str) else " ".join(given)
        options = given if re.search(r"\bjit\s*=", given) else f"{given} -c jit=off".strip()
        connect_args = {"options": options}
        return create_engine(
            url,
            json_serializer=json_text,
            pool_pre_ping=True,
            pool_size=10,
            max_overflow=10,
            connect_args=connect_args,
        )
    except (SQLAlchemyError, ImportError, ValueError) as e:
        raise StorageError(f"cannot use database URL {redact_url(url)}: {e}") from e


def redact_url(url: str) -> str:
    """The URL without a password, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<invalid database URL>"


def alembic_config(conn: Connection) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest revision: a new database (no tables) is made in one
    step (``fresh``), any other goes through the migrations (``migrate``)."""
    try:
        made = fresh.create(engine, HEAD_REVISION)
    except SQLAlchemyError as e:
        raise StorageError(
            f"making the database's schema failed (nothing was changed; a new database is "
            f"made again on the next start): {e}",
            detail=str(e),
        ) from e
    if not made and current_revision(engine) != HEAD_REVISION:
        migrate(engine)  # (not when another process starting beside it just made it)


def migrate(engine: Engine) -> None:
    """Run the migrations the database has not had, with Alembic. A database at a revision
    this version does not know (made by a newer version) is refused with what to do, and
    left untouched."""
    from alembic import command
    from alembic.util import CommandError

    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "head")
    except CommandError as e:
        current = current_revision(engine)
        raise StorageError(
            f"the database is at schema revision {current!r}, which this version of "
            f"EU-bevakning does not know (it knows up to {head_revision()!r}): it was made by "
            "a newer version. Run that version, or set [watcher] database_url to another "
            "database; nothing was changed.",
            code="db_revision",
            detail=str(e),
        ) from e
    except SQLAlchemyError as e:
        raise StorageError(f"database migration failed: {e}", detail=str(e)) from e


def current_revision(engine: Engine) -> str | None:
    """The database's schema revision, None when it has none (a new database), read with
    plain SQL from Alembic's version table (as Alembic's ``get_current_revision`` reads it,
    without importing Alembic). Several rows (branches, which this project never makes)
    come out joined, so they never equal the head and ``upgrade`` has Alembic's say."""
    with engine.connect() as conn:
        if not inspect(conn).has_table(VERSION_TABLE):
            return None
        found = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    return ", ".join(sorted(found)) or None


def head_revision() -> str | None:
    """The newest migration as Alembic finds it (loads Alembic and every script: slow);
    ``HEAD_REVISION`` is its fast copy."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(cfg).get_current_head()
