#!/usr/bin/env python3
"""Fail when sibling modules of a workspace crate import each other in a cycle, or when a
module is used from a file the layering rules do not allow.

Usage: scripts/check-imports.py [--root DIR] [--rule CRATE_DIR:MODULE=FILE,FILE...]
                                [--no-default-rules]

What it reads: every member of the Cargo workspace at --root (default: this script's repo).
Each crate root (src/lib.rs, src/main.rs, src/bin/*.rs, [lib]/[[bin]] paths) is a crate of
its own: a binary reaches its library by the crate name (`gateway::...`), never as a sibling.
Integration tests, benches and examples are separate crates using the public API: skipped.

The module tree follows `mod x;` declarations (x.rs beside an x/ folder, or x/mod.rs, and
`#[path = ...]`) and inline `mod x { ... }` blocks. Anything behind `#[cfg(test)]` (test
modules, inline or in their own file, test-only imports and helpers) is left out.

A reference is `crate::...` / `$crate::...`, `super::...`, `self::...` (in a `use`, each
branch of a grouped `use a::{b, c::d}`, or a full path in code) and `x::...` where x is a
child module of the module the code is in. Comments and string/char literals are blanked
first. A reference resolves to the longest existing module path; a name a module imports
(`pub use config::Config` in lib.rs, then `crate::Config` elsewhere) is followed to the
module it comes from.

Cycles: for every module P, child A of P depends on child B when code in A's subtree refers
to anything in B's subtree. Every strongly connected component of two or more children is
reported, with one `file:line: text` example for each edge in it.

Layering: LAYERING below, {crate dir: [(module path, files allowed to use it)]}; the module's
own subtree may always use it (as `crate::proxy::...` or `super::...`).

Exit status: 0 clean, 1 with findings, 2 when the workspace cannot be read.
"""

from __future__ import annotations

import argparse
import bisect
import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

# {crate dir relative to the workspace root: [(module path, files relative to the crate dir
# that may use it)]}. The module's own files may always use it.
LAYERING: dict[str, list[tuple[str, list[str]]]] = {
    "gateway": [
        ("proxy", ["src/main.rs", "src/control.rs", "src/admin.rs"]),
    ],
}

# Items that end at `;` or at their `{...}` body, never at a `,` (their generics may hold one).
ITEM_KEYWORDS = {
    "fn", "impl", "struct", "enum", "union", "trait", "mod", "use", "const", "static", "type",
    "extern", "unsafe", "async", "pub", "macro_rules", "let", "default", "auto",
}
PATH_STARTS = {"crate", "$crate", "super", "self"}
TOKEN_RE = re.compile(r"r#[A-Za-z_]\w*|\$?[A-Za-z_]\w*|::|\S")
IDENT_RE = re.compile(r"\$?[A-Za-z_]\w*$")
PATH_ATTR_RE = re.compile(r'^\s*path\s*=\s*"([^"]*)"\s*$')
PREFIXED_LITERAL_RE = re.compile(r'[bc]?r(#*)"|[bc]"|b\'')


# --- lexing ----------------------------------------------------------------------------------


def blank_comments_and_strings(src: str) -> str:
    """The source with comments, string and char literals replaced by spaces (newlines kept,
    so offsets and line numbers stay those of the file). Lifetimes are kept."""
    out = list(src)
    n = len(src)
    i = 0

    def blank(a: int, b: int) -> None:
        for k in range(a, min(b, n)):
            if out[k] != "\n":
                out[k] = " "

    def ident_char(c: str) -> bool:
        return c.isalnum() or c == "_"

    while i < n:
        c = src[i]
        if c == "/" and src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            blank(i, j)
            i = j
        elif c == "/" and src.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if src.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif src.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            blank(i, j)
            i = j
        elif c in "rbc" and (i == 0 or not ident_char(src[i - 1])) and (
            m := PREFIXED_LITERAL_RE.match(src, i)
        ):
            # r"..", r#".."#, br"..", cr"..", b"..", c"..", b'.'; an identifier otherwise.
            if m.group(1) is not None:  # raw: ends at a quote followed by as many hashes
                close = '"' + m.group(1)
                end = src.find(close, m.end())
                end = n if end < 0 else end + len(close)
            elif m.group(0).endswith('"'):
                end = _string_end(src, m.end())
            else:
                end = _char_end(src, m.end() - 1)
                end = end if end > m.end() - 1 else m.end()
            blank(i, end)
            i = end
        elif c == '"':
            end = _string_end(src, i + 1)
            blank(i, end)
            i = end
        elif c == "'":
            end = _char_end(src, i)
            if end > i:
                blank(i, end)
                i = end
            else:
                i += 1  # a lifetime or label
        elif ident_char(c):
            j = i
            while j < n and ident_char(src[j]):
                j += 1
            i = j
        else:
            i += 1
    return "".join(out)


