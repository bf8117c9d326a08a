"""Languages codetailor knows, by file extension. Shared by retrieval (chunking),
serving (request validation) and evaluation (CodeBLEU support)."""

from __future__ import annotations

from pathlib import PurePosixPath

EXTENSIONS: dict[str, str] = {
    ".py": "python", ".pyi": "python",
    ".java": "java",
    ".js": "javascript", ".jsx": "javascript", ".mjs": "javascript", ".cjs": "javascript",
    ".ts": "typescript", ".tsx": "typescript",
    ".go": "go",
    ".rs": "rust", ".c": "c", ".h": "c", ".cpp": "cpp", ".cc": "cpp", ".hpp": "cpp", ".cs": "c_sharp",
    ".rb": "ruby", ".php": "php", ".kt": "kotlin", ".scala": "scala", ".swift": "swift",
    ".sh": "shell", ".bash": "shell", ".sql": "sql", ".lua": "lua", ".r": "r",
    ".md": "markdown", ".txt": "text", ".rst": "text", ".toml": "toml", ".yaml": "yaml", ".yml": "yaml",
    ".json": "json", ".html": "html", ".css": "css", ".scss": "css", ".xml": "xml", ".proto": "proto",
}
LANGUAGES: frozenset[str] = frozenset(EXTENSIONS.values())
# Languages with a tree-sitter grammar in the pinned set (syntax chunking, CodeBLEU).
SYNTAX_LANGUAGES: frozenset[str] = frozenset({"python", "java", "javascript", "typescript", "go"})
# Each language's usual extension: the first listed for it above.
EXTENSION_OF: dict[str, str] = {lang: ext for ext, lang in reversed(EXTENSIONS.items())}


def language_of(path: str) -> str | None:
    p = PurePosixPath(path)
    if p.name in ("Makefile", "Dockerfile"):
        return p.name.lower()
    return EXTENSIONS.get(p.suffix.lower())


def with_language(path: str, language: str | None) -> str:
    """`path` as the model should see it: the model knows a file's language only from the path in
    its prompt, so a path without a known extension gets `language`'s usual one appended
    ("untitled" + python -> "untitled.py"). A path whose extension is known keeps it."""
    if not language or language_of(path) is not None:
        return path
    return path + EXTENSION_OF[language]
