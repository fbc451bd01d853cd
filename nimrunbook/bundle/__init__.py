"""The offline bundle: one signed, verifiable package of images and profiles for removable media."""

from nimrunbook.bundle.create import BundleResult, create
from nimrunbook.bundle.importer import ImportResult, import_
from nimrunbook.bundle.inventory import inventory
from nimrunbook.bundle.verify import VerificationReport, verify

__all__ = ["BundleResult", "ImportResult", "VerificationReport", "create", "import_", "inventory", "verify"]
