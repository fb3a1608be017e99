"""Model zoo (SE-ResNet, SE-ResNeXt, SE-MobileNet and their plain twins) and model sources."""

from se_deploy.models.registry import create_model, get_entry, is_registered, list_models, plain_twin
from se_deploy.models.sources import LoadedModel, count_se_modules, load_model, load_weights

__all__ = ["create_model", "get_entry", "is_registered", "list_models", "plain_twin", "LoadedModel",
           "count_se_modules", "load_model", "load_weights"]
