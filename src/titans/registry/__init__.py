"""The model registry workflow: governed promotion and rollback, comparison, and lineage."""

from __future__ import annotations

from titans.registry.metadata_manager import ModelMetadataManager
from titans.registry.registry_manager import (
    ModelRegistryManager,
    PromotionRefusal,
    normalize_stage,
)

__all__ = ["ModelMetadataManager", "ModelRegistryManager", "PromotionRefusal", "normalize_stage"]
