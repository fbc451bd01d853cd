"""Mirror NIM container images: registry to registry, into an OCI layout for removable media, and back."""

from nimrunbook.images.access import RegistryAccess
from nimrunbook.images.mirror import ImageCopy, export, import_, mirror
from nimrunbook.images.refs import ImageRef

__all__ = ["ImageCopy", "ImageRef", "RegistryAccess", "export", "import_", "mirror"]
