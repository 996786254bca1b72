"""The ``tflbayes`` command line (click)."""
