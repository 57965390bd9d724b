"""ScaleMart backups: MongoDB + Redis + the environment's config in one verified archive.

Runs on the data host as `python -m backups backup|restore|verify|list|prune|decrypt-config` (or its
console script, `scalemart-backups`), installed from the bundle the build phase makes of this folder
(backups/pyproject.toml, ops/wheels.py). Standard library + pymongo + redis + cryptography (Fernet,
for the config part) + pydantic (the config file) + prometheus-client (the textfile); shells out to
mongodump, mongorestore and redis-server. See backups/README.md for the contract with the `backups`
role and the playbooks.
"""

import tomllib
from importlib.metadata import version
from pathlib import Path

# One home for the version, backups/pyproject.toml: read from it in the source tree (tests, the
# control machine), from the wheel's metadata where the tool is installed (the pyproject is not in it).
# 1.1.0: the config part is Fernet-encrypted (SMBKENC2); 1.0.0 archives used SMBKENC1.
_PYPROJECT = Path(__file__).with_name("pyproject.toml")
__version__: str = (
    tomllib.loads(_PYPROJECT.read_text())["project"]["version"]
    if _PYPROJECT.is_file()
    else version("scalemart-backups")
)
