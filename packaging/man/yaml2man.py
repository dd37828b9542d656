#!/usr/bin/env python3
"""Turns a documented configuration file (configs/*.yaml: every key explained in its comments)
into a section 5 manual page, so that the manual and the file an administrator edits have one
source. Usage: yaml2man.py NAME VERSION SOURCE.yaml PROGRAM > NAME.5"""
import sys


def roff(line):
    line = line.replace("\\", "\\e")
    if line.startswith((".", "'")):
        line = "\\&" + line
    return line


def main():
    name, version, source, program = sys.argv[1:5]
    text = open(source, encoding="utf-8").read().rstrip("\n").split("\n")
    out = [
        f'.TH {name.upper()} 5 "" "dingbridge {version}" "File Formats"',
        ".SH NAME",
        f"{name} \\- configuration file of {program}",
        ".SH SYNOPSIS",
        f"/etc/dingbridge/{name.split('.', 1)[0].replace('dingbridge-', '')}.yaml",
        ".SH DESCRIPTION",
        f"YAML file read by \\fB{program}\\fR(1) at start (and, for the proxy, on SIGHUP). Unknown keys are "
        "refused with file:line:column. Values may be secret references: \\fB${env:NAME}\\fR (from the "
        "unit's EnvironmentFile, /etc/dingbridge/*.env, mode 0640 root:dingbridge) or "
        "\\fB${file:/path}\\fR. Check a file with \\fB" + program +
        (" --check-config\\fR." if program.endswith("proxy") else " check-config\\fR."),
        ".PP",
        "The file installed by the package documents every key in its comments; it follows in full.",
        ".SH FILE",
        ".nf",
        ".ft CR",
    ]
    out += [roff(line) for line in text]
    out += [".ft R", ".fi", ".SH SEE ALSO", f"\\fB{program}\\fR(1), /usr/share/doc/dingbridge/install.md"]
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
