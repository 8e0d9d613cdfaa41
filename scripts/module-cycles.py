#!/usr/bin/env python3
"""Fails on import cycles between the modules of one Rust library crate.

Usage: scripts/module-cycles.py CRATE_DIR [CRATE_DIR ...]

Reads CRATE_DIR/src/**/*.rs (the binary roots `main.rs` and `src/bin/` are a different crate
and are left out) and prints every cycle it finds, one line each, then exits 1; with no cycle
it prints a one-line summary and exits 0. Exit 2 is bad usage.

What counts as a module (the graph's granularity): a top-level module (`src/spec.rs`,
`src/http/mod.rs`) and its direct submodules (`src/http/client.rs`, `src/rr/wire.rs`).
Deeper files and inline modules (`mod tests { .. }`) belong to the file-level node above
them, so a cycle reads as "which folders or files lean on each other", the level at which
DESIGN.md states its dependency rules. The crate root (`lib.rs`) is the node `crate`.

What counts as an edge: every path that starts with `crate::`, `$crate::`, `super::` or
`self::`, in `use` trees (`use crate::{a::X, b::{Y, Z}}`) and in expressions and types
alike, with comments and string literals ignored. A module reaching into its own
descendants is no edge: a parent declares its children and re-exports what they offer,
which is how a folder module works. A child reaching up into its parent (`super::Shared`)
is an edge, so a parent that holds types its children use may not depend back on
something that depends on those children.
"""

import re
import sys
from pathlib import Path

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
PATH_RE = re.compile(r"(\$?)\b(crate|super|self)((?:\s*::\s*(?:r#)?" + IDENT + r")+)")
USE_RE = re.compile(r"\buse\s+([^;]*);")
MOD_BLOCK_RE = re.compile(r"\bmod\s+(" + IDENT + r")\s*\{")