def _string_end(src: str, i: int) -> int:
    """Offset just past the closing quote of a string whose body starts at i."""
    n = len(src)
    while i < n:
        c = src[i]
        if c == "\\":
            i += 2
        elif c == '"':
            return i + 1
        else:
            i += 1
    return n


def _char_end(src: str, i: int) -> int:
    """src[i] is a quote: the offset past a char literal starting there, or i for a lifetime."""
    n = len(src)
    if i + 1 < n and src[i + 1] == "\\":
        j = src.find("'", i + 2 if src[i + 2 : i + 3] != "'" else i + 3)
        return i if j < 0 or j - i > 12 else j + 1
    if i + 2 < n and src[i + 2] == "'" and src[i + 1] != "\n":
        return i + 3
    return i


# --- model -----------------------------------------------------------------------------------


@dataclass
class Crate:
    display: str  # "gateway", "gateway (bin)"
    dir: Path  # the package folder, absolute
    reldir: str  # the package folder relative to the workspace root
    root: Path  # src/lib.rs or a binary's root file
    kind: str  # "lib" | "bin"
    lib: "Crate | None" = None  # for a binary: the package's library, reached by lib_name
    lib_name: str = ""
    modules: dict[tuple[str, ...], Path] = field(default_factory=dict)
    imports: dict[tuple[str, ...], dict[str, "Import"]] = field(default_factory=dict)
    refs: list["RawRef"] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    test_paths: list[Path] = field(default_factory=list)  # x for x.rs and x/ of test modules


@dataclass
class RawRef:
    module: tuple[str, ...]  # the module the code is in
    segs: list[str]  # the path as written: ["crate", "proxy", "upstream", "f"]
    file: Path
    line: int
    text: str


@dataclass
class Import:
    segs: list[str]
    file: Path
    line: int


@dataclass
class Ref:
    crate: Crate
    module: tuple[str, ...]
    target_crate: Crate
    target: tuple[str, ...]
    file: Path
    line: int
    text: str


def is_cfg_test(attr: str) -> bool:
    """`cfg(test)` or `cfg(all(test, ...))`: code that exists only in test builds."""
    a = re.sub(r"\s+", "", attr)
    if a == "cfg(test)":
        return True
    m = re.fullmatch(r"cfg\(all\((.*)\)\)", a)
    if m:
        depth, part, parts = 0, "", []
        for ch in m.group(1):
            if ch == "," and depth == 0:
                parts.append(part)
                part = ""
                continue
            depth += ch == "("
            depth -= ch == ")"
            part += ch
        parts.append(part)
        return "test" in parts
    return False


# --- parsing one file ------------------------------------------------------------------------


