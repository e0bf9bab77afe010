"""classicnets: VGG and GoogLeNet rebuilt from their papers, proven right, trained fast."""

__version__ = "0.1.0"

from .errors import UserError
from .models import create_model, list_models

__all__ = ["UserError", "__version__", "create_model", "list_models"]
