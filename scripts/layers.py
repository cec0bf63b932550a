#!/usr/bin/env python3
"""Checks that includes run only down the layers, and that no modules include each other in a circle.

    python3 scripts/layers.py LAYER...      (lowest first, as the Makefile's LAYERS)

Every file src/<layer>/<module>.[ch] may include "<other>/<name>.h" only where <other>
is its own layer or one listed before it; src/main.c may include any. A module is a .c
and its .h; module A uses module B when either file of A includes B's header. A circle
of uses, inside a layer or across, is reported too. Prints each problem and exits 1.
"""
import os
import re
import sys

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def main():
    layers = sys.argv[1:]
    rank = {l: i for i, l in enumerate(layers)}
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
    problems = []
    uses = {}  # "layer/module" -> {"layer/module"}
    files = [("main.c", None)]
    for layer in layers:
        for fn in sorted(os.listdir(os.path.join(root, layer))):
            if fn.endswith((".c", ".h")):
                files.append((layer + "/" + fn, layer))
    for dirs in os.listdir(root):
        if os.path.isdir(os.path.join(root, dirs)) and dirs not in rank:
            problems.append("src/%s/: a folder that is no layer (add it to LAYERS in the Makefile)" % dirs)
    for path, layer in files:
        with open(os.path.join(root, path)) as f:
            text = f.read()
        module = os.path.splitext(path)[0]
        for m in INCLUDE.finditer(text):
            inc = m.group(1)
            line = text.count("\n", 0, m.start()) + 1
            where = "src/%s:%d" % (path, line)
            parts = inc.split("/")
            if len(parts) != 2 or parts[0] not in rank:
                problems.append('%s: #include "%s" names no layer: write "<layer>/%s"' % (where, inc, parts[-1]))
                continue
            if not os.path.exists(os.path.join(root, inc)):
                problems.append('%s: #include "%s": no such header' % (where, inc))
                continue
            if layer and rank[parts[0]] > rank[layer]:
                problems.append('%s: #include "%s": %s may not include from %s, a layer above it'
                                % (where, inc, layer, parts[0]))
            target = os.path.splitext(inc)[0]
            if target != module:
                uses.setdefault(module, set()).add(target)
    problems += circles(uses)
    for p in problems:
        print("layers: " + p)
    if problems:
        sys.exit(1)


def circles(uses):
    """Each circle of module uses once, as "a -> b -> a"."""
    found, seen, done = [], set(), set()

    def visit(node, path):
        if node in done:
            return
        if node in path:
            loop = path[path.index(node):] + [node]
            key = frozenset(loop)
            if key not in seen:
                seen.add(key)
                found.append("modules include each other: " + " -> ".join(loop))
            return
        path.append(node)
        for nxt in sorted(uses.get(node, ())):
            visit(nxt, path)
        path.pop()
        done.add(node)

    for node in sorted(uses):
        visit(node, [])
    return found


if __name__ == "__main__":
    main()