class FileParser:
    def __init__(self, crate: Crate, path: Path, modpath: tuple[str, ...], root: Path):
        self.crate = crate
        self.path = path
        self.modpath = modpath
        self.root = root
        self.raw = path.read_text(encoding="utf-8", errors="replace")
        self.lines = self.raw.split("\n")
        clean = blank_comments_and_strings(self.raw)
        self.toks: list[str] = []
        self.pos: list[int] = []
        for m in TOKEN_RE.finditer(clean):
            t = m.group(0)
            self.toks.append(t[2:] if t.startswith("r#") else t)
            self.pos.append(m.start())
        self.nl = [i for i, ch in enumerate(self.raw) if ch == "\n"]
        self.children: list[tuple[tuple[str, ...], Path | None, int, Path]] = []
        self.excluded = False  # set by `#![cfg(test)]` at the top of the file

    def line_of(self, k: int) -> int:
        return bisect.bisect_left(self.nl, self.pos[k]) + 1 if k < len(self.pos) else len(self.nl) + 1

    def text_of(self, line: int) -> str:
        return self.lines[line - 1].strip() if 0 < line <= len(self.lines) else ""

    def tok(self, k: int) -> str:
        return self.toks[k] if k < len(self.toks) else ""

    def child_dir(self) -> Path:
        if self.path.name in ("lib.rs", "main.rs", "mod.rs") or self.modpath == ():
            return self.path.parent
        return self.path.parent / self.path.stem

    def matching(self, k: int) -> int:
        """k is at an opening bracket: the index of its closing one (or the end)."""
        depth = 0
        for j in range(k, len(self.toks)):
            t = self.toks[j]
            if t in "([{":
                depth += 1
            elif t in ")]}":
                depth -= 1
                if depth == 0:
                    return j
        return len(self.toks) - 1

    def skip_item(self, k: int) -> int:
        """The index just past the item/statement/field starting at k (attribute removed)."""
        j = k
        while self.tok(j) == "pub" and self.tok(j + 1) == "(":
            j = self.matching(j + 1) + 1
        keyword = self.tok(j) in ITEM_KEYWORDS or self.tok(k) == "pub"
        depth = 0
        n = len(self.toks)
        while j < n:
            t = self.toks[j]
            if t in "([":
                depth += 1
            elif t in ")]":
                if depth == 0:
                    return j
                depth -= 1
            elif t == "{":
                if depth == 0:
                    return self.matching(j) + 1
                depth += 1
            elif t == "}":
                if depth == 0:
                    return j
                depth -= 1
            elif t == ";" and depth == 0:
                return j + 1
            elif t == "," and depth == 0 and not keyword:
                return j + 1
            j += 1
        return n

    def parse(self) -> None:
        crate = self.crate
        toks = self.toks
        n = len(toks)
        # (module path, brace depth of its body, folder of its `mod x;` files)
        ctx: list[tuple[tuple[str, ...], int, Path]] = [(self.modpath, 0, self.child_dir())]
        depth = 0
        pending: list[str] = []  # attributes (raw text) before the current item
        item_attrs: list[str] = []
        i = 0
        while i < n:
            t = toks[i]
            if t == "#" and (self.tok(i + 1) == "[" or (self.tok(i + 1) == "!" and self.tok(i + 2) == "[")):
                inner = self.tok(i + 1) == "!"
                lb = i + 2 if inner else i + 1
                rb = self.matching(lb)
                attr = self.raw[self.pos[lb] + 1 : self.pos[rb]] if rb < n else ""
                # Use the blanked text for the cfg test (a `cfg(test)` in a comment is no cfg).
                attr_clean = " ".join(toks[lb + 1 : rb])
                if inner:
                    # `#![cfg(test)]` at the top of a file: the whole module is test-only.
                    if is_cfg_test(attr_clean) and len(ctx) == 1 and depth == 0:
                        self.excluded = True
                        return
                else:
                    pending.append(("TEST " if is_cfg_test(attr_clean) else "") + attr)
                i = rb + 1
                continue
            if pending:
                if any(a.startswith("TEST ") for a in pending):
                    pending_test, pending = pending, []
                    k = i
                    if self.tok(k) == "pub":
                        k = self.matching(k + 1) + 1 if self.tok(k + 1) == "(" else k + 1
                    if self.tok(k) == "mod" and self.tok(k + 2) == ";":
                        # A test module's file (and its folder): known, not checked.
                        crate.test_paths.append(ctx[-1][2] / self.tok(k + 1))
                        for a in pending_test:
                            if m := PATH_ATTR_RE.match(a.removeprefix("TEST ")):
                                base = self.path.parent if len(ctx) == 1 else ctx[-1][2]
                                crate.test_paths.append((base / m.group(1)).with_suffix(""))
                    i = self.skip_item(i)
                    continue
                item_attrs, pending = pending, []
            elif t not in ("pub", "mod"):
                item_attrs = []  # `#[path]` reaches `mod x;` through `pub` / `pub(...)` only
            cur, cur_depth, cur_dir = ctx[-1]
            if t == "mod" and IDENT_RE.match(self.tok(i + 1)) and self.tok(i + 2) in (";", "{"):
                name = self.tok(i + 1)
                child = cur + (name,)
                path_attr = next(
                    (m.group(1) for a in item_attrs if (m := PATH_ATTR_RE.match(a))), None
                )
                item_attrs = []
                if self.tok(i + 2) == ";":
                    if path_attr is not None:
                        base = self.path.parent if len(ctx) == 1 else cur_dir
                        f = base / path_attr
                        file = f if f.is_file() else None
                    else:
                        file = next(
                            (f for f in (cur_dir / f"{name}.rs", cur_dir / name / "mod.rs") if f.is_file()),
                            None,
                        )
                    self.children.append((child, file, self.line_of(i), cur_dir / f"{name}.rs"))
                    i += 3
                else:
                    crate.modules[child] = self.path
                    sub_dir = cur_dir / (path_attr if path_attr else name)
                    depth += 1
                    ctx.append((child, depth, sub_dir))
                    i += 3
                continue
            if t == "{":
                depth += 1
            elif t == "}":
                depth -= 1
                if len(ctx) > 1 and depth < ctx[-1][1]:
                    ctx.pop()
            elif t == "pub" and self.tok(i + 1) == "(":
                i = self.matching(i + 1) + 1  # pub(crate), pub(in crate::x): no reference
                continue
            elif t == "use" and self.tok(i - 1) not in ("::", "."):
                i = self.parse_use(i, cur, module_level=(depth == cur_depth))
                continue
            elif (
                IDENT_RE.match(t)
                and self.tok(i + 1) == "::"
                and self.tok(i - 1) not in ("::", ".", "$")
                and IDENT_RE.match(self.tok(i + 2))
            ):
                i = self.parse_code_path(i, cur)
                continue
            i += 1

    def parse_code_path(self, i: int, cur: tuple[str, ...]) -> int:
        segs = [self.toks[i]]
        j = i + 1
        while self.tok(j) == "::" and IDENT_RE.match(self.tok(j + 1)):
            segs.append(self.tok(j + 1))
            j += 2
        line = self.line_of(j - 1)
        self.crate.refs.append(RawRef(cur, segs, self.path, line, self.text_of(line)))
        return j

    def parse_use(self, i: int, cur: tuple[str, ...], module_level: bool) -> int:
        """i is at `use`: record every path of the tree; returns the index past its `;`."""
        use_line = self.line_of(i)
        paths: list[tuple[list[str], int, str]] = []
        j = self.parse_tree(i + 1, [], paths)
        while j < len(self.toks) and self.toks[j] != ";":
            j += 1
        for segs, line, alias in paths:
            if not segs:
                continue
            text = self.text_of(line)
            if line != use_line:
                text = f"{self.text_of(use_line)} … {text}"
            self.crate.refs.append(RawRef(cur, segs, self.path, line, text))
            if module_level and alias not in ("*", "_"):
                self.crate.imports.setdefault(cur, {})[alias] = Import(segs, self.path, line)
        return j + 1

    def parse_tree(self, j: int, prefix: list[str], out: list) -> int:
        segs = list(prefix)
        if self.tok(j) == "::":
            if not segs:
                segs.append("::")  # `use ::name`: an extern crate, never a module
            j += 1
        while j < len(self.toks):
            t = self.toks[j]
            if t == "{":
                j += 1
                while j < len(self.toks) and self.toks[j] not in ("}", ";"):
                    before = j
                    j = self.parse_tree(j, segs, out)
                    if self.tok(j) == ",":
                        j += 1
                    if j == before:
                        j += 1
                return j + 1 if self.tok(j) == "}" else j
            if t == "*":
                out.append((segs, self.line_of(j), "*"))
                return j + 1
            if IDENT_RE.match(t):
                segs.append(t)
                line = self.line_of(j)
                j += 1
                if self.tok(j) == "::":
                    j += 1
                    continue
                alias = segs[-1]
                if segs[-1] == "self" and len(segs) > 1:
                    segs.pop()
                    alias = segs[-1]
                if self.tok(j) == "as" and self.tok(j + 1):
                    alias = self.tok(j + 1)
                    j += 2
                out.append((segs, line, alias))
                return j
            return j
        return j


