"""A stand-in NIM image for tests and the demo: NGC and nvcr.io are out of reach, and there is no GPU."""

from nimrunbook.standin.build import IMAGE_REPOSITORY, build_standin_image

__all__ = ["IMAGE_REPOSITORY", "build_standin_image"]
