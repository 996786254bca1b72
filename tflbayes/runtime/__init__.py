"""The device-side runtime: LiteRT bundles with numpy post-processing, no TensorFlow."""
from tflbayes.runtime.bundle import ABSTAIN, Bundle, load_bundle
from tflbayes.runtime.manifest import FORMAT_VERSION, MODES, PRECISIONS, validate_manifest

__all__ = ["Bundle", "load_bundle", "ABSTAIN", "MODES", "PRECISIONS", "FORMAT_VERSION", "validate_manifest"]
