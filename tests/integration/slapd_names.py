#!/usr/bin/env python3
"""How well directory_match_key (shared/match_key.cpp) agrees with a real slapd about which names
are one name: every letter, compatibility character and decomposable character outside the CJK
and Hangul blocks is paired with its case, NFKC and NFD forms (Python's unicodedata); slapd is
asked by adding both as sibling ou values under a parent of their own (the second refused as
"Already exists" = one name there), the key by `match-key` (tests/unit: the key of each line).

    python3 tests/integration/slapd_names.py build/tests/unit/match-key   # seconds; loopback slapd

Prints the pairs slapd holds equal that the key tells apart (each a department whose write
would fail on every run) and the pairs slapd tells apart that the key holds equal (a needless
" (dept_id)"). Exit 1 if any of the first kind."""
import base64
import os
import shutil
import subprocess
import sys
import tempfile
import unicodedata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import make_ca_and_cert  # noqa: E402
from slapd import ROOT_DN, ROOT_PW, SUFFIX, Slapd  # noqa: E402

SPECIAL = set(',+="\\<>;#')  # characters an RDN value would need escaped: left out


def pairs():
    out = []
    for cp in range(0xA0, 0x30000):
        if (0xD800 <= cp < 0xF900 or 0x3400 <= cp < 0xA000 or 0xAC00 <= cp < 0xD7A4 or 0x20000 <= cp < 0x2FA00):
            continue
        c = chr(cp)
        category = unicodedata.category(c)
        if category in ("Cn", "Cs", "Co", "Cc") or category.startswith("Z"):
            continue
        forms = {c.lower(), c.upper(), c.casefold(), unicodedata.normalize("NFKC", c),
                 unicodedata.normalize("NFKC", c).lower(), unicodedata.normalize("NFKC", c.lower()),
                 unicodedata.normalize("NFD", c)}
        for b in sorted(forms):
            if b and b != c and b.strip() and not SPECIAL & set(b) and all(unicodedata.category(x) != "Cc" for x in b):
                out.append(("x" + c + "x", "x" + b + "x"))
    # Spaces: every space separator, line and paragraph separator and the ASCII white space but
    # LF and CR (match-key reads a name a line)
    # against a plain space (slapd folds some and keeps others).
    for cp in [0x09, 0x0B, 0x0C, 0x85] + [cp for cp in range(0xA0, 0x3001)
                                                      if unicodedata.category(chr(cp)) in ("Zs", "Zl", "Zp")]:
        out.append(("x" + chr(cp) + "y", "x y"))
        out.append(("x" + chr(cp) + chr(cp) + "y", "x y"))
    return out


def probe(match_key):
    """(pairs probed, pairs one in slapd with two keys, pairs two in slapd with one key)."""
    work = Path(tempfile.mkdtemp(prefix="slapd-names-"))
    try:
        return compare(match_key, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def compare(match_key, work):
    todo = pairs()
    names = [a for a, _ in todo] + [b for _, b in todo]
    keys = subprocess.run([match_key], input="\n".join(names) + "\n", capture_output=True, text=True,
                          check=True).stdout.split("\n")
    ca, cert, key = make_ca_and_cert(work)
    slapd = Slapd(work, ca, cert, key)
    b64 = lambda text: base64.b64encode(text.encode()).decode()  # noqa: E731
    first, second = [], []
    for i, (a, b) in enumerate(todo):
        parent = f"ou=p{i},{SUFFIX}"
        first.append(f"dn: {parent}\nobjectClass: organizationalUnit\nou: p{i}\n")
        first.append(f"dn:: {b64('ou=' + a + ',' + parent)}\nobjectClass: organizationalUnit\nou:: {b64(a)}\n"
                     f"description: a{i}\n")
        second.append(f"dn:: {b64('ou=' + b + ',' + parent)}\nobjectClass: organizationalUnit\nou:: {b64(b)}\n"
                      f"description: b{i}\n")
    ldap = ["-x", "-H", slapd.url, "-D", ROOT_DN, "-w", ROOT_PW]
    try:
        # -c: a name slapd refuses (a control character, say) leaves its pair out, not the run.
        subprocess.run(["ldapadd", "-c", *ldap], input="\n".join(first), capture_output=True, text=True)
        subprocess.run(["ldapadd", "-c", *ldap], input="\n".join(second), capture_output=True, text=True)
        found = subprocess.run(["ldapsearch", "-LLL", *ldap, "-b", SUFFIX, "(description=*)", "description"],
                               capture_output=True, text=True, check=True).stdout
    finally:
        slapd.stop()
    described = [line.split(": ", 1)[1] for line in found.splitlines() if line.startswith("description: ")]
    added = {int(d[1:]) for d in described if d.startswith("b")}
    first_in = {int(d[1:]) for d in described if d.startswith("a")}
    if len(first_in) < len(todo) * 9 // 10:
        raise AssertionError(f"slapd took only {len(first_in)} of {len(todo)} first names: the probe is broken")
    todo = [pair if i in first_in else None for i, pair in enumerate(todo)]
    if not added:
        raise AssertionError("slapd took none of the second names: the probe itself is broken")
    n = len(todo)
    apart, together = [], []
    for i, pair in enumerate(todo):
        if pair is None:
            continue
        a, b = pair
        one_in_slapd, one_here = i not in added, keys[i] == keys[n + i]
        if one_in_slapd and not one_here:
            apart.append((a[1:-1], b[1:-1]))
        elif one_here and not one_in_slapd:
            together.append((a[1:-1], b[1:-1]))
    return sum(1 for pair in todo if pair), apart, together


def main():
    match_key = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("DINGBRIDGE_MATCH_KEY", "build/tests/unit/match-key")
    n, apart, together = probe(match_key)
    newer = sum(1 for a, b in together if any(unicodedata.ucd_3_2_0.category(x) == "Cn" for x in a + b))
    print(f"{n} pairs: {n - len(apart) - len(together)} agree")
    print(f"  one name in slapd, two keys (a write that fails on every run): {len(apart)}")
    for a, b in apart[:20]:
        print(f"    {a!r} / {b!r} (U+{ord(a[0]):04X} {unicodedata.name(a[0], '?')})")
    print(f"  two names in slapd, one key (a needless ' (dept_id)'): {len(together)}, "
          f"{newer} of them with a character added to Unicode after 3.2")
    for a, b in [p for p in together if not any(unicodedata.ucd_3_2_0.category(x) == "Cn" for x in p[0] + p[1])][:10]:
        print(f"    {a!r} / {b!r} (U+{ord(a[0]):04X} {unicodedata.name(a[0], '?')})")
    return 1 if apart else 0


if __name__ == "__main__":
    sys.exit(main())
