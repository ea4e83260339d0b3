"""Documentation generated from the code, the registry and the ops store (see generator)."""

from titans.docs.generator import DocumentationGenerator

__all__ = ["DocumentationGenerator"]
