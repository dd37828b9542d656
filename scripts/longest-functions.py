#!/usr/bin/env python3
"""Lists C++ function bodies longer than N lines (default 80) under the given folders.

Heuristic on braces, good enough for this code base's clang-format style: a function body is a
`{` that opens at brace depth 0 (outside namespaces) or directly inside a namespace/class body,
on a line that looks like a signature (has a `)` before the `{`, or the `{` begins a line
following such a signature). Lambdas and nested blocks count toward the enclosing function.

    scripts/longest-functions.py [--min N] [dirs...]    (default: agent proxy shared)
"""
import argparse
import os
import re
import sys

SKIP_OPENERS = re.compile(r"^\s*(namespace\b|(class|struct|union|enum)\b[^;(]*$|extern\s+\"C\")")


def strip(text):
    """Removes comments, string and char literals (keeps newlines) so braces inside them don't count."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("\n" * text.count("\n", i, j))
            i = j
        elif c == "R" and text.startswith('R"', i) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            m = re.match(r'R"([^(\s]*)\(', text[i:])
            if not m:
                out.append(c)
                i += 1
                continue
            end = text.find(")" + m.group(1) + '"', i)
            end = n if end < 0 else end + len(m.group(1)) + 2
            out.append('""' + "\n" * text.count("\n", i, end))
            i = end
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            out.append(c + c)
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def functions(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        text = strip(f.read())
    lines = text.split("\n")
    # stack of (kind, start_line, name); kind: 'scope' (namespace/class) or 'fn' or 'block'
    stack, found, prev = [], [], ""
    for ln, line in enumerate(lines, 1):
        for pos, ch in enumerate(line):
            if ch == "{":
                head = (prev + " " + line[:pos]).strip()
                in_fn = any(k == "fn" for k, _, _ in stack)
                if in_fn:
                    stack.append(("block", ln, ""))
                elif SKIP_OPENERS.search(line[:pos]) or SKIP_OPENERS.search(prev if not line[:pos].strip() else ""):
                    stack.append(("scope", ln, ""))
                elif ")" in head and not head.rstrip().endswith("="):
                    m = re.search(r"([~\w:]+(?:operator\S*)?)\s*\([^()]*(\([^()]*\)[^()]*)*\)[^()]*$", head)
                    stack.append(("fn", ln, m.group(1) if m else head[-40:]))
                else:
                    stack.append(("scope", ln, ""))
            elif ch == "}" and stack:
                kind, start, name = stack.pop()
                if kind == "fn":
                    found.append((ln - start + 1, path, start, name))
        if line.strip():
            prev = line
    return found


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--min", type=int, default=80, help="list functions with more lines than this")
    ap.add_argument("dirs", nargs="*", default=["agent", "proxy", "shared"])
    args = ap.parse_args()
    allf = []
    for d in args.dirs:
        for root, _, files in os.walk(d):
            for fn in files:
                if fn.endswith((".cpp", ".cc", ".h", ".hpp")):
                    allf += functions(os.path.join(root, fn))
    allf.sort(reverse=True)
    over = [f for f in allf if f[0] > args.min]
    for n, path, start, name in over:
        print(f"{n:5d}  {path}:{start}  {name}")
    if allf:
        n, path, start, name = allf[0]
        print(f"longest: {n} lines ({path}:{start} {name}); {len(over)} over {args.min}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
