"""Object keys in the layout NIM reads with ``NIM_REPOSITORY_OVERRIDE=s3://bucket/``.

One object per manifest file, at the bucket root, keyed by the manifest URI
without ``ngc://``, percent-encoded with no safe characters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

NGC_SCHEME = "ngc://"
_URI_RE = re.compile(r"^ngc://(?P<repo>[^:?]+)(?::(?P<tag>[^?]+))?(?:\?file=(?P<file>.+))?$")


def object_key(uri: str) -> str:
    """``ngc://nim/meta/m:hf?file=config.json`` -> ``nim%2Fmeta%2Fm%3Ahf%3Ffile%3Dconfig.json``."""
    return quote(uri.removeprefix(NGC_SCHEME), safe="")


def uri_of_key(key: str) -> str:
    return NGC_SCHEME + unquote(key)


def looks_like_nim_key(key: str) -> bool:
    """True for keys NIM would read (one flat percent-encoded ngc URI)."""
    return "/" not in key and uri_of_key(key) != NGC_SCHEME + key and bool(_URI_RE.match(uri_of_key(key)))


@dataclass(frozen=True)
class NgcUri:
    repo: str  # nim/meta/llama-3.2-1b-instruct
    tag: str | None  # hf-e9f8eff-nim1.5+ ; the snapshot folder name
    file: str | None  # config.json

    @classmethod
    def parse(cls, uri: str) -> NgcUri | None:
        match = _URI_RE.match(uri)
        if not match:
            return None
        return cls(match.group("repo"), match.group("tag"), match.group("file"))

    def model_dirs(self) -> list[str]:
        """Cache folder names for the repo, in both spellings NIM versions use."""
        org_path = self.repo.split("/")
        dotted = "models--" + "--".join(org_path)
        underscored = "models--" + "--".join([*org_path[:-1], org_path[-1].replace(".", "_")])
        return list(dict.fromkeys([dotted, underscored]))
