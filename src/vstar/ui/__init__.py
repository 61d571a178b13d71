"""The web page of ``vstar ui`` (the ``ui`` extra: Gradio).

:mod:`vstar.ui.callbacks` and :mod:`vstar.ui.session` need no Gradio; only :mod:`vstar.ui.app` imports it, and
nothing in the core package imports that.
"""
