"""The method configs, one ``<method>.py`` each; installed as the ``jaxpapers.configs`` package.

Load one by path (``--config=configs/<method>.py:<preset>``) or by method name from any
directory with ``jaxpapers.config_lib.config_path(method)``.
"""