# --- workspace and crates --------------------------------------------------------------------


def read_toml(path: Path) -> dict:
    with path.open("rb") as f:
        return tomllib.load(f)


def workspace_packages(root: Path) -> list[Path]:
    manifest = read_toml(root / "Cargo.toml")
    ws = manifest.get("workspace")
    dirs: list[Path] = []
    if "package" in manifest:
        dirs.append(root)
    if ws:
        excluded = {(root / e).resolve() for e in ws.get("exclude", [])}
        for member in ws.get("members", []):
            for d in sorted(root.glob(member)) if any(ch in member for ch in "*?[") else [root / member]:
                if (d / "Cargo.toml").is_file() and d.resolve() not in excluded and d not in dirs:
                    dirs.append(d)
    return dirs


def package_crates(root: Path, pkg: Path) -> list[Crate]:
    manifest = read_toml(pkg / "Cargo.toml")
    name = manifest.get("package", {}).get("name", pkg.name)
    reldir = pkg.relative_to(root).as_posix() if pkg != root else "."
    crates: list[Crate] = []
    lib_cfg = manifest.get("lib", {})
    lib_root = pkg / lib_cfg.get("path", "src/lib.rs")
    lib = None
    lib_name = lib_cfg.get("name", name).replace("-", "_")
    if lib_root.is_file():
        lib = Crate(name, pkg, reldir, lib_root, "lib", lib_name=lib_name)
        crates.append(lib)
    bins: list[tuple[str, Path]] = []
    for b in manifest.get("bin", []):
        p = b.get("path")
        if p is None:
            bname = b.get("name", name)
            for cand in (f"src/bin/{bname}.rs", f"src/bin/{bname}/main.rs", "src/main.rs"):
                if (pkg / cand).is_file():
                    p = cand
                    break
        if p:
            bins.append((b.get("name", name), pkg / p))
    if manifest.get("package", {}).get("autobins", True):
        if (pkg / "src/main.rs").is_file():
            bins.append((name, pkg / "src/main.rs"))
        bindir = pkg / "src/bin"
        if bindir.is_dir():
            for f in sorted(bindir.glob("*.rs")):
                bins.append((f.stem, f))
            for f in sorted(bindir.glob("*/main.rs")):
                bins.append((f.parent.name, f))
    seen: set[Path] = set()
    for bname, broot in bins:
        if broot in seen or not broot.is_file():
            continue
        seen.add(broot)
        label = "bin" if bname == name else f"bin {bname}"
        crates.append(Crate(f"{name} ({label})", pkg, reldir, broot, "bin", lib=lib, lib_name=lib_name))
    return crates


