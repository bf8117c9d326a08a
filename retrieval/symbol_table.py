"""A tenant's symbol table: the definitions and imports of every indexed file.

Stored as one SQLite database, `<tenant>/index/symbols.sqlite`, in WAL mode: the
indexer replaces a changed file's rows and drops a removed file's rows inside one
transaction per run, so a reader (serving, `codetailor search --symbols`) always sees
the table of one finished run, and a killed run leaves the previous one intact.

The table reconciles itself with what a run selected rather than trusting the chunk
manifest: each file row keeps the content hash it was extracted from, so a file the
table has never seen (an index built before the table existed, or a run killed
between the table's commit and the manifest's publish) is extracted on the next run
without a rebuild. It is derived data: a file of another schema version is rebuilt.

Lookups are indexed (name, container+name, module key), a few tens of microseconds
each at 100k definitions; bench/retrieval_bench.py --symbols measures them.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from codetailor.home import TenantPaths

from retrieval.symbols import Definition, Import, extract, module_key

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files(
    id INTEGER PRIMARY KEY, source TEXT NOT NULL, path TEXT NOT NULL, language TEXT NOT NULL,
    sha TEXT NOT NULL, module TEXT NOT NULL, mkey TEXT NOT NULL, UNIQUE(source, path));
CREATE INDEX IF NOT EXISTS files_mkey ON files(mkey);
CREATE INDEX IF NOT EXISTS files_path ON files(path);
CREATE TABLE IF NOT EXISTS defs(
    file INTEGER NOT NULL, name TEXT NOT NULL, qualname TEXT NOT NULL, kind TEXT NOT NULL,
    signature TEXT NOT NULL, doc TEXT NOT NULL, container TEXT, line INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS defs_name ON defs(name);
CREATE INDEX IF NOT EXISTS defs_container ON defs(container, name);
CREATE INDEX IF NOT EXISTS defs_file ON defs(file);
CREATE TABLE IF NOT EXISTS imports(
    file INTEGER NOT NULL, module TEXT NOT NULL, name TEXT, alias TEXT NOT NULL, line INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS imports_file ON imports(file);
"""
_DEF_COLUMNS = "d.name, d.qualname, d.kind, d.signature, d.doc, d.container, f.path, d.line, f.language"


def table_path(paths: TenantPaths) -> Path:
    return paths.index_dir / "symbols.sqlite"


def _connect(path: Path) -> sqlite3.Connection:
    con = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")   # WAL + NORMAL: a commit survives a process kill
    return con


def _schema_version(con: sqlite3.Connection) -> int | None:
    try:
        row = con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    except sqlite3.OperationalError:
        return None
    return int(row[0]) if row else None


# -- writing (the indexer, under the tenant's index lock) ------------------------------------------------

@dataclass
class SymbolUpdate:
    files_extracted: int = 0
    files_removed: int = 0
    definitions: int = 0      # in the whole table after the update
    seconds: float = 0.0


