"""Removes the iptables chains (and the rules that jump to them) that appeared since a snapshot:
`iptables-undo.py SAVE-BEFORE [iptables|ip6tables]` reads the current rules with `<cmd>-save`,
and for every table deletes each rule that jumps to a chain absent from SAVE-BEFORE, then flushes
and deletes those chains. Only chains named KUBE-* or CODEXK8S-* are considered: the test node's
kubelet (and later kube-proxy) make them; nothing else on the machine is touched."""

import shlex
import subprocess
import sys


def chains(text):
    out, table = {}, None
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:]
            out.setdefault(table, set())
        elif line.startswith(":") and table:
            out[table].add(line[1:].split()[0])
    return out


def main():
    before_path, cmd = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else "iptables")
    before = chains(open(before_path).read())
    now_text = subprocess.run([cmd + "-save"], capture_output=True, text=True, check=True).stdout
    table = None
    new = {t: {c for c in cs if c.startswith(("KUBE-", "CODEXK8S-")) and c not in before.get(t, set())}
           for t, cs in chains(now_text).items()}
    for line in now_text.splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith("-A ") and table and new.get(table):
            args = shlex.split(line)
            target = args[args.index("-j") + 1] if "-j" in args else None
            if target in new[table] and args[1] not in new[table]:
                subprocess.run([cmd, "-w", "-t", table, "-D"] + args[1:], check=False)
    for t, cs in new.items():
        for c in cs:
            subprocess.run([cmd, "-w", "-t", t, "-F", c], check=False)
        for c in cs:
            subprocess.run([cmd, "-w", "-t", t, "-X", c], check=False)


if __name__ == "__main__":
    main()
