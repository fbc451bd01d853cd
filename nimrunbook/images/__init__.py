"""Registries and the images in them: references, access, and mirroring (registry to registry, into an
export for removable media, and back), through one backend interface (skopeo or the Docker engine)."""

from nimrunbook.images.access import RegistryAccess, ngc_api_key
from nimrunbook.images.backend import BackendName, ImageBackend, open_backend
from nimrunbook.images.exports import ImageCopy
from nimrunbook.images.failures import registry_failure
from nimrunbook.images.mirror import export, import_, mirror, parse_refs
from nimrunbook.images.refs import ImageRef

__all__ = [
    "BackendName",
    "ImageBackend",
    "ImageCopy",
    "ImageRef",
    "RegistryAccess",
    "export",
    "import_",
    "mirror",
    "ngc_api_key",
    "open_backend",
    "parse_refs",
    "registry_failure",
]
