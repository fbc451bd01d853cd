"""A local sandbox of real services standing in for nvcr.io, the internal registry and S3.

Used by the tests and by ``nimrunbook demo``: real servers on loopback, never
mocks, so that what passes here is what runs against the real thing.
"""
