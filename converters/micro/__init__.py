"""The microcontroller target: the C99 uncertainty library (``tflbayes_uq.{h,c}``), the TFLite Micro
op check and verification, and the ``micro/`` folder of a bundle (C arrays, ``bundle_config.h``)."""
