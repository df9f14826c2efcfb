#!/usr/bin/env python3
"""Check the import rules of the vigil crate: no circle between top-level
modules, and none of the absences docs/ARCHITECTURE.md states is breached.

Why a script and not a crate: the rules are about the crate's own module
graph, which only needs the `crate::`/`super::` paths in its sources; reading
them as text keeps `make lint` fast and dependency-free.

What counts as an import: every `crate::a::b` or `super::...` path in code
(`use` lines, grouped `use crate::{a, b::c}` forms and inline paths alike),
resolved to a module path. Comments do not count, and neither does test code
(`#[cfg(test)]` modules, inline or in their own file): tests may compose
modules the way dev-dependencies do in a workspace.

The rules are in scripts/import-rules.txt, one line each:

    <module path> [...] !-> <module path> [<module path> ...]   # why

meaning no file of the modules on the left refers to anything inside the
ones on the right.
A module path is `a` or `a::b` (`web::server`). `*` on the right stands for
every other top-level module (a leaf); `*` on the left for every module
outside the top-level module of the one on the right (`* !-> hw::mpp_sys`:
only `hw` itself may use it).

Usage: check-imports.py [SRC_DIR [RULES_FILE]]   (defaults: app/src and
scripts/import-rules.txt). Exits 1 and names file, line and rule on a breach.
"""

import os
import re
import sys
from collections import defaultdict