def update_symbols(paths: TenantPaths, source: str, files: Iterable, *, rebuild: bool = False,
                   exclude_deprecated: bool = False) -> SymbolUpdate:
    """Bring `source`'s rows in line with `files` (the run's selected files: objects with
    path, language, text and sha): extract new and changed files, drop files no longer
    selected. `rebuild` empties the whole table first, as a rebuild drops the whole index;
    `exclude_deprecated` follows the selection knob (a change of it re-extracts every file).
    One transaction: readers see the old table until it commits."""
    import time

    t0 = time.perf_counter()
    path = table_path(paths)
    path.parent.mkdir(parents=True, exist_ok=True)
    con = _connect(path)
    try:
        version = _schema_version(con)
        if version is not None and version != SCHEMA_VERSION:
            log.warning("symbol table %s has schema %s, not %s: rebuilding it", path, version, SCHEMA_VERSION)
            con.executescript("DROP TABLE IF EXISTS defs; DROP TABLE IF EXISTS imports; "
                              "DROP TABLE IF EXISTS files; DROP TABLE IF EXISTS meta;")
        con.executescript(_SCHEMA)
        out = SymbolUpdate()
        con.execute("BEGIN IMMEDIATE")
        try:
            con.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            if rebuild:
                for table in ("defs", "imports", "files"):
                    con.execute(f"DELETE FROM {table}")
            known = {p: (i, sha) for i, p, sha in
                     con.execute("SELECT id, path, sha FROM files WHERE source=?", (source,))}
            seen = set()
            for sf in files:
                seen.add(sf.path)
                prev = known.get(sf.path)
                sha = sf.sha + ("-nodeprecated" if exclude_deprecated else "")
                if prev is not None and prev[1] == sha:
                    continue
                if prev is not None:
                    _delete_file(con, prev[0])
                _insert_file(con, source, sf.path, sf.language, sha, sf.text, exclude_deprecated)
                out.files_extracted += 1
            for p, (fid, _) in known.items():
                if p not in seen:
                    _delete_file(con, fid)
                    out.files_removed += 1
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        out.definitions = con.execute("SELECT count(*) FROM defs").fetchone()[0]
    finally:
        con.close()
    out.seconds = round(time.perf_counter() - t0, 3)
    return out


def drop_source_symbols(paths: TenantPaths, source: str) -> int:
    """Delete every row of `source` (a source disconnected from the tenant) in one transaction;
    the number of files dropped. A tenant without a table has nothing to drop."""
    path = table_path(paths)
    if not path.is_file():
        return 0
    con = _connect(path)
    try:
        if _schema_version(con) != SCHEMA_VERSION:
            return 0   # rebuilt whole by the next index run
        con.execute("BEGIN IMMEDIATE")
        try:
            ids = [i for (i,) in con.execute("SELECT id FROM files WHERE source=?", (source,))]
            for fid in ids:
                _delete_file(con, fid)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return len(ids)
    finally:
        con.close()


def _delete_file(con: sqlite3.Connection, fid: int) -> None:
    con.execute("DELETE FROM defs WHERE file=?", (fid,))
    con.execute("DELETE FROM imports WHERE file=?", (fid,))
    con.execute("DELETE FROM files WHERE id=?", (fid,))


def _insert_file(con: sqlite3.Connection, source: str, path: str, language: str, sha: str, text: str,
                 exclude_deprecated: bool) -> None:
    fs = extract(path, text, language, skip_deprecated=exclude_deprecated)
    cur = con.execute("INSERT INTO files(source, path, language, sha, module, mkey) VALUES (?,?,?,?,?,?)",
                      (source, path, fs.language, sha, fs.module, module_key(fs.module)))
    fid = cur.lastrowid
    con.executemany("INSERT INTO defs VALUES (?,?,?,?,?,?,?,?)",
                    [(fid, d.name, d.qualname, d.kind, d.signature, d.doc, d.container, d.line)
                     for d in fs.definitions])
    con.executemany("INSERT INTO imports VALUES (?,?,?,?,?)",
                    [(fid, i.module, i.name, i.alias, i.line) for i in fs.imports])


# -- reading -----------------------------------------------------------------------------------------------

def _module_matches(file_module: str, wanted: str) -> bool:
    """An import names a file's module up to the repository's root: `acme.util` is
    `src/acme/util.py`'s module `src.acme.util`, and a Go import path ends with the
    package's directory."""
    if not file_module or not wanted:
        return False
    if file_module == wanted:
        return True
    for sep in "./":
        if file_module.endswith(sep + wanted) or wanted.endswith(sep + file_module):
            return True
    return False


