"""Writes mpigate's man pages from the texts they document, so that the two cannot drift apart.

    manpage.py cli    VERSION MPIGATE_BINARY         > mpigate.1
    manpage.py server VERSION MPIGATE_SERVER_BINARY  > mpigate-server.1
    manpage.py task   VERSION TASK_H GANG_H          > mpigate-task.3

`cli` runs `mpigate --help` and `mpigate help COMMAND` for every command the first lists;
`server` runs `mpigate-server --help` (the usage message and the flags of server/main.cc, as
Abseil prints them); `task` takes the opening comment of the installed task API headers. Runs on
Debian's /usr/bin/python3 with the standard library only.
"""

import re
import subprocess
import sys


def escape(text):
    """Text as roff shows it: backslashes and dashes literal, no line read as a request."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + text if text.startswith((".", "'")) else text


def header(name, section, version, title):
    return [
        f'.TH {name.upper()} {section} "" "mpigate {version}" "{title}"',
        ".SH NAME",
        f"{escape(name)} \\- ",
    ]


# "  --flag=VALUE    what it does": a term, two or more spaces, its description.
ITEM = re.compile(r"^( {1,4})(\S.*?)\s{2,}(\S.*)$")


def help_body(text):
    """Roff for a usage text: paragraphs, "Heading:" lines, and indented two-column items."""
    out = []
    item_column = None  # Where the open item's description starts; its continuations align.
    for line in text.splitlines():
        if not line.strip():
            item_column = None
            out.append(".PP")
            continue
        if item_column is not None and line[:item_column].strip() == "":
            out.append(escape(line.strip()))
            continue
        item_column = None
        match = ITEM.match(line)
        if match and not line.rstrip().endswith(":"):
            out += [".TP", f"\\fB{escape(match.group(2))}\\fR", escape(match.group(3))]
            item_column = len(line) - len(match.group(3))
        elif not line.startswith(" ") and line.rstrip().endswith(":"):
            out.append(f".SS {escape(line.rstrip()[:-1])}")
        elif line.startswith(" "):
            out += [".br", escape(line.strip())]
        else:
            out.append(escape(line))
    return out


def run_help(argv):
    # Abseil's --help exits 1 after printing; what matters is the text.
    return subprocess.run(argv, capture_output=True, text=True, check=False).stdout


def cli_page(version, binary):
    top = run_help([binary, "--help"])
    usage, _, rest = top.partition("\n\n")
    description, _, rest = rest.partition("\n\n")
    commands_block = re.search(r"^Commands:\n((?:  .*\n)+)", top, re.MULTILINE)
    if not usage.startswith("Usage: ") or commands_block is None:
        raise SystemExit(f"{binary} --help has no Usage line or no Commands: block")
    commands = [line.split()[0] for line in commands_block.group(1).splitlines()
                if ITEM.match(line)]
    out = header("mpigate", 1, version, "User Commands")
    out[-1] += escape(description.strip().splitlines()[0].rstrip("."))
    out += [".SH SYNOPSIS", escape(usage[len("Usage: "):].strip()),
            ".SH DESCRIPTION", escape(description.strip())]
    out += [".SH OVERVIEW"] + help_body(rest)
    out.append(".SH COMMANDS")
    for command in commands:
        if command == "help":
            continue
        text = run_help([binary, "help", command])
        if not text.startswith("Usage: "):
            raise SystemExit(f"{binary} help {command} prints no Usage line")
        out.append(f".SS {escape(command)}")
        out += help_body(text)
    out += [".SH SEE ALSO", "mpigate\\-server(1), mpigate\\-task(3)"]
    return out


# Abseil's listing: "    --name (what it does); default: value;", wrapped anywhere.
FLAG = re.compile(r"^    --(\w+) \((.*?)\);\s+default: (.*?);\n", re.DOTALL | re.MULTILINE)


def server_page(version, binary):
    text = run_help([binary, "--help"])
    usage, marker, flags = text.partition("Flags from server/main.cc:\n")
    if not marker:
        raise SystemExit(f"{binary} --help lists no flags of server/main.cc")
    lines = usage.strip().splitlines()
    summary = lines[0].split(": ", 1)[1]
    out = header("mpigate-server", 1, version, "User Commands")
    out[-1] += escape(summary.rstrip("."))
    synopsis, rest = [], []
    for index, line in enumerate(lines[1:], start=1):
        if not line.startswith("  "):
            rest = lines[index:]
            break
        synopsis.append(line.strip())
    out.append(".SH SYNOPSIS")
    for line in synopsis:
        out += [escape(line), ".br"]
    out += [".SH DESCRIPTION", escape(summary)] + help_body("\n".join(rest))
    out.append(".SH OPTIONS")
    out.append("Flags take \\fB\\-\\-flag=value\\fR or \\fB\\-\\-flag value\\fR, written with "
               "dashes or underscores.")
    found = FLAG.findall(flags)
    if not found:
        raise SystemExit(f"{binary} --help: no flag parsed")
    for name, description, default in found:
        words = " ".join(description.split())
        out += [".TP", f"\\fB\\-\\-{escape(name.replace('_', '-'))}\\fR",
                escape(f"{words} Default: {' '.join(default.split())}.")]
    out += [".SH SEE ALSO", "mpigate(1), mpigate\\-task(3)"]
    return out


def opening_comment(path):
    """The comment a header opens with, without its slashes."""
    lines = []
    with open(path, encoding="utf-8") as header_file:
        for line in header_file:
            if not line.startswith("//"):
                break
            lines.append(line[3:].rstrip("\n") if line.startswith("// ") else "")
    if not lines:
        raise SystemExit(f"{path} opens with no comment")
    return lines


def comment_body(lines):
    """Roff for a header comment: paragraphs, and code indented by two or more spaces."""
    out, in_code = [], False
    for line in lines:
        is_code = line.startswith("  ")
        if is_code and not in_code:
            out += [".PP", ".EX"]
        elif not is_code and in_code:
            out.append(".EE")
        in_code = is_code
        if is_code:
            out.append(escape(line[2:]))
        elif not line.strip():
            out.append(".PP")
        else:
            out.append(escape(line))
    if in_code:
        out.append(".EE")
    return out


def task_page(version, task_header, gang_header):
    out = header("mpigate-task", 3, version, "mpigate task API")
    out[-1] += "the API of mpigate task libraries: functions of your own on the pool's workers"
    out += [".SH SYNOPSIS", ".nf", "#include <mpigate/task.h>", "#include <mpigate/gang.h>",
            "", "g++ \\-std=c++17 \\-shared \\-fPIC my_tasks.cc \\-o libmy_tasks.so \\e",
            "    $(pkg\\-config \\-\\-cflags \\-\\-libs mpigate\\-task)",
            "mpigate\\-server \\-\\-task\\-lib $PWD/libmy_tasks.so", ".fi"]
    out += [".SH DESCRIPTION"] + comment_body(opening_comment(task_header))
    out += [".SH GANG FUNCTIONS"] + comment_body(opening_comment(gang_header))
    out += [".SH SEE ALSO", "mpigate\\-server(1), mpigate(1)"]
    return out


def main(argv):
    pages = {"cli": (cli_page, 2), "server": (server_page, 2), "task": (task_page, 3)}
    if len(argv) < 2 or argv[1] not in pages or len(argv) != 2 + pages[argv[1]][1]:
        raise SystemExit(__doc__)
    page, _ = pages[argv[1]]
    sys.stdout.write("\n".join(page(*argv[2:])) + "\n")


if __name__ == "__main__":
    main(sys.argv)
