#!/usr/bin/env python3
"""Writes wattbridge.conf(5) from the daemon's own --describe output, so the
manual cannot drift from the option tables the plugins declare.

    gen-conf-man.py WATTBRIDGE PLUGIN-DIR VERSION OUTPUT HEADER.in
"""
import os
import re
import subprocess
import sys


def roff(text):
    """Escapes text for a roff line."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    if text.startswith((".", "'")):
        text = "\\&" + text
    return text


def describe(exe, plugin_dir, name):
    out = subprocess.run([exe, "--plugin-dir", plugin_dir, "--describe", name], check=True,
                         capture_output=True, text=True, env=dict(os.environ, LC_ALL="C.UTF-8")).stdout
    return out.splitlines()


def plugin_section(lines):
    """One plugin's --describe output as a man page subsection."""
    head = re.match(r"(\S+) (\S+): (.*)", lines[0])
    name, description = head.group(1), head.group(3)
    roles = next((l.split(":", 1)[1].strip() for l in lines if l.startswith("roles:")), "")
    out = [".SS %s" % roff(name), roff(description) + ".", ".br", "Roles: %s." % roff(roles), ".RS 4"]
    in_options, skip = False, False
    for line in lines[1:]:
        if line == "options:":
            in_options = True
        elif not in_options or not line.strip():
            continue
        elif line.startswith("      "):
            if not skip:
                out.append(roff(line.strip()))
        else:
            key = line.strip()
            # plugin and enabled are common to every instance: documented once, above
            skip = key.startswith(("plugin =", "enabled ="))
            if not skip:
                out += [".TP", ".B %s" % roff(key)]
    out.append(".RE")
    return out


def main():
    exe, plugin_dir, version, output, header = sys.argv[1:6]
    plugins = sorted(f[:-3] for f in os.listdir(plugin_dir) if f.endswith(".so"))
    body = []
    for name in plugins:
        body += plugin_section(describe(exe, plugin_dir, name))
    with open(header) as f:
        page = f.read().replace("@VERSION@", version)
    page = page.replace("@PLUGINS@", "\n".join(body))
    with open(output, "w") as f:
        f.write(page)


if __name__ == "__main__":
    main()
