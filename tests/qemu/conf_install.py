"""Install every file of conf/ at the path conf/README.md's "Files" table gives it, into an image root.
Usage: conf_install.py CONF_DIR ROOT IMAGE_KIND (production | development)
Fails if a file of conf/ is missing from the table or a row names a file that does not exist (the table is the
single map, so the QEMU image is built from exactly what the Yocto layer installs). Prints the units to enable:
the installed units that have an [Install] section."""

import os
import re
import shutil
import sys

conf, root, kind = sys.argv[1], sys.argv[2], sys.argv[3]
rows = []
with open(os.path.join(conf, "README.md")) as f:
    for line in f:
        m = re.match(r"\|\s*`([^`]+)`\s*\|\s*`(/[^`]+)`\s*\|\s*([a-z]+)\s*\|", line)
        if m:
            rows.append(m.groups())
if not rows:
    sys.exit("conf_install: no rows found in conf/README.md's table")

on_disk = set()
for d, _, files in os.walk(conf):
    for n in files:
        rel = os.path.relpath(os.path.join(d, n), conf)
        if rel != "README.md":
            on_disk.add(rel)
in_table = {r[0] for r in rows}
errors = [f"conf/{p} is not in conf/README.md's table" for p in sorted(on_disk - in_table)]
errors += [f"conf/README.md names conf/{p}, which does not exist" for p in sorted(in_table - on_disk)]
if errors:
    sys.exit("conf_install: " + "; ".join(errors))

enable = []
for src, dest, images in rows:
    if images not in ("all", kind):
        print(f"conf_install: skipping {src} ({images} images only)", file=sys.stderr)
        continue
    target = root + dest
    os.makedirs(os.path.dirname(target), exist_ok=True)
    shutil.copyfile(os.path.join(conf, src), target)
    os.chmod(target, 0o644)
    if re.search(r"\.(service|socket|mount|timer|path)$", dest):
        with open(target) as f:
            if re.search(r"^\[Install\]", f.read(), re.M):
                enable.append(os.path.basename(dest))
print(" ".join(enable))
