"""Client-side security helpers: TLS files checked before connecting, errors explained, secrets
scrubbed from text, and least-privilege ACLs derived from the services (``acl``)."""