def load_crate(root: Path, crate: Crate) -> None:
    """Walks the module tree from the crate root, collecting modules, imports and references."""
    queue: list[tuple[tuple[str, ...], Path]] = [((), crate.root)]
    crate.modules[()] = crate.root
    seen: set[Path] = set()
    while queue:
        modpath, path = queue.pop(0)
        if path in seen:
            continue
        seen.add(path)
        parser = FileParser(crate, path, modpath, root)
        parser.parse()
        if parser.excluded:
            crate.modules.pop(modpath, None)
            crate.refs = [r for r in crate.refs if r.file != path]
            continue
        for child, file, line, expected in parser.children:
            if file is None:
                crate.warnings.append(
                    f"{rel(root, path)}:{line}: `mod {child[-1]};` has no file "
                    f"({rel(root, expected)} or {rel(root, expected.with_suffix(''))}/mod.rs)"
                )
                continue
            crate.modules[child] = file
            queue.append((child, file))


def unreached_files(root: Path, crates: list[Crate]) -> list[str]:
    """Sources under a package's src/ that no crate compiles (an unfinished move?)."""
    out = []
    for d in sorted({c.dir for c in crates}):
        in_dir = [c for c in crates if c.dir == d]
        loaded = {f.resolve() for c in in_dir for f in c.modules.values()}
        tests = [t.resolve() for c in in_dir for t in c.test_paths]
        for f in sorted((d / "src").rglob("*.rs")):
            r = f.resolve()
            if r in loaded or any(r == t.with_suffix(".rs") or t in r.parents for t in tests):
                continue
            out.append(f"{rel(root, f)} is in no module tree (no `mod` declares it): not checked")
    return out


def rel(root: Path, p: Path) -> str:
    try:
        return p.relative_to(root).as_posix()
    except ValueError:
        return p.as_posix()


