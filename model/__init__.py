"""Backbone + linear head models; see :func:`model.classifier.create_model`."""
from model.classifier import BACKBONE_ALIASES, Classifier, create_model, timm_name, resolve_weights

__all__ = ["BACKBONE_ALIASES", "Classifier", "create_model", "timm_name", "resolve_weights"]
