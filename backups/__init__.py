"""ScaleMart backups: MongoDB + Redis + the environment's config in one verified archive.

Runs on the data host as `python -m backups backup|restore|verify|list|prune|decrypt-config`.
Standard library + pymongo + redis + cryptography (Fernet, for the config part) + pydantic (the
config file) + prometheus-client (the textfile); shells out to mongodump, mongorestore and redis-server.
See backups/README.md for the contract with the `backups` role and the playbooks.
"""

# 1.1.0: the config part is Fernet-encrypted (SMBKENC2); 1.0.0 archives used SMBKENC1.
__version__ = "1.1.0"