def modname(path: tuple[str, ...]) -> str:
    return "::".join(("crate",) + path)


# --- resolution ------------------------------------------------------------------------------


class Resolver:
    def __init__(self, root: Path):
        self.root = root
        self.memo: dict[tuple[int, tuple[str, ...], str], tuple | None] = {}
        self.active: set = set()

    def resolve(self, crate: Crate, module: tuple[str, ...], segs: list[str]) -> list[tuple]:
        """The modules a path refers to, as [(crate, module, exact, note)]; empty when it
        leaves the crate (std, dependencies). First the longest module prefix of the path as
        written; then, when the path goes on through a name a module imports (a re-export),
        the module that name comes from, with a note saying which import. exact: the whole
        path names a module."""
        first, rest = segs[0], segs[1:]
        hits: list[tuple] = []
        note = ""
        if first in ("crate", "$crate"):
            cur: tuple[str, ...] = ()
        elif first == "super":
            if not module:
                return []
            cur = module[:-1]
        elif first == "self":
            cur = module
        elif module + (first,) in crate.modules:
            cur = module + (first,)
        elif crate.kind == "bin" and crate.lib is not None and first == crate.lib_name:
            crate, cur = crate.lib, ()
        else:
            return []
        exact = True
        for s in rest:
            if s == "super":
                if not cur:
                    return hits
                cur = cur[:-1]
                continue
            if s == "self":
                continue
            if cur + (s,) in crate.modules:
                cur = cur + (s,)
                continue
            target = self.follow_import(crate, cur, s)
            if target is None:
                exact = False
                break
            tcrate, tmod, texact, imp = target
            if not hits:
                hits.append((crate, cur, False, ""))  # the path as written names this one
            if not note:
                note = f"via `{'::'.join(imp.segs)}` at {rel(self.root, imp.file)}:{imp.line}"
            crate, cur = tcrate, tmod
            if not texact:
                exact = False
                break
        if hits and hits[0][0] is crate and hits[0][1] == cur:
            return hits
        return hits + [(crate, cur, exact, note)]

    def follow_import(self, crate: Crate, module: tuple[str, ...], name: str):
        imp = crate.imports.get(module, {}).get(name)
        if imp is None:
            return None
        key = (id(crate), module, name)
        if key in self.memo:
            return self.memo[key]
        if key in self.active:
            return None
        self.active.add(key)
        hits = self.resolve(crate, module, imp.segs)
        self.active.discard(key)
        out = (hits[-1][0], hits[-1][1], hits[-1][2], imp) if hits else None
        self.memo[key] = out
        return out


# --- analysis --------------------------------------------------------------------------------