def strip_comments_and_strings(text):
    """Blanks comments, string and char literals, keeping newlines and braces elsewhere."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
            out.append(" ")
        elif m := re.match(r'b?r(#*)"', text[i:]):
            end = text.find('"' + m.group(1), i + m.end())
            i = n if end < 0 else end + 1 + len(m.group(1))
            out.append('""')
        elif c == '"' or text.startswith('b"', i):
            i += 1 if c == '"' else 2
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            i += 1
            out.append('""')
        elif m := re.match(r"b?'(?:\\u\{[0-9a-fA-F]+\}|\\x[0-9a-fA-F]{2}|\\.|[^\\'\n])'", text[i:]):
            i += m.end()
            out.append("' '")
        else:
            out.append(c)
            i += 1
    return "".join(out)


def expand_use_tree(tree):
    """`crate::{a::X, b::{Y, Z}}` -> ["crate::a::X", "crate::b::Y", "crate::b::Z"]."""
    tree = re.sub(r"\s+", "", re.sub(r"\s+as\s+" + IDENT, "", tree))
    results = []

    def walk(prefix, s):
        depth, start, parts = 0, 0, []
        for k, ch in enumerate(s):
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            elif ch == "," and depth == 0:
                parts.append(s[start:k])
                start = k + 1
        parts.append(s[start:])
        for part in parts:
            if not part:
                continue
            brace = part.find("{")
            if brace >= 0 and part.endswith("}"):
                head = part[:brace].rstrip(":")
                walk(join(prefix, head), part[brace + 1 : -1])
            else:
                results.append(join(prefix, part))

    def join(a, b):
        return b if not a else (a if not b else a + "::" + b)

    walk("", tree)
    return results


def module_of(rel):
    """Module path of a file below src/: `http/client.rs` -> ["http", "client"]."""
    parts = list(rel.with_suffix("").parts)
    if parts[-1] in ("mod", "lib"):
        parts.pop()
    return parts


class Crate:
    """The files of one crate's library and the module graph between them."""

    def __init__(self, crate_dir):
        self.src = Path(crate_dir) / "src"
        if not (self.src / "lib.rs").is_file():
            raise SystemExit(f"error: {self.src / 'lib.rs'} not found: not a library crate")
        self.files = {}
        for path in sorted(self.src.rglob("*.rs")):
            rel = path.relative_to(self.src)
            if rel.parts[0] == "bin" or rel == Path("main.rs"):
                continue
            self.files[rel] = module_of(rel)
        self.modules = {tuple(m) for m in self.files.values()}

    def node(self, segments):
        """The graph node a module path falls in: its longest known prefix, at most two deep."""
        for depth in (2, 1):
            if len(segments) >= depth and tuple(segments[:depth]) in self.modules:
                return "::".join(segments[:depth])
        return "crate"

    def edges(self):
        """{node: {node it depends on: first "file:line" that says so}}."""
        graph = {self.node(m) if m else "crate": {} for m in self.files.values()}
        for rel, module in self.files.items():
            text = strip_comments_and_strings((self.src / rel).read_text(encoding="utf-8"))
            here = self.node(module) if module else "crate"
            for offset, path in self.paths(text):
                scope = module + self.inline_scope(text, offset)
                target = self.resolve(scope, path)
                if target is None:
                    continue
                there = self.node(target) if target else "crate"
                if there == here or is_descendant(there, here):
                    continue
                line = text.count("\n", 0, offset) + 1
                graph[here].setdefault(there, f"{self.src / rel}:{line}")
        return graph

    @staticmethod
    def paths(text):
        """(offset, "crate::a::b") for every path rooted at crate/super/self."""
        found = []
        for m in USE_RE.finditer(text):
            for p in expand_use_tree(m.group(1)):
                if p.startswith(("crate::", "$crate::", "super::", "self::", "::")):
                    found.append((m.start(), p.lstrip(":")))
        use_spans = [(m.start(), m.end()) for m in USE_RE.finditer(text)]
        for m in PATH_RE.finditer(text):
            if any(a <= m.start() < b for a, b in use_spans):
                continue
            found.append((m.start(), m.group(1) + m.group(2) + re.sub(r"\s+", "", m.group(3))))
        return found

    @staticmethod
    def inline_scope(text, offset):
        """Names of the inline `mod x { .. }` blocks that enclose `offset`."""
        scope = []
        for m in MOD_BLOCK_RE.finditer(text, 0, offset):
            depth, k = 1, m.end()
            while k < offset and depth:
                if text[k] == "{":
                    depth += 1
                elif text[k] == "}":
                    depth -= 1
                k += 1
            if depth:
                scope.append(m.group(1))
        return scope

    @staticmethod
    def resolve(scope, path):
        """Absolute module path (list) that `path`, written inside `scope`, points into."""
        segs = [s.removeprefix("r#") for s in path.split("::")]
        if segs[0] in ("crate", "$crate"):
            return segs[1:]
        base = list(scope)
        while segs and segs[0] in ("super", "self"):
            if segs.pop(0) == "super":
                if not base:
                    return None
                base.pop()
        return base + segs


def is_descendant(node, ancestor):
    return ancestor == "crate" or node.startswith(ancestor + "::")


def cycles(graph):
    """Every elementary cycle once, each rotated to start at its smallest node."""
    found = set()
    nodes = sorted(graph)
    for start in nodes:
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in sorted(graph.get(node, {})):
                if nxt == start:
                    found.add(tuple(path))
                elif nxt > start and nxt not in path:
                    stack.append((nxt, path + [nxt]))
    return sorted(found, key=lambda c: (len(c), c))


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    status = 0
    for crate_dir in argv[1:]:
        crate = Crate(crate_dir)
        graph = crate.edges()
        found = cycles(graph)
        edges = sum(len(v) for v in graph.values())
        if not found:
            print(f"{crate_dir}: no module cycles ({len(graph)} modules, {edges} edges)")
            continue
        status = 1
        print(f"{crate_dir}: {len(found)} module cycle(s) ({len(graph)} modules, {edges} edges)")
        for cyc in found:
            ring = list(cyc) + [cyc[0]]
            steps = ", ".join(f"{a} -> {b} ({graph[a][b]})" for a, b in zip(ring, ring[1:]))
            print(f"cycle: {' -> '.join(ring)}\n  {steps}")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv))
