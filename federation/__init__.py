"""Federation between instances: Open Cloud Mesh discovery and endpoints, RFC 9421 request
signatures, trust policy, and the outbox that delivers share notifications.

Arrives with the federation issue; the package exists so the layout is complete.
"""