def tarjan(nodes: list[str], edges: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(sorted(comp))

    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


def parse_rule(spec: str) -> tuple[str, str, list[str]]:
    m = re.fullmatch(r"([^:=]+):([\w:]+)=(.*)", spec)
    if not m:
        raise SystemExit(f"check-imports: bad --rule {spec!r}, want CRATE_DIR:MODULE=FILE,FILE")
    mod = m.group(2).removeprefix("crate::")
    return m.group(1).strip("/"), mod, [f for f in m.group(3).split(",") if f]


def check(root: Path, rules: dict[str, list[tuple[str, list[str]]]], out=sys.stdout, err=sys.stderr) -> int:
    root = root.resolve()
    try:
        crates = [c for pkg in workspace_packages(root) for c in package_crates(root, pkg)]
    except (OSError, tomllib.TOMLDecodeError) as e:
        print(f"check-imports: cannot read the workspace at {root}: {e}", file=err)
        return 2
    for crate in crates:
        load_crate(root, crate)
    resolver = Resolver(root)
    refs: list[Ref] = []
    for crate in crates:
        for r in crate.refs:
            for tcrate, target, _exact, note in resolver.resolve(crate, r.module, r.segs):
                text = f"{r.text}  ({note})" if note else r.text
                refs.append(Ref(crate, r.module, tcrate, target, r.file, r.line, text))

    problems: list[str] = []
    for w in unreached_files(root, crates):
        print(f"warning: {w}", file=err)
    for crate in crates:
        for w in crate.warnings:
            print(f"warning: {w}", file=err)
        # parent -> (child a, child b) -> references
        graph: dict[tuple[str, ...], dict[tuple[str, str], list[Ref]]] = {}
        for r in refs:
            if r.crate is not crate or r.target_crate is not crate:
                continue
            src, dst = r.module, r.target
            k = 0
            while k < len(src) and k < len(dst) and src[k] == dst[k]:
                k += 1
            if k < len(src) and k < len(dst):
                graph.setdefault(src[:k], {}).setdefault((src[k], dst[k]), []).append(r)
        cycles = []
        for parent in sorted(graph):
            edges: dict[str, set[str]] = {}
            for a, b in graph[parent]:
                edges.setdefault(a, set()).add(b)
            nodes = sorted({x for e in graph[parent] for x in e})
            for comp in tarjan(nodes, edges):
                if len(comp) >= 2:
                    cycles.append((parent, comp))
        for parent, comp in cycles:
            lines = [
                f"import cycle in {crate.display} among the children of {modname(parent)}: "
                + ", ".join(comp)
            ]
            members = set(comp)
            for (a, b), rs in sorted(graph[parent].items()):
                if a in members and b in members:
                    rs = sorted(rs, key=lambda r: (rel(root, r.file), r.line))
                    ex = rs[0]
                    more = len({(x.file, x.line) for x in rs}) - 1
                    tail = f"  (+{more} more)" if more else ""
                    lines.append(f"  {a} -> {b}: {rel(root, ex.file)}:{ex.line}: {ex.text}{tail}")
            problems.append("\n".join(lines))
        n = len(crate.modules)
        status = "no import cycle" if not cycles else (
            "1 import cycle" if len(cycles) == 1 else f"{len(cycles)} import cycles")
        print(f"{crate.display}: {n} module{'s' if n != 1 else ''}, {status}", file=out)

    for reldir, entries in sorted(rules.items()):
        in_dir = [c for c in crates if c.reldir == reldir]
        for mod, allowed in entries:
            mp = tuple(s for s in mod.split("::") if s)
            if not any(mp in c.modules for c in in_dir if c.kind == "lib") and not any(
                mp in c.modules for c in in_dir
            ):
                print(f"warning: layering rule: no module {modname(mp)} in {reldir}", file=err)
                continue
            allowed_files = {(Path(root, reldir, f)).resolve() for f in allowed}
            bad: dict[tuple[str, int], Ref] = {}
            for r in refs:
                if r.target_crate.reldir != reldir or r.target[: len(mp)] != mp:
                    continue
                if r.crate is r.target_crate and r.module[: len(mp)] == mp:
                    continue  # the module's own subtree
                if r.file.resolve() in allowed_files:
                    continue
                bad.setdefault((rel(root, r.file), r.line), r)
            where = ", ".join(f"{reldir}/{f}" for f in allowed)
            if bad:
                lines = [f"layering: {modname(mp)} of {reldir} is used outside {where} "
                         f"(and its own files):"]
                for (f, line), r in sorted(bad.items()):
                    lines.append(f"  {f}:{line}: {r.text}")
                problems.append("\n".join(lines))
            else:
                print(f"{reldir}: {modname(mp)} used only from {where}", file=out)

    if problems:
        out.flush()
        print("", file=err)
        for p in problems:
            print(f"error: {p}", file=err)
        ncyc = sum(p.startswith("import cycle") for p in problems)
        print(f"\ncheck-imports: {len(problems)} problem(s): {ncyc} import cycle(s), "
              f"{len(problems) - ncyc} layering violation(s)", file=err)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent,
                    help="the workspace root (default: the repository this script is in)")
    ap.add_argument("--rule", action="append", default=[], metavar="CRATE_DIR:MODULE=FILE,...",
                    help="a layering rule added to LAYERING, e.g. gateway:proxy=src/main.rs,src/admin.rs")
    ap.add_argument("--no-default-rules", action="store_true", help="ignore the LAYERING table")
    args = ap.parse_args(argv)
    rules: dict[str, list[tuple[str, list[str]]]] = (
        {} if args.no_default_rules else {k: list(v) for k, v in LAYERING.items()})
    for spec in args.rule:
        d, mod, files = parse_rule(spec)
        rules.setdefault(d, []).append((mod, files))
    return check(args.root, rules)


if __name__ == "__main__":
    sys.exit(main())
