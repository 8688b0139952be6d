"""Infrastructure shared by every TaskFlow service, and nothing else.

Settings, the MongoDB client, RFC 9457 problem responses, request ids, access-token
verification against auth's JWKS, declared API operations with their OpenAPI document,
health/readiness endpoints, metrics on ports of their own and the gunicorn settings. No domain models live here:
a service never imports another service.
"""
