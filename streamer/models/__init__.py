"""Toonstream's model store: official DCT-Net weights, the face detector and head mask,
and the ONNX models built from the weights. One setting chooses where it lives
(`--models DIR`, else $TOONSTREAM_MODELS, else the per-user cache); see models/README.md.
"""
from .catalog import Catalog, FileRecord, ModelRecord, load_catalog, parse_catalog
from .download import DownloadOptions, download
from .errors import (BadModelFile, BadSetting, DownloadError, ModelNotInstalled, StoreError,
                     StoreNotWritable, UnknownModel, VerificationError)
from .paths import resolve_store_root, user_cache_dir
from .store import Store, file_path, onnx_model_path, open_store

__all__ = [
    "BadModelFile", "BadSetting", "Catalog", "DownloadError", "DownloadOptions", "FileRecord",
    "ModelNotInstalled", "ModelRecord", "Store", "StoreError", "StoreNotWritable", "UnknownModel",
    "VerificationError",
    "download", "file_path", "load_catalog", "onnx_model_path", "open_store", "parse_catalog",
    "resolve_store_root", "user_cache_dir",
]