class SymbolTable:
    """Read side of one tenant's table. Thread-safe; each call is one indexed query."""

    def __init__(self, path: Path):
        self.path = path
        self._con = _connect(path)
        self._con.execute("PRAGMA query_only=1")
        self._lock = threading.Lock()

    def close(self) -> None:
        self._con.close()

    def _defs(self, where: str, args: tuple, limit: int | None = None) -> list[Definition]:
        sql = f"SELECT {_DEF_COLUMNS} FROM defs d JOIN files f ON f.id = d.file WHERE {where}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._lock:
            rows = self._con.execute(sql, args).fetchall()
        return [Definition(*r) for r in rows]

    def count(self) -> int:
        with self._lock:
            return self._con.execute("SELECT count(*) FROM defs").fetchone()[0]

    def named(self, name: str, limit: int = 50) -> list[Definition]:
        """Definitions called `name`, anywhere."""
        return self._defs("d.name = ?", (name,), limit)

    def with_prefix(self, prefix: str, limit: int = 50, *, top_level: bool = False) -> list[Definition]:
        """Definitions whose name starts with `prefix` (case-sensitive, an index range scan)."""
        if not prefix:
            return []
        where = "d.name >= ? AND d.name < ?" + (" AND d.container IS NULL" if top_level else "")
        return self._defs(where, (prefix, prefix + "\U0010ffff"), limit)

    def members(self, container: str, prefix: str = "", limit: int = 50) -> list[Definition]:
        """Members of the class (or Go type) `container`, optionally those starting with `prefix`."""
        if prefix:
            return self._defs("d.container = ? AND d.name >= ? AND d.name < ?",
                              (container, prefix, prefix + "\U0010ffff"), limit)
        return self._defs("d.container = ?", (container,), limit)

    def in_module(self, module: str, name: str | None = None, limit: int = 50) -> list[Definition]:
        """Top-level definitions of the files an import of `module` names (`name` alone if given)."""
        key = module_key(module)
        with self._lock:
            cands = self._con.execute("SELECT id, module FROM files WHERE mkey = ?", (key,)).fetchall()
        ids = [i for i, m in cands if _module_matches(m, module)]
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        if name is None:
            return self._defs(f"d.file IN ({marks}) AND d.container IS NULL", tuple(ids), limit)
        return self._defs(f"d.file IN ({marks}) AND d.name = ? AND d.container IS NULL", (*ids, name), limit)

    def imports_of(self, path: str) -> list[Import]:
        """An indexed file's imports (for files other than the cursor's, whose imports come
        from the request)."""
        with self._lock:
            rows = self._con.execute("SELECT i.module, i.name, i.alias, i.line FROM imports i JOIN files f "
                                     "ON f.id = i.file WHERE f.path = ?", (path,)).fetchall()
        return [Import(*r) for r in rows]

    def resolve_import(self, imp: Import, limit: int = 50) -> list[Definition]:
        """The definitions an import names: one name, or a module's top level."""
        if imp.name in (None, "*", "default"):
            return self.in_module(imp.module, None, limit)
        found = self.in_module(imp.module, imp.name, limit)
        if not found and imp.name:   # `from pkg import submodule`: the module's top level
            found = self.in_module(f"{imp.module}.{imp.name}", None, limit)
        return found


_tables: dict[str, tuple[tuple, SymbolTable]] = {}
_tables_lock = threading.Lock()


def open_table(paths: TenantPaths) -> SymbolTable | None:
    """The tenant's table, or None when it has none yet (or one of another schema).
    Cached per process; SQLite's WAL shows each query the last committed run."""
    path = table_path(paths)
    try:
        st = os.stat(path)
    except FileNotFoundError:   # never built, or the tenant was deleted: let go of a cached connection
        with _tables_lock:
            gone = _tables.pop(str(path), None)
        if gone is not None:
            gone[1].close()
        return None
    stamp = (st.st_ino, st.st_dev)
    with _tables_lock:
        cached = _tables.get(str(path))
        if cached is not None and cached[0] == stamp:
            return cached[1]
        table = SymbolTable(path)
        if _schema_version(table._con) != SCHEMA_VERSION:
            table.close()
            return None
        if cached is not None:
            cached[1].close()
        _tables[str(path)] = (stamp, table)
        return table


def forget_tables() -> None:
    """Close cached connections (tests, tenant deletion)."""
    with _tables_lock:
        for _, t in _tables.values():
            t.close()
        _tables.clear()
