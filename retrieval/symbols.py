"""Definitions and imports of one source file, read off the chunker's tree-sitter parse.

A completion at a call site needs the *signature* of what is being called and the
shape of the objects in scope, which similar-looking chunks rarely hold. This module
lists, for Python, Go, Java, JavaScript and TypeScript, every definition a caller can
reach (function, method, class, type, constant, module variable, field) with its
qualified name, its signature collapsed to one line, the first line of its docstring
or of the comment above it, its enclosing class, and its line; plus the file's
imports (module, imported name, local alias). `retrieval/symbol_table.py` stores them
per tenant; `retrieval/symbol_context.py` resolves them at a cursor.

Only the top level, class bodies and (for fields) constructors are walked: function
bodies hold no definitions a caller can name, and skipping them keeps extraction and
the per-request parse of the cursor's file cheap.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from typing import NamedTuple

from codetailor.languages import SYNTAX_LANGUAGES, language_of

from retrieval.chunking import _is_deprecated, parse

SIGNATURE_MAX = 240  # characters of a collapsed signature; longer ones end with "…"
KINDS = ("class", "type", "function", "method", "property", "constant", "variable", "field")


class Definition(NamedTuple):   # a tuple: made by the thousand per request, read from SQL rows
    name: str
    qualname: str          # Class.method within its file; the file's module is FileSymbols.module
    kind: str              # one of KINDS
    signature: str         # one line: the header without the body
    doc: str               # first line of its docstring / the comment above it, or ""
    container: str | None  # enclosing class (or Go receiver type)
    path: str
    line: int              # 1-based
    language: str

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "signature": self.signature, "path": self.path,
                "line": self.line}


class Import(NamedTuple):
    module: str        # resolved where the file's own path allows (relative imports); else as written
    name: str | None   # the imported name; None imports the module itself, "*" everything
    alias: str         # the name (or dotted prefix) it is used under in the file
    line: int


@dataclass
class FileSymbols:
    path: str
    language: str
    module: str                    # what imports of other files name this file by
    definitions: list[Definition] = field(default_factory=list)
    imports: list[Import] = field(default_factory=list)


def module_of(path: str, language: str, package: str | None = None) -> str:
    """The name other files import `path` by: a dotted module (Python), a package
    (Java), a directory (Go), the path without extension or /index (JS/TS)."""
    stem = posixpath.splitext(path)[0]
    if language == "python":
        mod = stem.replace("/", ".")
        return mod[: -len(".__init__")] if mod.endswith(".__init__") else mod
    if language == "java":
        return package or posixpath.dirname(path).replace("/", ".")
    if language == "go":
        return posixpath.dirname(path)
    return stem[: -len("/index")] if stem.endswith("/index") else stem


def module_key(module: str) -> str:
    """The last component of a module name, the indexed half of import matching."""
    return re.split(r"[./]", module.rstrip("./"))[-1] if module else ""


def extract(path: str, text: str, language: str | None = None, *, skip_deprecated: bool = False,
            tree=None) -> FileSymbols:
    """Definitions and imports of one file; an unsupported language yields none.
    `skip_deprecated` leaves out what the chunker marks deprecated (and a deprecated
    class's members), for a selection that excludes deprecated code. `tree`: the text's
    parse when the caller has it already."""
    language = language or language_of(path) or ""
    if language not in SYNTAX_LANGUAGES:
        return FileSymbols(path, language, module_of(path, language))
    src = text.encode("utf-8")
    root = (tree or parse(path, language, text)).root_node
    ex = _Extractor(path, language, src)
    if skip_deprecated:
        ex.lines = text.splitlines(keepends=True)
    getattr(ex, "_" + language)(root)
    return FileSymbols(path, language, module_of(path, language, ex.package), ex.defs, ex.imports)


# -- helpers over tree-sitter nodes ---------------------------------------------------------------------

def _collapse(text: str) -> str:
    one = " ".join(text.split())
    return one if len(one) <= SIGNATURE_MAX else one[: SIGNATURE_MAX - 1] + "…"


_COMMENT_MARKS = re.compile(r"^\s*(/\*\*?|\*/|\*|//+|#)\s?")


def _first_doc_line(text: str) -> str:
    for line in text.splitlines():
        line = _COMMENT_MARKS.sub("", line).strip().strip('"\'').strip()
        line = line.removesuffix("*/").strip()
        if line and not line.startswith("@"):
            return line[:160]
    return ""


class _Extractor:
    def __init__(self, path: str, language: str, src: bytes):
        self.path, self.language, self.src = path, language, src
        self.defs: list[Definition] = []
        self.imports: list[Import] = []
        self.package: str | None = None
        self.lines: list[str] | None = None   # set: deprecated definitions are left out
        self.deprecated: set[str] = set()     # classes left out, whose members go too
        self.members: dict[str, set[str]] = {}  # class -> member names seen

    def text(self, node) -> str:
        return self.src[node.start_byte:node.end_byte].decode("utf-8", "replace") if node is not None else ""

    def head(self, node, limit: int = 2 * SIGNATURE_MAX, one_line: bool = True) -> str:
        """The node's text up to its first line break (`one_line`) and a few hundred bytes
        at most: a module-level table or a long literal is not decoded whole."""
        end = min(node.end_byte, node.start_byte + limit)
        nl = self.src.find(b"\n", node.start_byte, end) if one_line else -1
        return self.src[node.start_byte:nl if nl >= 0 else end].decode("utf-8", "replace")

    def header(self, node, body) -> str:
        """The node's text up to its body: the signature."""
        end = body.start_byte if body is not None else node.end_byte
        return _collapse(self.src[node.start_byte:end].decode("utf-8", "replace")).rstrip(" {=").rstrip()

    def comment_above(self, node) -> str:
        prev = node.prev_named_sibling
        if prev is not None and "comment" in prev.type and prev.end_point[0] >= node.start_point[0] - 1:
            # the first line of a run of comments, not the last
            while (p := prev.prev_named_sibling) is not None and "comment" in p.type \
                    and p.end_point[0] >= prev.start_point[0] - 1:
                prev = p
            return _first_doc_line(self.text(prev))
        return ""

    def add(self, name_node, kind, signature, doc, container, line_node, name: str | None = None):
        name = name or self.text(name_node)
        if not name:
            return
        if self.lines is not None and (container in self.deprecated
                                       or _is_deprecated(line_node, self.lines, line_node.start_point[0])):
            self.deprecated.add(name)
            return
        qual = f"{container}.{name}" if container else name
        if container:
            self.members.setdefault(container, set()).add(name)
        self.defs.append(Definition(name, qual, kind, signature, doc, container, self.path,
                                    line_node.start_point[0] + 1, self.language))

    def import_(self, module: str, name: str | None, alias: str, node) -> None:
        if module or name:
            self.imports.append(Import(module, name, alias, node.start_point[0] + 1))

    # -- Python ------------------------------------------------------------------------------------------
    def _python(self, root, container: str | None = None) -> None:
        for node in root.named_children:
            t = node.type
            if t == "decorated_definition":
                inner = node.child_by_field_name("definition")
                decorators = {self.text(d).lstrip("@").split("(")[0].strip() for d in node.named_children
                              if d.type == "decorator"}
                self._py_def(inner, container, node, decorators)
            elif t in ("function_definition", "class_definition"):
                self._py_def(node, container, node, set())
            elif t == "expression_statement" and node.named_children and node.named_children[0].type == "assignment":
                self._py_assign(node.named_children[0], container, node)
            elif t == "import_statement" and container is None:
                for n in node.children_by_field_name("name"):
                    if n.type == "aliased_import":
                        mod = self.text(n.child_by_field_name("name"))
                        self.import_(mod, None, self.text(n.child_by_field_name("alias")), node)
                    else:
                        mod = self.text(n)
                        self.import_(mod, None, mod, node)
            elif t == "import_from_statement" and container is None:
                self._py_from(node)
            elif t in ("if_statement", "try_statement") and container is None:
                # definitions under `if TYPE_CHECKING:` / `try: import x except ImportError:` are still API
                for part in [node.child_by_field_name("consequence"), *node.named_children]:
                    if part is not None and part.type in ("block", "else_clause", "except_clause", "finally_clause"):
                        body = part if part.type == "block" else next(
                            (c for c in part.named_children if c.type == "block"), None)
                        if body is not None:
                            self._python(body, container)

    def _py_doc(self, body) -> str:
        if body is not None and body.named_children:
            first = body.named_children[0]
            if first.type == "expression_statement" and first.named_children \
                    and first.named_children[0].type == "string":
                doc = first.named_children[0]
                return _first_doc_line(self.src[doc.start_byte:min(doc.end_byte, doc.start_byte + 600)]
                                       .decode("utf-8", "replace"))
        return ""

    def _py_def(self, node, container, outer, decorators: set[str]) -> None:
        if node is None:
            return
        body = node.child_by_field_name("body")
        name = node.child_by_field_name("name")
        colon = next((c for c in reversed(node.children) if c.type == ":" and c.start_byte < (
            body.start_byte if body is not None else node.end_byte)), None)
        # up to the colon: comments between it and the body are not the header
        sig = self.header(node, body) if colon is None else \
            _collapse(self.src[node.start_byte:colon.end_byte].decode("utf-8", "replace"))
        if node.type == "class_definition":
            self.add(name, "class", sig, self._py_doc(body), container, outer)
            if body is not None:
                self._python(body, self.text(name))
            return
        if container is None:
            kind = "function"
        elif decorators & {"property", "cached_property", "functools.cached_property"} \
                or any(d.endswith(".setter") for d in decorators):
            kind = "property"
        else:
            kind = "method"
        if kind == "property" and any(d.endswith((".setter", ".deleter")) for d in decorators):
            return  # the getter already describes the attribute
        self.add(name, kind, sig, self._py_doc(body), container, outer)
        if container is not None and self.text(name) == "__init__" and body is not None:
            self._constructor_fields(body, container, "assignment", "attribute", "attribute", "self")

    def _py_assign(self, node, container, outer) -> None:
        left = node.child_by_field_name("left")
        if left is None or left.type != "identifier":
            return
        name = self.text(left)
        if container is not None:
            kind = "field"
        else:
            kind = "constant" if name.isupper() or (name[:1] == "_" and name[1:].isupper()) else "variable"
        first_line = self.head(outer) or name
        self.add(left, kind, _collapse(first_line), "", container, outer)

    def _constructor_fields(self, body, container, assignment: str, member: str, field: str,
                            receiver: str) -> None:
        """Fields a constructor sets on its receiver (`self.x = ...`, `this.x = ...`), once each."""
        seen = self.members.setdefault(container, set())
        for stmt in body.named_children:
            a = stmt.named_children[0] if stmt.type == "expression_statement" and stmt.named_children else None
            left = a.child_by_field_name("left") if a is not None and a.type == assignment else None
            if left is None or left.type != member or self.text(left.child_by_field_name("object")) != receiver:
                continue
            name = left.child_by_field_name(field)
            if self.text(name) not in seen:
                self.add(name, "field", _collapse(self.head(stmt)).rstrip(";"), "", container, stmt)

    def _py_from(self, node) -> None:
        mod_node = node.child_by_field_name("module_name")
        module = self.text(mod_node)
        if mod_node is not None and mod_node.type == "relative_import":
            dots = len(module) - len(module.lstrip("."))
            base = module_of(self.path, "python").split(".")
            if not self.path.endswith("__init__.py") and not self.path.endswith("__init__.pyi"):
                base = base[:-1]
            base = base[: len(base) - (dots - 1)] if dots > 1 else base
            module = ".".join([*base, module.lstrip(".")] if module.lstrip(".") else base)
        if any(c.type == "wildcard_import" for c in node.named_children):
            self.import_(module, "*", "*", node)
        for n in node.children_by_field_name("name"):
            if n.type == "aliased_import":
                self.import_(module, self.text(n.child_by_field_name("name")),
                             self.text(n.child_by_field_name("alias")), node)
            else:
                self.import_(module, self.text(n), self.text(n), node)

    # -- Java --------------------------------------------------------------------------------------------
    _JAVA_TYPES = {"class_declaration": "class", "interface_declaration": "type", "enum_declaration": "type",
                   "record_declaration": "class", "annotation_type_declaration": "type"}

    def _java(self, root, container: str | None = None) -> None:
        for node in root.named_children:
            t = node.type
            if t == "package_declaration":
                self.package = self.text(next((c for c in node.named_children if "identifier" in c.type), None))
            elif t == "import_declaration":
                target = self.text(next((c for c in node.named_children if "identifier" in c.type), None))
                if any(c.type == "asterisk" for c in node.named_children):
                    self.import_(target, "*", "*", node)
                elif "." in target:
                    module, name = target.rsplit(".", 1)
                    self.import_(module, name, name, node)
            elif t in self._JAVA_TYPES:
                body = node.child_by_field_name("body")
                name = node.child_by_field_name("name")
                self.add(name, self._JAVA_TYPES[t], self.header(node, body), self.comment_above(node), container, node)
                if body is not None:
                    self._java(body, self.text(name))
            elif t in ("method_declaration", "constructor_declaration") and container:
                body = node.child_by_field_name("body")
                sig = self.header(node, body).rstrip(";")
                self.add(node.child_by_field_name("name"), "method", sig, self.comment_above(node), container, node)
            elif t in ("field_declaration", "constant_declaration") and container:
                mods = self.text(next((c for c in node.named_children if c.type == "modifiers"), None))
                kind = "constant" if ("static" in mods and "final" in mods) or t == "constant_declaration" else "field"
                for d in node.children_by_field_name("declarator"):
                    sig = _collapse(self.head(node, one_line=False).split("=")[0].split(";")[0]).strip()
                    self.add(d.child_by_field_name("name"), kind, sig, self.comment_above(node), container, node)
            elif t == "enum_body" or t == "enum_body_declarations":
                self._java(node, container)
            elif t == "enum_constant" and container:
                self.add(node.child_by_field_name("name"), "constant", _collapse(self.head(node)), "", container, node)

    # -- Go ----------------------------------------------------------------------------------------------
    def _go(self, root) -> None:
        for node in root.named_children:
            t = node.type
            if t == "package_clause":
                self.package = self.text(node.named_children[0]) if node.named_children else None
            elif t == "import_declaration":
                for spec in _descendants(node, "import_spec"):
                    path = self.text(spec.child_by_field_name("path")).strip('"`')
                    alias = self.text(spec.child_by_field_name("name")) or path.rsplit("/", 1)[-1]
                    self.import_(path, None, alias, spec)
            elif t in ("function_declaration", "method_declaration"):
                body = node.child_by_field_name("body")
                container = None
                if t == "method_declaration":
                    recv = node.child_by_field_name("receiver")
                    idents = [n for n in _descendants(recv, "type_identifier")] if recv is not None else []
                    container = self.text(idents[0]) if idents else None
                self.add(node.child_by_field_name("name"), "method" if container else "function",
                         self.header(node, body), self.comment_above(node), container, node)
            elif t == "type_declaration":
                for spec in node.named_children:
                    if spec.type not in ("type_spec", "type_alias"):
                        continue
                    name = spec.child_by_field_name("name")
                    typ = spec.child_by_field_name("type")
                    kind = "class" if typ is not None and typ.type == "struct_type" else "type"
                    body = typ if typ is not None and typ.type in ("struct_type", "interface_type") else None
                    sig = self.header(node if len(node.named_children) == 1 else spec, None if body is None else
                                      next((c for c in body.named_children), None))
                    self.add(name, kind, sig, self.comment_above(node), None, spec)
                    if body is not None:
                        self._go_members(body, self.text(name))
            elif t in ("const_declaration", "var_declaration"):
                kind = "constant" if t == "const_declaration" else "variable"
                for spec in node.named_children:
                    if spec.type in ("const_spec", "var_spec"):
                        for n in spec.children_by_field_name("name"):
                            self.add(n, kind, _collapse(self.head(spec)), self.comment_above(spec)
                                     or self.comment_above(node), None, spec)

    def _go_members(self, typ, container) -> None:
        for n in _descendants(typ, "field_declaration", "method_spec", "method_elem"):
            kind = "field" if n.type == "field_declaration" else "method"
            for name in n.children_by_field_name("name"):
                self.add(name, kind, _collapse(self.head(n)), "", container, n)

    # -- JavaScript / TypeScript --------------------------------------------------------------------------
    def _typescript(self, root) -> None:
        self._javascript(root)

    def _javascript(self, root, container: str | None = None) -> None:
        for node in root.named_children:
            t = node.type
            if t == "export_statement":
                inner = node.child_by_field_name("declaration")
                if inner is not None:
                    self._js_node(inner, container, node)
            elif t == "import_statement":
                self._js_import(node)
            else:
                self._js_node(node, container, node)

    def _js_import(self, node) -> None:
        source = self.text(node.child_by_field_name("source")).strip("'\"`")
        if source.startswith("."):
            source = posixpath.normpath(posixpath.join(posixpath.dirname(self.path), source))
            source = source[: -len("/index")] if source.endswith("/index") else source
            source = posixpath.splitext(source)[0] if posixpath.splitext(source)[1] in (".js", ".ts", ".jsx",
                                                                                         ".tsx", ".mjs") else source
        for clause in node.named_children:
            if clause.type != "import_clause":
                continue
            for c in clause.named_children:
                if c.type == "identifier":
                    self.import_(source, "default", self.text(c), node)
                elif c.type == "namespace_import":
                    ident = next((x for x in c.named_children if x.type == "identifier"), None)
                    self.import_(source, None, self.text(ident), node)
                elif c.type == "named_imports":
                    for spec in c.named_children:
                        if spec.type == "import_specifier":
                            name = self.text(spec.child_by_field_name("name"))
                            alias = self.text(spec.child_by_field_name("alias")) or name
                            self.import_(source, name, alias, node)

    _JS_CLASSES = {"class_declaration", "abstract_class_declaration", "class"}
    _TS_TYPES = {"interface_declaration", "type_alias_declaration", "enum_declaration"}

    def _js_node(self, node, container, outer) -> None:
        t = node.type
        if t in ("function_declaration", "generator_function_declaration", "function_signature"):
            body = node.child_by_field_name("body")
            self.add(node.child_by_field_name("name"), "function", self.header(node, body).rstrip(";"),
                     self.comment_above(outer), container, outer)
        elif t in self._JS_CLASSES:
            body = node.child_by_field_name("body")
            name = node.child_by_field_name("name")
            self.add(name, "class", self.header(node, body), self.comment_above(outer), container, outer)
            if body is not None:
                self._js_members(body, self.text(name))
        elif t in self._TS_TYPES:
            body = node.child_by_field_name("body")
            name = node.child_by_field_name("name")
            sig = self.header(node, body) if t != "type_alias_declaration" else _collapse(self.head(node, 4 * SIGNATURE_MAX)).rstrip(";")
            self.add(name, "type", sig, self.comment_above(outer), container, outer)
            if body is not None and t in ("interface_declaration", "enum_declaration"):
                self._js_members(body, self.text(name))
        elif t in ("lexical_declaration", "variable_declaration"):
            const = self.text(node).lstrip().startswith("const")
            for d in node.named_children:
                if d.type != "variable_declarator":
                    continue
                name = d.child_by_field_name("name")
                if name is None or name.type != "identifier":
                    continue
                value = d.child_by_field_name("value")
                if value is not None and value.type in ("arrow_function", "function_expression", "function"):
                    body = value.child_by_field_name("body")
                    sig = self.header(node, body).removesuffix("=>").rstrip()
                    kind = "function"
                else:
                    sig = _collapse(self.head(node)).rstrip(";")
                    kind = "constant" if const else "variable"
                self.add(name, kind, sig, self.comment_above(outer), container, outer)

    def _js_members(self, body, container) -> None:
        for m in body.named_children:
            t = m.type
            if t in ("method_definition", "method_signature", "abstract_method_signature"):
                name = m.child_by_field_name("name")
                b = m.child_by_field_name("body")
                kind = "method"
                head = self.text(m).lstrip()
                if head.startswith(("get ", "set ")):
                    if head.startswith("set "):
                        continue
                    kind = "property"
                self.add(name, kind, self.header(m, b).rstrip(";"), self.comment_above(m), container, m)
                if self.text(name) == "constructor" and b is not None:
                    self._constructor_fields(b, container, "assignment_expression", "member_expression",
                                             "property", "this")
            elif t in ("public_field_definition", "field_definition", "property_signature"):
                name = m.child_by_field_name("name") or m.child_by_field_name("property")
                sig = _collapse(self.head(m, one_line=False).split("=")[0].split(";")[0]).strip()
                self.add(name, "field", sig, self.comment_above(m), container, m)
            elif t == "enum_assignment" or t == "property_identifier":
                name = m.child_by_field_name("name") or m
                self.add(name, "constant", _collapse(self.head(m)), "", container, m)


def _descendants(node, *types):
    """Nodes of `types` under `node`, not descending into matches (iterative: deep trees are fine)."""
    stack = list(reversed(node.named_children))
    while stack:
        n = stack.pop()
        if n.type in types:
            yield n
        else:
            stack.extend(reversed(n.named_children))
