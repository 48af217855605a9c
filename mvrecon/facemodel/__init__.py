"""Face models: one :class:`FaceModel` type, one ``.npz`` format, importers and a registry."""

from .model import FORMAT_VERSION, FaceModel
from .registry import list_models, load_model, models_dir

__all__ = ["FORMAT_VERSION", "FaceModel", "list_models", "load_model", "models_dir"]
