"""Command-line tools: ``python -m jaxpapers.tools.<name>`` (absl flags, ``--help``).

Every tool parses its flags with absl like ``jaxpapers.main``, prints ``--help`` with exit status
0, and reports bad input as one line on stderr with exit status 2 (``jaxpapers.tools.cli``).
"""
