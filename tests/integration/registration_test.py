"""Every integration test class runs under ctest.

ctest runs the Python scripts of this folder one unittest class at a time, by name, from the
lists in CMakeLists.txt (dingbridge_python_tests GROUPS, a foreach over groups) or whole
(dingbridge_python_test without a class argument). A class missing from its list is never run,
by CI or by anyone, and nothing says so: this test does. No binaries needed.
"""
import ast
import re
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _calls(text, name):
    """The argument lists (as word lists) of every `name(...)` call in a CMake text."""
    out = []
    for m in re.finditer(r"(?m)^\s*" + re.escape(name) + r"\s*\(", text):
        depth, i = 1, m.end()
        while depth and i < len(text):
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        body = re.sub(r"#[^\n]*", "", text[m.end():i - 1])
        out.append(body.split())
    return out


def _keyword_args(words, keyword):
    """The words after `keyword` up to the next upper-case keyword (ENV, TIMEOUT, VERBOSE, ...)."""
    if keyword not in words:
        return []
    out = []
    for w in words[words.index(keyword) + 1:]:
        if w.isupper():
            break
        out.append(w)
    return out


def registrations(cmake_text):
    """{script: set of class names, or None when the whole script runs}."""
    reg = {}

    def add(script, classes):
        if script in reg and reg[script] is None:
            return
        reg[script] = None if classes is None else (reg.get(script) or set()) | set(classes)

    for words in _calls(cmake_text, "dingbridge_python_tests"):
        add(words[1], _keyword_args(words, "GROUPS"))
    for words in _calls(cmake_text, "dingbridge_python_test"):
        classes = [a for a in _keyword_args(words, "ARGS") if re.fullmatch(r"[A-Za-z_]\w*", a)]
        add(words[1], classes or None)
    # foreach(group A B C) ... <script> -v ${group} ... endforeach()
    for m in re.finditer(r"(?s)foreach\s*\(\s*group\s+([^)]*)\)(.*?)endforeach", cmake_text):
        for script in re.findall(r"(\w+_test\.py)\s+-v\s+\$\{group\}", m.group(2)):
            add(script, m.group(1).split())
    return reg


def classes_with_tests(path):
    """Class names in a script that have test_ methods, their own or from a class of the same
    script (a variant such as `TunnelSemanticsSplice(TunnelSemantics)` runs the same tests)."""
    tree = ast.parse(path.read_text(), str(path))
    classes = [node for node in tree.body if isinstance(node, ast.ClassDef)]
    found = {
        c.name
        for c in classes
        if any(isinstance(f, ast.FunctionDef) and f.name.startswith("test_") for f in c.body)
    }
    grew = True
    while grew:
        grew = False
        for c in classes:
            if c.name not in found and any(isinstance(b, ast.Name) and b.id in found for b in c.bases):
                found.add(c.name)
                grew = True
    return found


class EveryClassRegistered(unittest.TestCase):
    def test_the_parser_reads_this_folders_forms(self):
        reg = registrations("""
dingbridge_python_tests(p_ a_test.py VERBOSE ENV ${E} TIMEOUT 300
  GROUPS One Two  # a comment
         Three)
dingbridge_python_test(whole b_test.py ARGS -v ENV ${E} TIMEOUT 120)
dingbridge_python_test(one c_test.py ARGS -v Four ENV ${E} TIMEOUT 120)
foreach(group Five Six)
  add_test(NAME x_${group} COMMAND /usr/bin/python3 ${D}/d_test.py -v ${group})
endforeach()
""")
        self.assertEqual(reg, {"a_test.py": {"One", "Two", "Three"}, "b_test.py": None,
                               "c_test.py": {"Four"}, "d_test.py": {"Five", "Six"}})

    def test_every_test_class_of_this_folder_is_run_by_ctest(self):
        reg = registrations((HERE / "CMakeLists.txt").read_text())
        missing = []
        for script in sorted(HERE.glob("*_test.py")):
            if script.name == Path(__file__).name:
                continue
            if script.name not in reg:
                missing.append(f"{script.name}: not registered in CMakeLists.txt at all")
                continue
            if reg[script.name] is None:
                continue  # the whole script runs
            for cls in sorted(classes_with_tests(script) - reg[script.name]):
                missing.append(f"{script.name}: class {cls} is in no GROUPS list, so ctest never runs it")
        self.assertEqual(missing, [])


if __name__ == "__main__":
    unittest.main()