PATH_RE = re.compile(r"\b(crate|super)((?:::(?:super|[A-Za-z_][A-Za-z0-9_]*))*)(::\{)?")
IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def strip_comments_and_strings(text):
    """Blank out comments, string and char literals, keeping line numbers."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append("\n" * text.count("\n", i, j))
            i = j
        elif c in "br" and re.match(r'b?r#*"', text[i:i + 70]) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            raw = re.match(r'b?r(#*)"', text[i:])
            hashes = raw.group(1)
            end = text.find('"' + hashes, i + raw.end())
            end = n if end < 0 else end + 1 + len(hashes)
            out.append("\n" * text.count("\n", i, end))
            i = end
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append('""' + "\n" * text.count("\n", i, j))
            i = j + 1
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", text[i:i + 4]) or (c == "'" and re.match(r"'\\u\{[0-9a-fA-F]+\}'", text[i:i + 12])):
            j = text.find("'", i + 2 if text[i + 1] == "\\" else i + 1)
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def strip_test_modules(code):
    """Remove inline `#[cfg(test)] mod x { ... }` bodies; return the code and
    the names of out-of-line test modules (`#[cfg(test)] mod x;`)."""
    test_files = set()
    result = []
    pos = 0
    for m in re.finditer(r"#\[cfg\(test\)\]\s*(?:#\[[^\]]*\]\s*)*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*([;{])", code):
        if m.start() < pos:
            continue
        if m.group(2) == ";":
            test_files.add(m.group(1))
            continue
        depth, j = 1, m.end()
        while j < len(code) and depth:
            depth += {"{": 1, "}": -1}.get(code[j], 0)
            j += 1
        result.append(code[pos:m.start()])
        result.append("\n" * code.count("\n", m.start(), j))
        pos = j
    result.append(code[pos:])
    return "".join(result), test_files


def group_items(code, start):
    """The top-level paths of a `{a, b::c, d::{e, f}}` group starting after `{`."""
    items, depth, cur, j = [], 1, "", start
    while j < len(code) and depth:
        ch = code[j]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if depth == 1 and ch == ",":
            items.append(cur)
            cur = ""
        elif depth >= 1 and not (depth == 1 and ch in "{}"):
            cur += ch
        j += 1
    items.append(cur)
    out = []
    for item in items:
        parts = [p for p in re.split(r"\s*::\s*", item.strip()) if p]
        names = []
        for p in parts:
            ident = IDENT.match(p)
            if not ident or p.startswith("{"):
                break
            names.append(ident.group(0))
        if names and names[0] not in ("self", "*"):
            out.append(names)
    return out


def module_path(src, path):
    """`app/src/web/server.rs` -> ['web', 'server']; mod.rs is its folder."""
    rel = os.path.relpath(path, src)[:-3].split(os.sep)
    if rel[-1] == "mod":
        rel = rel[:-1]
    return rel


def references(code, here):
    """Yield (line, module path) for every crate-internal path in `code`,
    written in the module at path `here` (a file's module path)."""
    for m in PATH_RE.finditer(code):
        if not m.group(2) and not m.group(3):
            continue  # `super::*`, or a word that starts with "super"
        line = code.count("\n", 0, m.start()) + 1
        segs = m.group(2).split("::")[1:]
        if m.group(1) == "crate":
            base = []
        else:
            base = here[:-1]
            while segs and segs[0] == "super":
                base = base[:-1]
                segs = segs[1:]
        paths = [base + segs]
        if m.group(3):
            paths = [base + segs + g for g in group_items(code, m.end())]
        for p in paths:
            if p:
                yield line, p


def collect(src):
    """Map each non-test file to its references."""
    files, test_only = {}, set()
    for root, _, names in os.walk(src):
        for name in sorted(names):
            if name.endswith(".rs"):
                path = os.path.join(root, name)
                with open(path, encoding="utf-8") as f:
                    code, tests = strip_test_modules(strip_comments_and_strings(f.read()))
                files[path] = code
                here = os.path.dirname(path) if name in ("mod.rs", "lib.rs", "main.rs") else path[:-3]
                for t in tests:
                    test_only.add(os.path.join(here, t + ".rs"))
                    test_only.add(os.path.join(here, t))
    refs = {}
    for path, code in files.items():
        if any(path == t or path.startswith(t + os.sep) for t in test_only):
            continue
        if os.path.dirname(path) == src and os.path.basename(path) in ("lib.rs", "main.rs"):
            continue
        here = module_path(src, path)
        refs[path] = (here, list(references(code, here)))
    return refs


def load_rules(path):
    rules = []
    with open(path, encoding="utf-8") as f:
        for n, raw in enumerate(f, 1):
            text, _, why = raw.partition("#")
            if not text.strip():
                continue
            left, sep, right = text.partition("!->")
            if not sep or not left.split() or not right.split():
                raise SystemExit(f"{path}:{n}: expected `<module> !-> <module> ...`")
            for one in left.split():
                rules.append((one.split("::"), [r.split("::") for r in right.split()], why.strip(), n))
    return rules


def within(path, prefix):
    return path[:len(prefix)] == prefix


def find_cycles(edges):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, sccs = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
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
            if len(comp) > 1:
                sccs.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return sccs


def check(src, rules_path):
    """Return the list of breaches (strings); empty when the rules hold."""
    refs = collect(src)
    top = {p[0] for p, _ in refs.values()}
    edges, evidence = defaultdict(set), {}
    problems = []
    for path, (here, found) in sorted(refs.items()):
        for line, target in found:
            if target[0] not in top:
                continue  # an item of the crate root (lib.rs), not a module
            if target[0] != here[0]:
                edges[here[0]].add(target[0])
                evidence.setdefault((here[0], target[0]), f"{os.path.relpath(path)}:{line}")
    for comp in find_cycles(edges):
        links = [f"{a} -> {b} ({evidence[(a, b)]})" for a in comp for b in comp if (a, b) in evidence]
        problems.append("import circle between " + ", ".join(comp) + ":\n    " + "\n    ".join(links))
    for left, forbidden, why, n in load_rules(rules_path):
        for path, (here, found) in sorted(refs.items()):
            if left != ["*"] and not within(here, left):
                continue
            for line, target in found:
                for f in forbidden:
                    if f == ["*"]:
                        hit = target[0] in top and target[0] != here[0]
                    else:
                        hit = within(target, f) and not (left == ["*"] and here[0] == f[0])
                    if hit and not within(target, here[:len(left)] if left == ["*"] else left):
                        problems.append(
                            f"{os.path.relpath(path)}:{line}: {'::'.join(here)} refers to {'::'.join(target)}, "
                            f"breaking rule {os.path.relpath(rules_path)}:{n} ({why or '::'.join(left) + ' !-> ' + '::'.join(f)})"
                        )
    return problems


def main(argv):
    src = argv[1] if len(argv) > 1 else "app/src"
    rules = argv[2] if len(argv) > 2 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "import-rules.txt")
    problems = check(src, rules)
    for p in problems:
        print("check-imports: " + p, file=sys.stderr)
    if problems:
        return 1
    print(f"check-imports: {len(collect(src))} files, no circle, every rule of {os.path.relpath(rules)} holds")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
