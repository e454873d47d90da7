"""Image trust: the containers-policy.json trust policy, GPG simple signing and sigstore signatures, SBOMs, offline scans.

Modules: ``policy`` (parse and validate the file), ``scopes`` (which rule applies to an image),
``identity`` (signedIdentity matchers), ``payload`` (the simple-signing JSON both signature
kinds carry), ``gpg`` and ``sigstore`` (the two mechanisms), ``registriesd`` (where GPG
signatures live), ``attachments`` (cosign ``sha256-<hex>.sig`` tags), ``evaluate`` (a verdict for
one image), ``enforce`` (what pull, load and run call before anything is stored) and
``signing``; ``inventory``, ``sbom`` and ``referrers`` (what an image contains, as SPDX or
CycloneDX, kept and pushed as OCI referrers); ``versions`` and ``osv`` (offline vulnerability
matching). See docs/trust.md.
"""
