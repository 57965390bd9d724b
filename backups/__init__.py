"""ScaleMart backups: MongoDB + Redis + the environment's config in one verified archive.

Runs on the data host as `python -m backups backup|restore|verify|list|prune|decrypt-config`.
Standard library + pymongo + redis only; shells out to mongodump, mongorestore and redis-server.
See backups/README.md for the contract with the `backups` role and the playbooks.
"""

__version__ = "1.0.0"
