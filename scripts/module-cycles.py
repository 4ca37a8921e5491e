#!/usr/bin/env python3
"""Import cycles between the crate's modules, and its largest files.

usage: scripts/module-cycles.py [backend/src]

Each file under src is a module (mod.rs is its directory's module, lib.rs is `lib`; main.rs is its own crate). An edge
a -> b is a path `crate::b...` (in a `use` tree or inline) or `super::...`
written in a's file, or a path `b::...` in the file that declares `mod b`. Prints each cycle (a strongly connected set of modules,
first of files, then of top-level modules) and the five largest files;
exits 1 when a cycle exists.
"""
import re
import sys
from pathlib import Path

args = [a for a in sys.argv[1:] if a != "-v"]
src = Path(args[0] if args else "backend/src")


def module_of(path: Path) -> tuple:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return tuple(parts)


files = {module_of(p): p for p in src.rglob("*.rs") if p != src / "main.rs"}
modules = set(files)


def resolve(path: tuple) -> tuple:
    """The longest prefix of path that is a module (a file)."""
    for n in range(len(path), -1, -1):
        if path[:n] in modules:
            return path[:n]
    return None


def strip(text: str) -> str:
    # unit tests (the file's `#[cfg(test)] mod tests`, last by habit) are
    # not the module's dependencies
    text = re.split(r"#\[cfg\(test\)\]\s*(?:#\[[^\]]*\]\s*)*mod tests", text)[0]
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    return text


def use_paths(tree: str, prefix: tuple):
    """Expands a `use` tree (`a::{b, c::d}`) into paths."""
    tree = tree.strip()
    depth, start, items = 0, 0, []
    brace = tree.find("{")
    if brace == -1:
        yield prefix + tuple(s for s in tree.split(" as ")[0].split("::") if s)
        return
    head = tuple(s for s in tree[:brace].split("::") if s)
    inner = tree[brace + 1 : tree.rfind("}")]
    for i, ch in enumerate(inner):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(inner[start:i])
            start = i + 1
    items.append(inner[start:])
    for item in items:
        if item.strip():
            yield from use_paths(item, prefix + head)


edges = {m: set() for m in modules}
for module, path in files.items():
    text = strip(path.read_text())
    # inside a mod.rs `super` is the parent; elsewhere, the file's parent
    parent = module[:-1]
    for tree in re.findall(r"\buse\s+([^;]+);", text):
        tree = re.sub(r"\s+", "", tree)
        for p in use_paths(tree, ()):
            if p and p[0] == "crate":
                target = resolve(p[1:])
            elif p and p[0] == "super":
                target = resolve(parent + p[1:])
            elif p and p[0] == "self":
                continue
            else:
                continue
            if target is not None and target != module:
                edges[module].add(target)
    children = set(re.findall(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", text, re.M))
    for child in children:
        if re.search(r"(?<![:\w])" + child + r"::", text):
            edges[module].add(module + (child,))
    # paths written inline (the `use` trees were read above)
    inline = re.sub(r"\buse\s+[^;]+;", "", text)
    for p in re.findall(r"\b(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)+)", inline):
        base = () if p[0] == "crate" else parent
        target = resolve(base + tuple(s for s in p[1].split("::") if s))
        if target is not None and target != module:
            edges[module].add(target)


def sccs(graph):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
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
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def name(m):
    return "::".join(m) or "lib"


file_cycles = sccs(edges)
top = {}
for a, targets in edges.items():
    for b in targets:
        if a[:1] != b[:1]:
            top.setdefault(a[:1], set()).add(b[:1])
top_cycles = sccs(top)
print(f"modules: {len(modules)}")
print(f"cycles between files: {len(file_cycles)}")
for c in file_cycles:
    print(f"  ({len(c)}) " + ", ".join(name(m) for m in c))
print(f"cycles between top-level modules: {len(top_cycles)}")
for c in top_cycles:
    print(f"  ({len(c)}) " + ", ".join(name(m) for m in c))
sizes = sorted(((len(p.read_text().splitlines()), p) for p in files.values()), reverse=True)
print("largest files: " + ", ".join(f"{p.relative_to(src)} ({n})" for n, p in sizes[:5]))
if "-v" in sys.argv:
    for a in sorted(top):
        print(f"  {name(a)} -> " + ", ".join(sorted(name(b) for b in top[a])))
sys.exit(1 if file_cycles or top_cycles else 0)
